//! The tiepdan test harness: a real Kubernetes control plane on 127.0.0.1 and a node emulation.
//!
//! ```text
//!  test (#[tokio::test]) ── ControlPlane::shared() ──► etcd + kube-apiserver + controller-manager
//!        │                    (processes, one per test binary)        ▲
//!        ├── cp.client()  (a fresh kube::Client on the test's runtime) ┤
//!        ├── create_namespace(&client, &unique_name("t"))             │
//!        └── Node::start(client, NodeOptions…)  ── watches pods ──────┘
//!              Simulated: Running/Ready at once; Processes: runs `media-worker` containers
//! ```
//!
//! The binaries come from `scripts/install-control-plane.sh`. Processes are stopped by PID on
//! drop, and by a reaper when the test binary exits (see [`process`]). Waits are bounded
//! ([`wait_for`]). Set `TIEPDAN_KEEP_CLUSTER=1` to keep the temp dirs for inspection.
#![forbid(unsafe_code)]

pub mod certs;
pub mod control_plane;
pub mod namespace;
pub mod node;
pub mod process;
pub mod random;
pub mod real_node;
pub mod wait;

pub use control_plane::{ControlPlane, ControlPlaneError, ControlPlaneOptions};
pub use namespace::{create_namespace, NamespaceError};
pub use node::{Node, NodeError, NodeMode, NodeOptions};
pub use random::unique_name;
pub use real_node::{RealNode, RealNodeError, RealNodeOptions};
pub use wait::{wait_for, WaitError};
