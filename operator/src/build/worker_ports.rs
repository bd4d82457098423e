//! The ports of one worker pod. In the pod network every worker has its own IP, so all use the
//! fixed [`ADMIN_PORT`] and [`SIGNALING_PORT`]. With `hostNetwork` the workers of a node share
//! its address, so, like Agones' `Dynamic` port policy, each pod takes its own pair from the
//! pool's `hostPorts` range and declares them as host ports: the scheduler then never puts two
//! pods with the same port on one node.
//!
//! RTC ports work the same way. In the pod network every worker binds the pool's whole
//! `rtcPorts` range on its own IP. With `hostNetwork` the pool's range is cut into slots of
//! `rtcPorts.perWorker` ports; each pod takes one slot and declares every port of it (UDP and
//! TCP) as a host port, so the scheduler never puts two pods with overlapping sub-ranges on one
//! node. A slot no pod of the pool holds is taken first; once every slot is held, the slot
//! held by the fewest pods is taken again, and the declared ports make the scheduler place that
//! pod on a node where the slot is free (a pool spans nodes as Agones fleets do).

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

/// A worker's admin and signaling ports, and its RTC port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerPorts {
    pub admin: i32,
    pub signaling: i32,
    /// The worker's own RTC sub-range; `None`: the pool's whole `rtcPorts` range.
    pub rtc: Option<PortRange>,
}

impl Default for WorkerPorts {
    fn default() -> Self {
        Self::POD_NETWORK
    }
}

impl WorkerPorts {
    /// The fixed admin and signaling ports of the pod network, and the pool's whole RTC range.
    pub const POD_NETWORK: Self = Self { admin: ADMIN_PORT, signaling: SIGNALING_PORT, rtc: None };
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub min: i32,
    pub max: i32,
}

impl PortRange {
    fn overlaps(self, other: PortRange) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// The RTC range a pod of a pool with `spec` binds, given the sub-range it was built with.
pub fn rtc_range(spec: &MediaWorkerPoolSpec, ports: WorkerPorts) -> PortRange {
    ports.rtc.unwrap_or(PortRange { min: spec.rtc_ports.min, max: spec.rtc_ports.max })
}

/// The ports a pod declares (the pod network's for a pod that names none); its RTC range from
/// its `--rtc-min-port`/`--rtc-max-port` arguments.
pub fn of_pod(pod: &Pod) -> WorkerPorts {
    let container = pod.spec.as_ref().and_then(|s| s.containers.first());
    let ports = container.and_then(|c| c.ports.as_ref());
    let find = |name: &str, default: i32| {
        ports.and_then(|ps| ps.iter().find(|p| p.name.as_deref() == Some(name))).map_or(default, |p| p.container_port)
    };
    let args = container.and_then(|c| c.args.as_deref()).unwrap_or_default();
    let arg = |flag: &str| {
        let prefix = format!("--{flag}=");
        args.iter().find_map(|a| a.strip_prefix(&prefix)?.parse::<i32>().ok())
    };
    use tiepdan_contract::worker_flags::{RTC_MAX_PORT, RTC_MIN_PORT};
    let rtc = arg(RTC_MIN_PORT).zip(arg(RTC_MAX_PORT)).map(|(min, max)| PortRange { min, max });
    WorkerPorts { admin: find(ADMIN_PORT_NAME, ADMIN_PORT), signaling: find(SIGNALING_PORT_NAME, SIGNALING_PORT), rtc }
}

/// What the pods of a pool hold: host ports, and RTC ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub ports: BTreeSet<i32>,
    pub rtc: Vec<PortRange>,
}

/// What `pods` hold, terminating ones included: a pod keeps its ports until it is gone.
pub fn held<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Held {
    let mut held = Held::default();
    for p in pods {
        let WorkerPorts { admin, signaling, rtc } = of_pod(p);
        held.ports.extend([admin, signaling]);
        held.rtc.extend(rtc);
    }
    held
}

/// Why no ports could be allocated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("spec.hostPorts {min}-{max} has no free pair of ports left for another worker")]
    HostPortsExhausted { min: i32, max: i32 },
    #[error("spec.rtcPorts {min}-{max} holds no sub-range of spec.rtcPorts.perWorker {per_worker} ports")]
    RtcPortsTooFew { min: i32, max: i32, per_worker: i32 },
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::HostPortsExhausted { .. } => "HostPortsExhausted",
            Error::RtcPortsTooFew { .. } => "RtcPortsTooFew",
        }
    }
}

/// The ports for a new pod of a pool with `spec`: the fixed pair and the whole RTC range in the
/// pod network; with `hostNetwork`, the lowest pair of the `hostPorts` range that no pod in
/// `held` uses, and an RTC slot by [`rtc_slot`] (both added to `held`).
pub fn allocate(spec: &MediaWorkerPoolSpec, held: &mut Held) -> Result<WorkerPorts, Error> {
    if !spec.host_network {
        return Ok(WorkerPorts::POD_NETWORK);
    }
    let r = &spec.rtc_ports;
    let rtc =
        rtc_slot(spec, &held.rtc).ok_or(Error::RtcPortsTooFew { min: r.min, max: r.max, per_worker: r.per_worker })?;
    let range = &spec.host_ports;
    let mut port = range.min;
    while port < range.max {
        if !held.ports.contains(&port) && !held.ports.contains(&(port + 1)) {
            held.ports.extend([port, port + 1]);
            held.rtc.push(rtc);
            return Ok(WorkerPorts { admin: port, signaling: port + 1, rtc: Some(rtc) });
        }
        port += 2;
    }
    Err(Error::HostPortsExhausted { min: range.min, max: range.max })
}

/// The RTC slots of a hostNetwork pool: `rtcPorts` cut into `perWorker` consecutive ports from
/// `min`; ports left over at the top belong to no slot.
pub fn rtc_slots(spec: &MediaWorkerPoolSpec) -> Vec<PortRange> {
    let r = &spec.rtc_ports;
    if r.per_worker < 1 {
        return Vec::new();
    }
    (0..)
        .map(|k| r.min + k * r.per_worker)
        .take_while(|min| min + r.per_worker - 1 <= r.max)
        .map(|min| PortRange { min, max: min + r.per_worker - 1 })
        .collect()
}

/// The slot for a new hostNetwork pod, given the RTC ranges `held` by the pool's pods: the
/// lowest slot that overlaps the fewest of them (none, while the pool has fewer pods than
/// slots). A pod built from an older spec holds every slot its range overlaps. `None` when the
/// range holds no slot.
pub fn rtc_slot(spec: &MediaWorkerPoolSpec, held: &[PortRange]) -> Option<PortRange> {
    rtc_slots(spec).into_iter().min_by_key(|slot| held.iter().filter(|h| h.overlaps(*slot)).count())
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
        let mut held = Held { ports: BTreeSet::from([8080, 8443]), rtc: vec![] };
        assert_eq!(allocate(&spec(false, 7000, 7001), &mut held), Ok(WorkerPorts::POD_NETWORK));
    }

    fn ports(admin: i32, rtc_min: i32) -> WorkerPorts {
        WorkerPorts { admin, signaling: admin + 1, rtc: Some(PortRange { min: rtc_min, max: rtc_min + 99 }) }
    }

    #[test]
    fn host_network_workers_take_the_lowest_free_pair() {
        let s = spec(true, 7000, 7005);
        let mut held = Held { ports: BTreeSet::from([7000, 7001, 7003]), rtc: vec![] };
        // 7002 is free but its partner 7003 is not.
        assert_eq!(allocate(&s, &mut held), Ok(ports(7004, 40000)));
        assert_eq!(
            allocate(&s, &mut held),
            Err(Error::HostPortsExhausted { min: 7000, max: 7005 }),
            "the range is used up"
        );
    }

    #[test]
    fn an_odd_range_never_hands_out_a_port_beyond_max() {
        let mut held = Held::default();
        assert_eq!(allocate(&spec(true, 7000, 7002), &mut held), Ok(ports(7000, 40000)));
        assert!(allocate(&spec(true, 7000, 7002), &mut held).is_err());
    }

    fn rtc(min: i32, max: i32, per_worker: i32) -> MediaWorkerPoolSpec {
        let mut s = spec(true, 7000, 7999);
        s.rtc_ports = crate::api::RtcPorts { min, max, per_worker };
        s
    }

    fn r(min: i32, max: i32) -> PortRange {
        PortRange { min, max }
    }

    #[test]
    fn the_rtc_range_is_cut_into_slots_of_per_worker_ports() {
        type Case = (i32, i32, i32, &'static [(i32, i32)]);
        let cases: [Case; 5] = [
            (40000, 40999, 100, &[(40000, 40099), (40100, 40199)]),
            (40000, 40009, 5, &[(40000, 40004), (40005, 40009)]),
            (40000, 40010, 5, &[(40000, 40004), (40005, 40009)]),
            (40000, 40003, 5, &[]),
            (40000, 40000, 1, &[(40000, 40000)]),
        ];
        for (min, max, per, want) in cases {
            let slots = rtc_slots(&rtc(min, max, per));
            let got: Vec<_> = slots.iter().take(2).map(|s| (s.min, s.max)).collect();
            assert_eq!(got, want, "{min}-{max} by {per}");
        }
        assert_eq!(rtc_slots(&rtc(40000, 40999, 100)).len(), 10);
        assert!(rtc_slots(&rtc(40000, 40999, 0)).is_empty(), "zero never loops");
    }

    #[test]
    fn each_new_worker_takes_the_least_held_rtc_slot() {
        let s = rtc(40000, 40029, 10);
        type Case = (&'static str, &'static [(i32, i32)], Option<(i32, i32)>);
        let cases: [Case; 6] = [
            ("none held: the first", &[], Some((40000, 40009))),
            ("the first held", &[(40000, 40009)], Some((40010, 40019))),
            ("a gap is filled", &[(40000, 40009), (40020, 40029)], Some((40010, 40019))),
            // Every slot held once: slot 0 again, on another node (its declared host ports).
            ("all held once", &[(40000, 40009), (40010, 40019), (40020, 40029)], Some((40000, 40009))),
            ("the least held", &[(40000, 40009), (40000, 40009), (40010, 40019), (40020, 40029)], Some((40010, 40019))),
            // A pod from before sub-ranges holds the whole range: every slot once.
            ("an old whole-range pod", &[(40000, 40029), (40000, 40009)], Some((40010, 40019))),
        ];
        for (what, held, want) in cases {
            let held: Vec<_> = held.iter().map(|&(a, b)| r(a, b)).collect();
            assert_eq!(rtc_slot(&s, &held).map(|p| (p.min, p.max)), want, "{what}");
        }
        assert_eq!(rtc_slot(&rtc(40000, 40005, 10), &[]), None, "no slot fits");
    }

    #[test]
    fn workers_allocated_in_a_row_get_disjoint_sub_ranges() {
        let s = rtc(40000, 40029, 10);
        let mut held = Held::default();
        let got: Vec<_> = (0..3).map(|_| allocate(&s, &mut held).expect("ports").rtc.expect("a sub-range")).collect();
        assert_eq!(got, [r(40000, 40009), r(40010, 40019), r(40020, 40029)]);
        assert_eq!(
            allocate(&rtc(40000, 40005, 10), &mut Held::default()),
            Err(Error::RtcPortsTooFew { min: 40000, max: 40005, per_worker: 10 })
        );
    }

    #[test]
    fn a_pods_ports_and_sub_range_are_read_back_from_it() {
        let s = rtc(40000, 40029, 10);
        let pool = crate::api::MediaWorkerPool::new("p", s);
        let want = WorkerPorts { admin: 7002, signaling: 7003, rtc: Some(r(40010, 40019)) };
        let pod = crate::build::worker_pod::build(&pool, "p-x", None, want);
        assert_eq!(of_pod(&pod), want);
        assert_eq!(held([&pod]), Held { ports: BTreeSet::from([7002, 7003]), rtc: vec![r(40010, 40019)] });
    }
}
