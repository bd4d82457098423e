//! The session's video caps and what a point may send under them: the operator signs the caps
//! into each join token (from `ReceptionSession.spec.media.video` and the point's
//! `network.uplinkKbps`), the worker refuses producers above them and caps the send transport,
//! and the console (through `joined`) shapes its simulcast layers to fit.

use serde::{Deserialize, Serialize};

/// What Opus (mono, with FEC) and RTCP take of a point's uplink before video gets the rest;
/// the console reserves the same.
pub const AUDIO_RESERVE_KBPS: u32 = 64;
/// Below this a camera is not worth sending; an uplink cap leaves video at least this much.
pub const VIDEO_MIN_KBPS: u32 = 100;
/// What RTP headers, retransmissions and bandwidth probing add on the wire to the video's own
/// bitrate, in percent: the send transport allows this much over the video budget so the sender's
/// estimate can reach the budget and enable its top layer (which the encoder still holds to its
/// `maxBitrate`).
pub const TRANSPORT_OVERHEAD_PERCENT: u32 = 20;
/// Cameras send at most this many simulcast layers (low, medium, full).
pub const MAX_SIMULCAST_LAYERS: usize = 3;

/// `ReceptionSession.spec.media.video`, as signed into the `video` claim. 0 means no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct VideoCaps {
    /// The most a point's camera sends, all simulcast layers together, in kbit/s.
    #[serde(default)]
    pub max_bitrate_kbps: u32,
    /// The tallest picture a point's camera sends, in pixels.
    #[serde(default)]
    pub max_height: u32,
}

impl VideoCaps {
    /// No cap at all: what tokens issued before the claim existed carry.
    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }

    /// The most a point may send as video, in kbit/s, all layers together: the session's cap and
    /// what the point's uplink (`uplink_kbps`, 0 for none) leaves after audio, whichever is lower.
    /// `None` when neither caps it.
    pub fn video_budget_kbps(&self, uplink_kbps: u32) -> Option<u32> {
        let session = (self.max_bitrate_kbps > 0).then_some(self.max_bitrate_kbps);
        let uplink = (uplink_kbps > 0).then(|| uplink_kbps.saturating_sub(AUDIO_RESERVE_KBPS).max(VIDEO_MIN_KBPS));
        match (session, uplink) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The most a point's send transport may take in, in kbit/s: the video budget with its
    /// transport overhead, plus audio, and never more than the point's uplink. `None` when
    /// nothing caps it.
    pub fn send_cap_kbps(&self, uplink_kbps: u32) -> Option<u32> {
        let sent = self.video_budget_kbps(uplink_kbps).map(|video| {
            let overhead = video.saturating_mul(TRANSPORT_OVERHEAD_PERCENT) / 100;
            video.saturating_add(overhead).saturating_add(AUDIO_RESERVE_KBPS)
        });
        match (sent, uplink_kbps) {
            (sent, 0) => sent,
            (sent, uplink) => Some(sent.map_or(uplink, |s| s.min(uplink))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_lower_of_the_session_cap_and_the_uplink_less_audio() {
        let caps = |max_bitrate_kbps| VideoCaps { max_bitrate_kbps, max_height: 720 };
        // (session cap, uplink) -> video budget
        let table = [
            (0, 0, None),
            (500, 0, Some(500)),
            (0, 1000, Some(936)),
            (1500, 1000, Some(936)),
            (500, 1000, Some(500)),
            // A tiny uplink still leaves video its minimum; the transport cap holds the rest.
            (1500, 100, Some(VIDEO_MIN_KBPS)),
        ];
        for (session, uplink, want) in table {
            assert_eq!(caps(session).video_budget_kbps(uplink), want, "session {session}, uplink {uplink}");
        }
        // (session cap, uplink) -> send transport cap: the budget with its overhead and audio,
        // never above the uplink itself.
        let table =
            [(0, 0, None), (500, 0, Some(664)), (0, 384, Some(384)), (500, 1000, Some(664)), (1500, 1000, Some(1000))];
        for (session, uplink, want) in table {
            assert_eq!(caps(session).send_cap_kbps(uplink), want, "session {session}, uplink {uplink}");
        }
    }

    #[test]
    fn unset_caps_are_absent_on_the_wire_names_are_camel_case() {
        assert!(VideoCaps::default().is_unset());
        let value = serde_json::to_value(VideoCaps { max_bitrate_kbps: 500, max_height: 360 }).expect("serialize");
        assert_eq!(value, serde_json::json!({"maxBitrateKbps": 500, "maxHeight": 360}));
    }
}
