//! The tiepdan test harness: a real single-node Kubernetes cluster on 127.0.0.1.
//!
//! ```text
//!  test (#[tokio::test]) ── RealNode::shared() ──► ControlPlane::shared(): etcd + kube-apiserver
//!        │                  (one per test binary)   + controller-manager (processes)
//!        │                                        └► RealNode: containerd/runc + kube-scheduler +
//!        │                                           kubelet, the project's images imported
//!        ├── cp.client()  (a fresh kube::Client on the test's runtime)
//!        └── create_namespace(&client, &unique_name("t"))
//! ```
//!
//! The binaries come from `scripts/install-control-plane.sh`. Processes are stopped by PID on
//! drop, and by a reaper when the test binary exits (see [`process`]). Waits are bounded
//! ([`wait_for`]). Set `TIEPDAN_KEEP_CLUSTER=1` to keep the temp dirs for inspection.
#![forbid(unsafe_code)]

pub mod certs;
pub mod control_plane;
pub mod namespace;
pub mod process;
pub mod random;
pub mod real_node;
pub mod wait;

pub use control_plane::{ControlPlane, ControlPlaneError, ControlPlaneOptions};
pub use namespace::{create_namespace, NamespaceError};
pub use random::unique_name;
pub use real_node::{RealNode, RealNodeError, RealNodeOptions};
pub use wait::{wait_for, WaitError};
