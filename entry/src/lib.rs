//! tiepdan's stable entry: the one address offices use (`https://<entry>/join#token=…`). It
//! serves the console itself and routes each signaling WebSocket to the current worker of its
//! token's session, so a link outlives the worker pod it was first served by.
//!
//! ```text
//!  browser ──GET /join──────────► entry: the console's bytes (tiepdan-console-assets)
//!  browser ──WSS /v1/ws─────────► entry ── first frame {"action":"join","token":…}
//!                                   │  token's `aud` = the session id (namespace/name)
//!                                   │  routes: ReceptionSession.status.worker.pod → Pod IP + signaling port
//!                                   └─WSS (operator CA, TLS name <session>-signaling.<ns>.svc)──► worker
//!                                      first frame replayed, then frames piped both ways
//!  browser ──POST /v1/join-check─► entry ── same routing ──► worker's /v1/join-check
//! ```
//!
//! The worker checks the token (signature, time, epoch); the entry only reads the session id from
//! it, and never logs it. See `docs/entry.md` for why the entry is a component of its own.
#![forbid(unsafe_code)]

pub mod config;
pub mod first_frame;
pub mod http;
pub mod kube_routes;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod static_routes;
pub mod tls;
pub mod upstream;
