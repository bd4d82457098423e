//! The per-session NetworkPolicy: the session's worker accepts signaling (TCP, TLS) and its RTC
//! ports (UDP and TCP: the pool's range, or with `hostNetwork` the worker's own sub-range) from
//! anywhere — the offices' browsers are outside the cluster — and its plain admin port only
//! from pods in the cluster (the operator, Prometheus); everything else inbound is dropped. The
//! ports are the worker pod's own (a hostNetwork worker's come from the pool's `hostPorts`).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::labels;
use super::session_child_meta;
use super::worker_ports::{rtc_range, WorkerPorts};
use crate::api::{MediaWorkerPool, ReceptionSession};

/// The policy's name for a session.
pub fn name(session: &str) -> String {
    format!("{session}-worker")
}

/// How a port range can be written in a NetworkPolicy on this cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRanges {
    /// `port` + `endPort` (Kubernetes 1.25 and later).
    EndPort,
    /// One entry per port: older API servers do not know `endPort` and would open only the first
    /// port of the range.
    Enumerate,
}

impl PortRanges {
    /// The form a Kubernetes `1.<minor>` API server accepts.
    pub fn for_minor(minor: u32) -> Self {
        if minor >= 25 {
            Self::EndPort
        } else {
            Self::Enumerate
        }
    }
}

/// The NetworkPolicy isolating `session`'s worker, a pod of `pool` listening on `ports`
/// ([`super::worker_ports::of_pod`]).
pub fn build(
    session: &ReceptionSession,
    pool: &MediaWorkerPool,
    ports: WorkerPorts,
    ranges: PortRanges,
) -> NetworkPolicy {
    let sname = session.name_any();
    let range = rtc_range(&pool.spec, ports);
    let port = |protocol: &str, port: i32, end: Option<i32>| NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(port)),
        end_port: end,
    };
    NetworkPolicy {
        metadata: session_child_meta(session, name(&sname), labels::COMPONENT_WORKER, &BTreeMap::new()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(
                    [
                        (labels::SESSION.to_owned(), sname.clone()),
                        (labels::COMPONENT.to_owned(), labels::COMPONENT_WORKER.to_owned()),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(
                        std::iter::once(port("TCP", ports.signaling, None))
                            .chain(["UDP", "TCP"].into_iter().flat_map(|proto| match ranges {
                                PortRanges::EndPort => vec![port(proto, range.min, Some(range.max))],
                                PortRanges::Enumerate => {
                                    (range.min..=range.max).map(|p| port(proto, p, None)).collect()
                                }
                            }))
                            .collect(),
                    ),
                },
                // An empty namespace selector matches every pod in the cluster and nothing outside it.
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector::default()),
                        ..Default::default()
                    }]),
                    ports: Some(vec![port("TCP", ports.admin, None)]),
                },
            ]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::tests::{pool, session};

    #[test]
    fn only_signaling_and_the_rtc_range_are_open_to_the_sessions_worker() {
        let np = build(&session(), &pool(), WorkerPorts::POD_NETWORK, PortRanges::EndPort);
        let spec = np.spec.clone().unwrap();
        let sel = spec.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(sel[labels::SESSION], "phien-thang-6");
        assert_eq!(spec.policy_types.unwrap(), vec!["Ingress"]);
        let ports = spec.ingress.unwrap()[0].ports.clone().unwrap();
        let summary: Vec<_> =
            ports.iter().map(|p| (p.protocol.clone().unwrap(), p.port.clone().unwrap(), p.end_port)).collect();
        assert_eq!(
            summary,
            vec![
                ("TCP".to_owned(), IntOrString::Int(8443), None),
                ("UDP".to_owned(), IntOrString::Int(41000), Some(41099)),
                ("TCP".to_owned(), IntOrString::Int(41000), Some(41099)),
            ]
        );
        assert_eq!(np.metadata.labels.unwrap()[labels::SESSION], "phien-thang-6");
        // The plain admin port: in-cluster peers only.
        let admin = &np.spec.as_ref().unwrap().ingress.as_ref().unwrap()[1];
        assert_eq!(admin.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(8080)));
        let from = admin.from.as_ref().unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].namespace_selector, Some(LabelSelector::default()));
        assert!(from[0].ip_block.is_none());
    }

    #[test]
    fn older_clusters_get_every_rtc_port_listed() {
        assert_eq!(PortRanges::for_minor(20), PortRanges::Enumerate);
        assert_eq!(PortRanges::for_minor(33), PortRanges::EndPort);
        let np = build(&session(), &pool(), WorkerPorts::POD_NETWORK, PortRanges::Enumerate);
        let ports = np.spec.unwrap().ingress.unwrap()[0].ports.clone().unwrap();
        // Signaling, then 100 UDP and 100 TCP ports (41000..=41099), none with endPort.
        assert_eq!(ports.len(), 201);
        assert!(ports.iter().all(|p| p.end_port.is_none()));
        assert_eq!(ports[200].port, Some(IntOrString::Int(41099)));
    }

    #[test]
    fn a_host_network_worker_opens_its_own_ports_and_rtc_sub_range() {
        let mut p = pool();
        p.spec.host_network = true;
        let rtc = Some(super::super::worker_ports::PortRange { min: 41010, max: 41019 });
        let np = build(&session(), &p, WorkerPorts { admin: 7002, signaling: 7003, rtc }, PortRanges::EndPort);
        let ingress = np.spec.unwrap().ingress.unwrap();
        let open: Vec<_> = ingress[0]
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| (p.protocol.unwrap(), p.port.unwrap(), p.end_port))
            .collect();
        assert_eq!(
            open,
            vec![
                ("TCP".to_owned(), IntOrString::Int(7003), None),
                ("UDP".to_owned(), IntOrString::Int(41010), Some(41019)),
                ("TCP".to_owned(), IntOrString::Int(41010), Some(41019)),
            ]
        );
        assert_eq!(ingress[1].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(7002)));
    }
}
