//! tiepdan's contract: the types and constants that cross its parts, defined once.
//!
//! - operator → worker: join and admin tokens (claims, Ed25519 keys, `kid`/`typ`/audiences), the
//!   admin API (`/v1/allocation`, `/v1/status`), the worker's flags and ports;
//! - worker → console: error codes, roles and the join claims the console reads, from which the
//!   console's TypeScript is generated (`media-worker`'s `console_types`).
#![forbid(unsafe_code)]

pub mod admin;
pub mod checks;
pub mod errors;
pub mod ids;
pub mod media;
pub mod roles;
pub mod tokens;
pub mod worker_flags;

pub use errors::ErrorCode;
pub use media::VideoCaps;
pub use roles::Role;
