//! WebSocket signaling: the protocol (one file of enums) and the per-connection state machine.

pub mod protocol;
pub mod session;
