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

/// dBov above which the observer counts a producer as not silent: the console's microphone
/// threshold (RMS 0.01, −40 dBFS) with 10 dB to spare. Speech is around −30 to −20; Chromium marks
/// a muted or silent input −127. At −70 a silent microphone's odd low report passed `sfuAudio`
/// now and then (CI, three times).
pub const VOICE_THRESHOLD_DBOV: i8 = -50;

/// Reports above the threshold (half a second each) before the SFU vouches for a voice: a word,
/// not a click.
pub const VOICE_REPORTS: u8 = 2;

/// What the SFU has seen of one producer since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub voice: bool,
    pub keyframe: bool,
}

/// Shared by the room's event handlers (writers) and the statistics poller (reader).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    seen: Arc<Mutex<HashMap<ProducerId, Record>>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    voiced_reports: u8,
    keyframe: bool,
}

impl Evidence {
    fn lock(&self) -> MutexGuard<'_, HashMap<ProducerId, Record>> {
        // Flags only: a poisoned map is still a valid map.
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The observer reported the producer above the threshold once more.
    pub fn heard(&self, producer: ProducerId) {
        let mut seen = self.lock();
        let record = seen.entry(producer).or_default();
        record.voiced_reports = record.voiced_reports.saturating_add(1);
    }

    pub fn keyframe(&self, producer: ProducerId) {
        self.lock().entry(producer).or_default().keyframe = true;
    }

    pub fn seen(&self, producer: &ProducerId) -> Seen {
        let record = self.lock().get(producer).copied().unwrap_or_default();
        Seen { voice: record.voiced_reports >= VOICE_REPORTS, keyframe: record.keyframe }
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
        // One report is a click, not a voice.
        assert_eq!(evidence.seen(&audio), Seen::default());
        evidence.heard(audio);
        assert_eq!(evidence.seen(&audio), Seen { voice: true, keyframe: false });
        assert_eq!(evidence.seen(&video), Seen { voice: false, keyframe: true });
        evidence.forget(&audio);
        assert_eq!(evidence.seen(&audio), Seen::default());
    }
}
