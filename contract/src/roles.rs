//! Who a join token is for.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// The `role` claim of a join token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Host,
    Participant,
    /// The synthetic prober (`tiepdan-media-worker probe`), not a reception point. Only a probe
    /// may open plain-RTP transports; it lives in its own name space in the room, sees and is
    /// seen by other probes only, and never counts toward any point's verification.
    Probe,
}

impl Role {
    pub fn is_probe(self) -> bool {
        self == Self::Probe
    }
}
