//! Rehearsal ("chạy thử") verification of each point, and the `/v1/status` document.
//!
//! A point is *verified* once every item of its checklist ([`crate::checks`]) passed: its console
//! proved signaling, the ICE path, microphone, camera and the host's media in the office's
//! browser; the SFU heard its microphone and got its video keyframes; and it has, without
//! interruption for `--verify-seconds`, been sending audio and video, receiving audio and video
//! from at least one other point, and had loss and round-trip time within the thresholds
//! (`mediaFlow`). Verification is sticky for the allocation: a later drop does not undo it (the
//! rehearsal proved the office's setup works).
//!
//! This module is pure: samples come from the statistics poller, time is passed in.

use crate::checks::{CheckItem, Checklist, ChecksError, ConsoleCheck};
use crate::config::Thresholds;
use crate::ids::PointName;
use std::time::{Duration, Instant};

/// How soon a point must be back, with its media transport connected, after an interruption for
/// the `reconnect` item to pass: the console retries after about 1 s, and ICE and DTLS on a
/// commune's line take a few more.
pub const RECONNECT_WITHIN: Duration = Duration::from_secs(20);
/// After a forced interruption the point did not come back from in time, the worker waits this
/// long before trying again, so a struggling office is not cut off over and over.
pub const INTERRUPT_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// One poll's view of a point's media.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaSample {
    /// At least one transport is connected (DTLS for WebRTC, a known remote for plain RTP).
    pub connected: bool,
    /// An audio producer's byte count grew since the previous poll.
    pub sends_audio: bool,
    pub sends_video: bool,
    /// A consumer of another point's audio producer received bytes since the previous poll.
    pub receives_audio: bool,
    pub receives_video: bool,
    /// Worst round-trip time reported by RTCP, when any was.
    pub rtt_ms: Option<f64>,
    /// Worst loss of the point's outgoing (producer) and incoming (consumer) streams.
    pub loss_percent: Option<f64>,
    /// Worst inter-arrival jitter of the point's producers.
    pub jitter_ms: Option<f64>,
    /// The SFU's audio level observer has heard non-silence from one of the point's producers.
    pub audio_heard: bool,
    /// A video keyframe of the point arrived and its video producer's score is above zero.
    pub video_arrives: bool,
    /// The highest spatial layer forwarded to the point's video consumers.
    pub received_layer: Option<u8>,
    /// What the point sent and received over the poll, kbit/s.
    pub send_kbps: Option<u32>,
    pub receive_kbps: Option<u32>,
    /// The SFU's bandwidth estimate towards the point, kbit/s.
    pub estimate_kbps: Option<u32>,
    /// Of the packets the SFU sent the point over the poll, the share its receiver reported
    /// lost, percent (see [`crate::loss_cap`]).
    pub receive_loss_percent: Option<f64>,
}

impl MediaSample {
    /// Media flows both ways within the thresholds. A missing RTT (no RTCP yet, e.g. plain RTP
    /// without receiver reports) does not fail the check; a measured one over the limit does.
    /// An audio-only point needs no video.
    pub fn is_healthy(&self, thresholds: &Thresholds, audio_only: bool) -> bool {
        self.connected
            && self.sends_audio
            && (self.sends_video || audio_only)
            && self.receives_audio
            && (self.receives_video || audio_only)
            && self.loss_percent.unwrap_or(0.0) <= thresholds.max_loss_percent
            && self.rtt_ms.unwrap_or(0.0) <= thresholds.max_rtt_ms
    }
}

/// What the worker remembers about a point for the whole allocation.
#[derive(Debug, Clone)]
pub struct PointRecord {
    display_name: String,
    /// Joined at least once during this allocation.
    joined: bool,
    /// Has a signaling connection now.
    present: bool,
    last: MediaSample,
    healthy_since: Option<Instant>,
    verified_at: Option<jiff::Timestamp>,
    /// When a second connection last joined with this point's link while one was open: the
    /// office reconnecting from another window, or someone else holding its link.
    reused_at: Option<jiff::Timestamp>,
    /// The point's spec says it has no camera (from its join token): the video items are skipped.
    audio_only: bool,
    /// When the session starts (from the join token): the worker interrupts a point to prove it
    /// reconnects only before then, never during the reception itself.
    starts_at: Option<jiff::Timestamp>,
    /// When the worker last interrupted the point on purpose.
    interrupted_at: Option<Instant>,
    /// The point has not been connected since that interruption. Only the worker's own
    /// interruption counts: an officer who leaves and joins again proves nothing about the
    /// console's reconnection.
    awaiting_return: bool,
    checks: Checklist,
}

impl PointRecord {
    pub fn new(display_name: String) -> Self {
        Self {
            display_name,
            joined: false,
            present: false,
            last: MediaSample::default(),
            healthy_since: None,
            verified_at: None,
            reused_at: None,
            audio_only: false,
            starts_at: None,
            interrupted_at: None,
            awaiting_return: false,
            checks: Checklist::default(),
        }
    }

    pub fn on_join(&mut self, display_name: String, audio_only: bool, starts_at: Option<jiff::Timestamp>) {
        // Still present: the connection that had it was just replaced by this one.
        if self.present {
            self.reused_at = Some(jiff::Timestamp::now());
        }
        self.display_name = display_name;
        self.audio_only = audio_only;
        self.starts_at = starts_at;
        self.joined = true;
        self.present = true;
        self.healthy_since = None;
    }

    pub fn on_leave(&mut self) {
        self.present = false;
        self.last = MediaSample::default();
        self.healthy_since = None;
    }

    pub fn present(&self) -> bool {
        self.present
    }

    pub fn verified(&self) -> bool {
        self.verified_at.is_some()
    }

    pub fn last_sample(&self) -> MediaSample {
        self.last
    }

    /// Takes one poll's sample; returns true when this sample completed verification.
    pub fn observe(
        &mut self,
        sample: MediaSample,
        now: Instant,
        wall_now: jiff::Timestamp,
        thresholds: &Thresholds,
    ) -> bool {
        if !self.present {
            // A poll that raced with a leave: ignore rather than resurrect media state.
            return false;
        }
        self.last = sample;
        if let (true, true, Some(at)) = (sample.connected, self.awaiting_return, self.interrupted_at) {
            self.awaiting_return = false;
            self.reconnected(now.duration_since(at), wall_now);
        }
        if sample.audio_heard {
            self.checks.pass(CheckItem::SfuAudio, wall_now);
        }
        if sample.video_arrives {
            self.checks.pass(CheckItem::SfuVideo, wall_now);
        }
        if !sample.is_healthy(thresholds, self.audio_only) {
            self.healthy_since = None;
            return false;
        }
        let since = *self.healthy_since.get_or_insert(now);
        if now.duration_since(since) >= thresholds.verify_for {
            self.checks.pass(CheckItem::MediaFlow, wall_now);
        }
        self.complete(wall_now)
    }

    /// Records the console's checklist; returns true when this report completed verification.
    pub fn report_checks(&mut self, checks: &[ConsoleCheck], wall_now: jiff::Timestamp) -> Result<bool, ChecksError> {
        self.checks.report(checks, wall_now)?;
        Ok(self.complete(wall_now))
    }

    /// The point is connected again `after` the worker cut it: `reconnect` passes when that
    /// was soon enough. A pass stays (the office proved it); a slow return fails the item until a
    /// later interruption proves it.
    fn reconnected(&mut self, after: Duration, wall_now: jiff::Timestamp) {
        if after <= RECONNECT_WITHIN {
            self.checks.pass(CheckItem::Reconnect, wall_now);
        } else if self.checks.state(CheckItem::Reconnect) != crate::checks::CheckState::Passed {
            self.checks.set(CheckItem::Reconnect, crate::checks::CheckState::Failed, None, wall_now);
        }
    }

    /// Whether the worker should now cut this point's connection to prove it reconnects: only
    /// once every other item passed (the office works, the last thing to prove is that it
    /// recovers), only before the session starts, and not again soon after a try.
    pub fn interruption_due(&self, now: Instant, wall_now: jiff::Timestamp) -> bool {
        self.present
            && self.last.connected
            && !self.awaiting_return
            && self.checks.state(CheckItem::Reconnect) != crate::checks::CheckState::Passed
            && self.starts_at.is_none_or(|start| wall_now < start)
            && self.interrupted_at.is_none_or(|at| now.duration_since(at) >= INTERRUPT_AGAIN_AFTER)
            && self.checks.all_passed_but(self.audio_only, CheckItem::Reconnect)
    }

    /// The worker cut the point's connection on purpose at `now`.
    pub fn interrupted(&mut self, now: Instant) {
        self.interrupted_at = Some(now);
        self.awaiting_return = true;
    }

    /// Verified once every required item passed, whichever arrived last.
    fn complete(&mut self, wall_now: jiff::Timestamp) -> bool {
        if self.verified_at.is_none() && self.checks.all_passed(self.audio_only) {
            self.verified_at = Some(wall_now);
            return true;
        }
        false
    }

    pub fn status(&self, name: &PointName) -> PointStatus {
        let media = if self.present { self.last } else { MediaSample::default() };
        PointStatus {
            name: name.clone(),
            display_name: self.display_name.clone(),
            joined: self.joined,
            present: self.present,
            connected: self.present && media.connected,
            sends_audio: media.sends_audio,
            sends_video: media.sends_video,
            receives_audio: media.receives_audio,
            receives_video: media.receives_video,
            verified: self.verified_at.is_some(),
            verified_at: self.verified_at,
            link_reused_at: self.reused_at,
            rtt_ms: media.rtt_ms,
            loss_percent: media.loss_percent,
            jitter_ms: media.jitter_ms,
            received_layer: media.received_layer,
            send_kbps: media.send_kbps,
            receive_kbps: media.receive_kbps,
            estimate_kbps: media.estimate_kbps,
            // The registry adds the browser's reports (kept in the metrics).
            freezes: 0,
            audio_only: self.audio_only,
            checks: self.checks.status(self.audio_only),
        }
    }
}

pub use tiepdan_contract::admin::{PointStatus, TlsStatus, WorkerStatus};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn thresholds() -> Thresholds {
        Thresholds { verify_for: Duration::from_secs(10), max_loss_percent: 2.0, max_rtt_ms: 300.0 }
    }

    fn flowing() -> MediaSample {
        MediaSample {
            connected: true,
            sends_audio: true,
            sends_video: true,
            receives_audio: true,
            receives_video: true,
            rtt_ms: Some(40.0),
            loss_percent: Some(0.5),
            jitter_ms: Some(3.0),
            audio_heard: true,
            video_arrives: true,
            ..MediaSample::default()
        }
    }

    /// The console's items, every one passed.
    fn console_passed() -> Vec<ConsoleCheck> {
        use crate::checks::{CheckState, IcePath};
        CheckItem::ALL
            .iter()
            .filter(|i| i.from_console())
            .map(|&item| ConsoleCheck {
                item,
                state: CheckState::Passed,
                path: (item == CheckItem::IcePath).then_some(IcePath::Udp),
            })
            .collect()
    }

    /// Joined, with the console's checklist passed: only the media period is left.
    fn joined() -> PointRecord {
        let mut record = PointRecord::new("UBND xã".to_owned());
        record.on_join("UBND xã".to_owned(), false, None);
        record.report_checks(&console_passed(), wall()).expect("report");
        record
    }

    fn wall() -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }

    /// The worker interrupts the point at `at` and its console is back and connected `after`
    /// later; returns what the sample after the return said (whether it completed verification).
    fn interrupt_and_return(record: &mut PointRecord, sample: MediaSample, at: Instant, after: Duration) -> bool {
        record.interrupted(at);
        record.on_leave();
        record.on_join("UBND xã".to_owned(), record.audio_only, record.starts_at);
        record.observe(sample, at + after, wall(), &thresholds())
    }

    #[test]
    fn verified_after_an_unbroken_healthy_period() {
        let mut record = joined();
        let t0 = Instant::now();
        for s in 0..=10 {
            assert!(!record.observe(flowing(), t0 + Duration::from_secs(s), wall(), &thresholds()));
            // Nothing to interrupt for until the office proved everything else.
            assert_eq!(record.interruption_due(t0 + Duration::from_secs(s), wall()), s == 10, "at {s} s");
        }
        assert!(!record.verified(), "the office has yet to show it reconnects");
        let t1 = t0 + Duration::from_secs(10);
        assert!(interrupt_and_return(&mut record, flowing(), t1, Duration::from_secs(3)));
        assert!(record.verified());
        assert!(!record.interruption_due(t1 + INTERRUPT_AGAIN_AFTER * 2, wall()), "proved once is enough");
    }

    #[test]
    fn the_reconnect_item_needs_a_prompt_return_and_is_tried_again_later() {
        use crate::checks::CheckState;
        let mut record = joined();
        let t0 = Instant::now();
        for s in 0..=10 {
            record.observe(flowing(), t0 + Duration::from_secs(s), wall(), &thresholds());
        }
        let t1 = t0 + Duration::from_secs(10);
        // Back, but only after the deadline: failed, not verified.
        assert!(!interrupt_and_return(&mut record, flowing(), t1, RECONNECT_WITHIN + Duration::from_secs(1)));
        assert_eq!(record.checks.state(CheckItem::Reconnect), CheckState::Failed);
        // Not interrupted again at once...
        let back = t1 + RECONNECT_WITHIN + Duration::from_secs(1);
        assert!(!record.interruption_due(back, wall()));
        // ...but after a while; this time the office is back in 2 s.
        let t2 = t1 + INTERRUPT_AGAIN_AFTER;
        record.observe(flowing(), t2, wall(), &thresholds());
        assert!(record.interruption_due(t2, wall()));
        assert!(interrupt_and_return(&mut record, flowing(), t2, Duration::from_secs(2)));
        // A return that is not yet connected does not count.
        let mut slow = joined();
        slow.interrupted(t0);
        slow.on_leave();
        slow.on_join("UBND xã".to_owned(), false, None);
        let unconnected = MediaSample { connected: false, ..flowing() };
        slow.observe(unconnected, t0 + Duration::from_secs(1), wall(), &thresholds());
        assert_eq!(slow.checks.state(CheckItem::Reconnect), CheckState::Pending, "not connected yet");
        slow.observe(flowing(), t0 + Duration::from_secs(2), wall(), &thresholds());
        assert_eq!(slow.checks.state(CheckItem::Reconnect), CheckState::Passed);
    }

    #[test]
    fn leaving_and_joining_again_proves_nothing_and_a_started_session_is_never_interrupted() {
        use crate::checks::CheckState;
        let start = jiff::Timestamp::from_second(1_750_000_000).expect("time");
        let before = start - jiff::SignedDuration::from_secs(60);
        let t0 = Instant::now();
        let mut record = PointRecord::new("UBND xã".to_owned());
        record.on_join("UBND xã".to_owned(), false, Some(start));
        record.report_checks(&console_passed(), before).expect("report");
        for s in 0..=10 {
            record.observe(flowing(), t0 + Duration::from_secs(s), before, &thresholds());
        }
        let t1 = t0 + Duration::from_secs(10);
        assert!(record.interruption_due(t1, before));
        assert!(!record.interruption_due(t1, start), "the reception has started");
        // The officer left and joined again (or ran the device test first): the console's own
        // reconnection was not exercised, so the item stays open.
        record.on_leave();
        record.on_join("UBND xã".to_owned(), false, Some(start));
        assert!(!record.observe(flowing(), t1 + Duration::from_secs(4), before, &thresholds()));
        assert_eq!(record.checks.state(CheckItem::Reconnect), CheckState::Pending);
        assert!(record.interruption_due(t1 + Duration::from_secs(4), before));
    }

    #[test]
    fn a_break_restarts_the_period() {
        let mut record = joined();
        let t0 = Instant::now();
        record.observe(flowing(), t0, wall(), &thresholds());
        let lossy = MediaSample { loss_percent: Some(5.0), ..flowing() };
        record.observe(lossy, t0 + Duration::from_secs(5), wall(), &thresholds());
        record.observe(flowing(), t0 + Duration::from_secs(6), wall(), &thresholds());
        record.observe(flowing(), t0 + Duration::from_secs(12), wall(), &thresholds());
        assert_eq!(record.checks.state(CheckItem::MediaFlow), crate::checks::CheckState::Pending);
        record.observe(flowing(), t0 + Duration::from_secs(16), wall(), &thresholds());
        assert_eq!(record.checks.state(CheckItem::MediaFlow), crate::checks::CheckState::Passed);
    }

    #[test]
    fn receiving_nothing_from_others_is_not_healthy() {
        let alone = MediaSample { receives_audio: false, receives_video: false, ..flowing() };
        assert!(!alone.is_healthy(&thresholds(), false));
        let slow = MediaSample { rtt_ms: Some(301.0), ..flowing() };
        assert!(!slow.is_healthy(&thresholds(), false));
        let unmeasured = MediaSample { rtt_ms: None, loss_percent: None, ..flowing() };
        assert!(unmeasured.is_healthy(&thresholds(), false));
        let no_video = MediaSample { sends_video: false, receives_video: false, ..flowing() };
        assert!(!no_video.is_healthy(&thresholds(), false));
        assert!(no_video.is_healthy(&thresholds(), true), "an audio-only point sends no video");
    }

    #[test]
    fn flowing_bytes_without_the_checklist_are_not_verified() {
        let t0 = Instant::now();
        // (what is missing, verified after a long healthy period?)
        let silent = MediaSample { audio_heard: false, ..flowing() };
        let no_keyframes = MediaSample { video_arrives: false, ..flowing() };
        let table: [(&str, MediaSample, bool, bool); 4] = [
            ("everything", flowing(), true, true),
            ("no console report", flowing(), false, false),
            ("the SFU hears silence", silent, true, false),
            ("no video keyframes", no_keyframes, true, false),
        ];
        for (what, sample, console_reports, expected) in table {
            let mut record = PointRecord::new("UBND xã".to_owned());
            record.on_join("UBND xã".to_owned(), false, None);
            if console_reports {
                record.report_checks(&console_passed(), wall()).expect("report");
            }
            for s in 0..=20 {
                record.observe(sample, t0 + Duration::from_secs(s), wall(), &thresholds());
            }
            let t1 = t0 + Duration::from_secs(20);
            assert_eq!(record.interruption_due(t1, wall()), expected, "{what}");
            interrupt_and_return(&mut record, sample, t1, Duration::from_secs(2));
            assert_eq!(record.verified(), expected, "{what}");
        }
    }

    #[test]
    fn a_late_console_report_completes_verification_and_a_black_camera_never_does() {
        use crate::checks::CheckState;
        let t0 = Instant::now();
        let mut record = PointRecord::new("UBND xã".to_owned());
        record.on_join("UBND xã".to_owned(), false, None);
        for s in 0..=10 {
            record.observe(flowing(), t0 + Duration::from_secs(s), wall(), &thresholds());
        }
        let mut black = console_passed();
        for check in &mut black {
            if check.item == CheckItem::Camera {
                check.state = CheckState::Failed;
            }
        }
        assert_eq!(record.report_checks(&black, wall()), Ok(false));
        let status = record.status(&"p".parse().expect("point"));
        assert!(!status.verified);
        let camera = status.checks.iter().find(|c| c.item == CheckItem::Camera).expect("listed");
        assert_eq!(camera.state, CheckState::Failed);
        assert!(!record.interruption_due(t0 + Duration::from_secs(10), wall()), "the camera is not proved");
        assert_eq!(record.report_checks(&console_passed(), wall()), Ok(false));
        assert!(interrupt_and_return(&mut record, flowing(), t0 + Duration::from_secs(11), Duration::from_secs(2)));
    }

    #[test]
    fn an_audio_only_point_is_verified_without_video() {
        let t0 = Instant::now();
        let mut record = PointRecord::new("UBND xã".to_owned());
        record.on_join("UBND xã".to_owned(), true, None);
        let audio: Vec<_> = console_passed().into_iter().filter(|c| c.item.required(true)).collect();
        record.report_checks(&audio, wall()).expect("report");
        let sample = MediaSample { sends_video: false, receives_video: false, video_arrives: false, ..flowing() };
        for s in 0..=10 {
            record.observe(sample, t0 + Duration::from_secs(s), wall(), &thresholds());
        }
        assert!(interrupt_and_return(&mut record, sample, t0 + Duration::from_secs(10), Duration::from_secs(2)));
        let status = serde_json::to_value(record.status(&"p".parse().expect("point"))).expect("serialize");
        assert_eq!(status["audioOnly"], true);
        assert!(status["checks"].as_array().expect("checks").iter().all(|c| c["item"] != "camera"));
    }

    #[test]
    fn verification_is_sticky_and_leaving_clears_live_fields() {
        let mut record = joined();
        let t0 = Instant::now();
        record.observe(flowing(), t0, wall(), &thresholds());
        record.observe(flowing(), t0 + Duration::from_secs(10), wall(), &thresholds());
        assert!(interrupt_and_return(&mut record, flowing(), t0 + Duration::from_secs(10), Duration::from_secs(2)));
        record.on_leave();
        let status = record.status(&"p".parse().expect("point"));
        assert!(status.verified && status.joined);
        assert!(!status.connected && !status.present && !status.sends_audio);
        assert_eq!(status.verified_at, Some(wall()));
    }

    #[test]
    fn samples_after_leaving_are_ignored() {
        let mut record = joined();
        record.on_leave();
        record.observe(flowing(), Instant::now(), wall(), &thresholds());
        assert!(!record.last_sample().connected);
    }

    #[test]
    fn the_tls_field_has_the_contract_shape_and_is_omitted_without_a_certificate() {
        let mut status = WorkerStatus {
            session: None,
            title: None,
            allowed_points: None,
            link_generations: BTreeMap::new(),
            draining: false,
            points: Vec::new(),
            tls: None,
            announced: None,
        };
        let value = serde_json::to_value(&status).expect("serialize");
        assert!(value.get("tls").is_none(), "{value}");
        status.tls = Some(TlsStatus { sha256: "ab".repeat(32), loaded_at: wall() });
        let value = serde_json::to_value(&status).expect("serialize");
        assert_eq!(value["tls"], serde_json::json!({"sha256": "ab".repeat(32), "loadedAt": "1970-01-01T00:00:00Z"}));
        let null: WorkerStatus =
            serde_json::from_str(r#"{"session":null,"title":null,"draining":false,"points":[],"tls":null}"#)
                .expect("null tls");
        assert!(null.tls.is_none());
    }

    #[test]
    fn verified_at_is_the_wall_clock_of_the_completing_sample_and_absent_before() {
        let mut record = joined();
        let name = "p".parse().expect("point");
        let t0 = Instant::now();
        let passed = jiff::Timestamp::from_second(1_750_000_000).expect("time");
        record.observe(flowing(), t0, passed - jiff::SignedDuration::from_secs(10), &thresholds());
        let before = serde_json::to_value(record.status(&name)).expect("serialize");
        assert!(before.get("verifiedAt").is_none(), "{before}");

        record.observe(
            flowing(),
            t0 + Duration::from_secs(10),
            passed - jiff::SignedDuration::from_secs(3),
            &thresholds(),
        );
        let t1 = t0 + Duration::from_secs(10);
        record.interrupted(t1);
        record.on_leave();
        record.on_join("UBND xã".to_owned(), false, None);
        assert!(record.observe(flowing(), t1 + Duration::from_secs(3), passed, &thresholds()));
        // A later sample does not move it: it is when verification passed.
        record.observe(
            flowing(),
            t1 + Duration::from_secs(4),
            passed + jiff::SignedDuration::from_secs(1),
            &thresholds(),
        );
        let after = serde_json::to_value(record.status(&name)).expect("serialize");
        assert_eq!(after["verifiedAt"], "2025-06-15T15:06:40Z");
        let parsed: PointStatus = serde_json::from_value(after).expect("deserialize");
        assert_eq!(parsed.verified_at, Some(passed));
        let unverified: PointStatus = serde_json::from_value(before).expect("deserialize without verifiedAt");
        assert_eq!(unverified.verified_at, None);
    }

    #[test]
    fn status_uses_the_contract_field_names() {
        let mut record = joined();
        let t0 = Instant::now();
        record.observe(flowing(), t0, wall(), &thresholds());
        record.observe(flowing(), t0 + Duration::from_secs(10), wall(), &thresholds());
        assert!(interrupt_and_return(&mut record, flowing(), t0 + Duration::from_secs(10), Duration::from_secs(2)));
        let status = record.status(&"p".parse().expect("point"));
        let value = serde_json::to_value(&status).expect("serialize");
        for field in [
            "name",
            "displayName",
            "joined",
            "connected",
            "sendsAudio",
            "sendsVideo",
            "receivesAudio",
            "receivesVideo",
            "verified",
            "verifiedAt",
            "rttMs",
            "lossPercent",
            "jitterMs",
        ] {
            assert!(value.get(field).is_some(), "missing {field}");
        }
    }
}
