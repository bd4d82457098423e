//! The ports of one worker pod. In the pod network every worker has its own IP, so all use the
//! fixed [`ADMIN_PORT`] and [`SIGNALING_PORT`]. With `hostNetwork` the workers of a node share
//! its address, so, like Agones' `Dynamic` port policy, each pod takes its own pair from the
//! pool's `hostPorts` range and declares them as host ports: the scheduler then never puts two
//! pods with the same port on one node.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

use crate::api::MediaWorkerPoolSpec;

/// The plain-HTTP admin port in the pod network: probes, `/metrics`, `/v1/status` and the
/// operator's `/v1/allocation` calls.
pub const ADMIN_PORT: i32 = tiepdan_contract::worker_flags::ADMIN_PORT as i32;
/// The signaling port (HTTPS and WSS with the session's certificate) in the pod network.
pub const SIGNALING_PORT: i32 = tiepdan_contract::worker_flags::SIGNALING_PORT as i32;
/// The container port names; Services, probes and the operator find the numbers by them.
pub const ADMIN_PORT_NAME: &str = "admin";
pub const SIGNALING_PORT_NAME: &str = "signaling";

/// A worker's admin and signaling ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerPorts {
    pub admin: i32,
    pub signaling: i32,
}

impl Default for WorkerPorts {
    fn default() -> Self {
        Self { admin: ADMIN_PORT, signaling: SIGNALING_PORT }
    }
}

/// The ports a pod declares (the defaults for a pod that names none).
pub fn of_pod(pod: &Pod) -> WorkerPorts {
    let ports = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.ports.as_ref());
    let find = |name: &str, default: i32| {
        ports.and_then(|ps| ps.iter().find(|p| p.name.as_deref() == Some(name))).map_or(default, |p| p.container_port)
    };
    WorkerPorts { admin: find(ADMIN_PORT_NAME, ADMIN_PORT), signaling: find(SIGNALING_PORT_NAME, SIGNALING_PORT) }
}

/// Ports held by `pods`, terminating ones included: a pod keeps its port until it is gone.
pub fn held<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeSet<i32> {
    pods.into_iter()
        .flat_map(|p| {
            let WorkerPorts { admin, signaling } = of_pod(p);
            [admin, signaling]
        })
        .collect()
}

/// The ports for a new pod of a pool with `spec`: the fixed pair in the pod network; with
/// `hostNetwork`, the lowest pair of the `hostPorts` range that no pod in `held` uses (it is
/// also added to `held`). `None` when the range is used up.
pub fn allocate(spec: &MediaWorkerPoolSpec, held: &mut BTreeSet<i32>) -> Option<WorkerPorts> {
    if !spec.host_network {
        return Some(WorkerPorts::default());
    }
    let range = &spec.host_ports;
    let mut port = range.min;
    while port < range.max {
        if !held.contains(&port) && !held.contains(&(port + 1)) {
            held.extend([port, port + 1]);
            return Some(WorkerPorts { admin: port, signaling: port + 1 });
        }
        port += 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HostPorts;

    fn spec(host_network: bool, min: i32, max: i32) -> MediaWorkerPoolSpec {
        let mut s: MediaWorkerPoolSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        s.host_network = host_network;
        s.host_ports = HostPorts { min, max };
        s
    }

    #[test]
    fn pod_network_workers_share_the_fixed_ports() {
        let mut held = BTreeSet::from([8080, 8443]);
        assert_eq!(allocate(&spec(false, 7000, 7001), &mut held), Some(WorkerPorts::default()));
    }

    #[test]
    fn host_network_workers_take_the_lowest_free_pair() {
        let s = spec(true, 7000, 7005);
        let mut held = BTreeSet::from([7000, 7001, 7003]);
        // 7002 is free but its partner 7003 is not.
        assert_eq!(allocate(&s, &mut held), Some(WorkerPorts { admin: 7004, signaling: 7005 }));
        assert_eq!(allocate(&s, &mut held), None, "the range is used up");
    }

    #[test]
    fn an_odd_range_never_hands_out_a_port_beyond_max() {
        let mut held = BTreeSet::new();
        assert_eq!(allocate(&spec(true, 7000, 7002), &mut held), Some(WorkerPorts { admin: 7000, signaling: 7001 }));
        assert_eq!(allocate(&spec(true, 7000, 7002), &mut held), None);
    }
}
