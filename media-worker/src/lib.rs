//! tiepdan media worker: a mediasoup SFU for one online citizen reception session at a time.
//!
//! ```text
//!             HTTP (axum)                                   media thread (LocalRunner)
//!  /v1/ws ── signaling::session ──> Registry ──> Room ──────> mediasoup Router / transports
//!  /v1/status, /metrics, /v1/allocation   │        (Weak)            │
//!                                          └─ PointRecord <── stats_poller (get_stats every 1 s)
//! ```
//!
//! - [`registry`]: the allocation (which session), the room, per-point verification records.
//! - [`room`]: the media plane of a session; owns the Router and every point's media objects.
//! - [`signaling::protocol`]: every WebSocket message, both directions.
//! - [`verification`]: when a point counts as verified; the `/v1/status` document.
//! - [`tls`]: the certificate served over TLS, reloaded from a Secret volume while running.
//! - [`admin_auth`]: admin calls only from the operator, for this pod, each token once.
//! - [`turn`]: TURN relay credentials (the TURN REST API shared secret) handed to each point.
//! - [`probe`]: a plain-RTP client that measures a worker end to end.
//! - [`console`]: the reception-point browser console (`web/`, bundled by the `tiepdan-console-assets` crate), served at
//!   `/` and `/join`.
//! - [`console_types`]: the console's TypeScript wire types, generated from the Rust ones.

#![forbid(unsafe_code)]

pub mod active_speaker;
pub mod admin_auth;
pub mod checks;
pub mod config;
pub mod console;
pub mod console_types;
// The contract crate defines these; re-exported so `crate::ids`/`crate::tokens` read as before.
pub use tiepdan_contract::{ids, tokens};
pub mod cpu;
pub mod http;
pub mod layers;
pub mod local_runner;
pub mod logging;
pub mod loss_cap;
pub mod metrics;
pub mod moderation;
pub mod probe;
pub mod registry;
pub mod room;
pub mod rtc_socket;
pub mod server;
pub mod sfu_evidence;
pub mod signaling;
pub mod stats_poller;
pub mod tls;
pub mod turn;
pub mod verification;
pub mod workers;
