//! The operator against a real kube-apiserver 1.20 and the real node (the harness control plane
//! with kubelet, containerd and kube-scheduler): the CRDs, the example Mỹ Hào topology, the
//! session timeline on a simulated clock, clean-up and scaling. One test binary, so every test
//! shares one control plane and one node; each test has its own namespace and its own in-process
//! operator watching only that namespace.

// Helpers outside #[test] fns fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

mod admission_webhook;
mod api_schema;
mod ca_rotation;
mod leader_election;
mod leader_faults;
mod monitoring;
mod pool_disruption_budget;
mod pool_ports;
mod pool_rollout;
mod pool_scaling;
mod semantic_validation;
mod session_timeline;
