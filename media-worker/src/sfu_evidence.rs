//! What the SFU itself sees of each producer beyond byte counts, for the checklist's worker items
//! (`sfuAudio`, `sfuVideo`): a muted microphone still sends Opus packets, a black camera still
//! sends frames, so bytes alone prove neither.
//!
//! mediasoup reports both as events on its own channel thread: the router's AudioLevelObserver
//! names producers whose RTP audio-level header extension says there is sound, and a video
//! producer's `keyframe` trace event says a decodable picture arrived. The handlers only set
//! flags here; the statistics poller reads them with the producer's score.

use mediasoup::prelude::ProducerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// dBov above which the observer counts a producer as not silent. Speech is around −30 to −20;
/// Chromium marks a muted or silent input −127.
pub const VOICE_THRESHOLD_DBOV: i8 = -70;

/// What the SFU has seen of one producer since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub voice: bool,
    pub keyframe: bool,
}

/// Shared by the room's event handlers (writers) and the statistics poller (reader).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    seen: Arc<Mutex<HashMap<ProducerId, Seen>>>,
}

impl Evidence {
    fn lock(&self) -> MutexGuard<'_, HashMap<ProducerId, Seen>> {
        // Flags only: a poisoned map is still a valid map.
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn heard(&self, producer: ProducerId) {
        self.lock().entry(producer).or_default().voice = true;
    }

    pub fn keyframe(&self, producer: ProducerId) {
        self.lock().entry(producer).or_default().keyframe = true;
    }

    pub fn seen(&self, producer: &ProducerId) -> Seen {
        self.lock().get(producer).copied().unwrap_or_default()
    }

    /// The producer closed: its flags go with it.
    pub fn forget(&self, producer: &ProducerId) {
        self.lock().remove(producer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ProducerId {
        let uuid = format!("{:08x}-0000-4000-8000-000000000000", rand::random::<u32>());
        serde_json::from_value(serde_json::Value::String(uuid)).expect("uuid")
    }

    #[test]
    fn flags_are_per_producer_and_forgotten_with_it() {
        let evidence = Evidence::default();
        let (audio, video) = (id(), id());
        evidence.heard(audio);
        evidence.keyframe(video);
        assert_eq!(evidence.seen(&audio), Seen { voice: true, keyframe: false });
        assert_eq!(evidence.seen(&video), Seen { voice: false, keyframe: true });
        evidence.forget(&audio);
        assert_eq!(evidence.seen(&audio), Seen::default());
    }
}
