//! The connection checklist ("kiểm tra kết nối") a point must pass to be verified.
//!
//! Bytes flowing both ways (the old meaning of *verified*) let a muted microphone, a black camera
//! or an office that decodes nothing pass. So each item below is proved where it can be seen:
//!
//! ```text
//! console (the office's browser)        worker (the SFU)
//!   signaling   over WSS                  sfuAudio   the AudioLevelObserver heard non-silence
//!   icePath     a selected ICE pair       sfuVideo   video keyframes arrived, producer score > 0
//!   microphone  real audio level          mediaFlow  audio and video both ways within the
//!   camera      non-black frames                     loss/RTT thresholds for --verify-seconds
//!   hostVideo   the host's video decodes
//!   hostAudio   the host's audio has a real level
//! ```
//!
//! The console reports its items over signaling (`reportChecks`); the worker sets its own. Every
//! result keeps the time it last *changed*, so a report that repeats a result changes nothing in
//! `/v1/status` (and the operator writes nothing). A point whose spec says it is audio-only skips
//! the video items.
//!
//! This module is pure: times are passed in.

use std::collections::BTreeMap;
pub use tiepdan_contract::checks::{CheckItem, CheckState, CheckStatus, ConsoleCheck, IcePath};

/// A report the worker refuses, naming the item and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksError {
    #[error("checks[{index}].item: {item} is measured by the worker, not reported by the console")]
    NotAConsoleItem { index: usize, item: &'static str },
    #[error("checks[{index}].path: only icePath has a path")]
    PathOnWrongItem { index: usize },
    #[error("checks[{index}].item: {item} is reported twice")]
    Duplicate { index: usize, item: &'static str },
    #[error("checks: at most {max} items", max = CheckItem::ALL.len())]
    TooMany,
}

/// One item's result and when it last changed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Result_ {
    state: CheckState,
    path: Option<IcePath>,
    since: jiff::Timestamp,
}

/// A point's checklist for one allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checklist {
    results: BTreeMap<CheckItem, Result_>,
}

impl Checklist {
    /// Validates a console's report, then applies it; a refused report changes nothing.
    pub fn report(&mut self, checks: &[ConsoleCheck], now: jiff::Timestamp) -> Result<(), ChecksError> {
        if checks.len() > CheckItem::ALL.len() {
            return Err(ChecksError::TooMany);
        }
        for (index, check) in checks.iter().enumerate() {
            if !check.item.from_console() {
                return Err(ChecksError::NotAConsoleItem { index, item: check.item.as_str() });
            }
            if check.path.is_some() && check.item != CheckItem::IcePath {
                return Err(ChecksError::PathOnWrongItem { index });
            }
            if checks[..index].iter().any(|c| c.item == check.item) {
                return Err(ChecksError::Duplicate { index, item: check.item.as_str() });
            }
        }
        for check in checks {
            self.set(check.item, check.state, check.path, now);
        }
        Ok(())
    }

    /// Sets one item; its time moves only when the result changes.
    pub fn set(&mut self, item: CheckItem, state: CheckState, path: Option<IcePath>, now: jiff::Timestamp) {
        match self.results.get_mut(&item) {
            Some(r) if r.state == state && r.path == path => {}
            Some(r) => *r = Result_ { state, path, since: now },
            None => {
                self.results.insert(item, Result_ { state, path, since: now });
            }
        }
    }

    /// Passes a worker item once; it stays passed for the allocation (the rehearsal proved it).
    pub fn pass(&mut self, item: CheckItem, now: jiff::Timestamp) {
        if self.state(item) != CheckState::Passed {
            self.set(item, CheckState::Passed, None, now);
        }
    }

    pub fn state(&self, item: CheckItem) -> CheckState {
        self.results.get(&item).map(|r| r.state).unwrap_or_default()
    }

    /// Every required item passed: the rule behind `verified`.
    pub fn all_passed(&self, audio_only: bool) -> bool {
        CheckItem::ALL
            .iter()
            .filter(|item| item.required(audio_only))
            .all(|item| self.state(*item) == CheckState::Passed)
    }

    /// Every required item but `except` passed.
    pub fn all_passed_but(&self, audio_only: bool, except: CheckItem) -> bool {
        CheckItem::ALL
            .iter()
            .filter(|item| item.required(audio_only) && **item != except)
            .all(|item| self.state(*item) == CheckState::Passed)
    }

    /// The required items, in checklist order, never-measured ones as pending.
    pub fn status(&self, audio_only: bool) -> Vec<CheckStatus> {
        CheckItem::ALL
            .iter()
            .filter(|item| item.required(audio_only))
            .map(|&item| match self.results.get(&item) {
                Some(r) => CheckStatus { item, state: r.state, path: r.path, since: Some(r.since) },
                None => CheckStatus { item, state: CheckState::Pending, path: None, since: None },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_750_000_000 + second).expect("time")
    }

    fn check(item: CheckItem, state: CheckState) -> ConsoleCheck {
        ConsoleCheck { item, state, path: None }
    }

    fn all_console_passed() -> Vec<ConsoleCheck> {
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

    fn passed_except(skip: &[CheckItem]) -> Checklist {
        let mut list = Checklist::default();
        let console: Vec<_> = all_console_passed().into_iter().filter(|c| !skip.contains(&c.item)).collect();
        list.report(&console, at(0)).expect("report");
        for item in [CheckItem::SfuAudio, CheckItem::SfuVideo, CheckItem::MediaFlow, CheckItem::Reconnect] {
            if !skip.contains(&item) {
                list.pass(item, at(0));
            }
        }
        list
    }

    #[test]
    fn verified_needs_every_required_item() {
        // (missing items, audio-only point, all passed?)
        let table: &[(&[CheckItem], bool, bool)] = &[
            (&[], false, true),
            (&[CheckItem::Camera], false, false),
            (&[CheckItem::Microphone], false, false),
            (&[CheckItem::Signaling], false, false),
            (&[CheckItem::IcePath], false, false),
            (&[CheckItem::HostVideo], false, false),
            (&[CheckItem::HostAudio], false, false),
            (&[CheckItem::SfuAudio], false, false),
            (&[CheckItem::SfuVideo], false, false),
            (&[CheckItem::MediaFlow], false, false),
            (&[CheckItem::Reconnect], false, false),
            // An audio-only point has no video to prove...
            (&[CheckItem::Camera, CheckItem::HostVideo, CheckItem::SfuVideo], true, true),
            // ...but still a microphone and the host's sound.
            (&[CheckItem::Camera, CheckItem::Microphone], true, false),
            (&[CheckItem::HostAudio], true, false),
            (&[CheckItem::SfuAudio], true, false),
            // A point that is not audio-only must show video.
            (&[CheckItem::Camera, CheckItem::HostVideo, CheckItem::SfuVideo], false, false),
        ];
        for (missing, audio_only, expected) in table {
            let list = passed_except(missing);
            assert_eq!(list.all_passed(*audio_only), *expected, "missing {missing:?}, audio-only {audio_only}");
        }
    }

    #[test]
    fn a_failed_item_is_not_passed() {
        let mut list = passed_except(&[]);
        list.report(&[check(CheckItem::Camera, CheckState::Failed)], at(5)).expect("report");
        assert!(!list.all_passed(false));
        assert!(list.all_passed(true), "an audio-only point does not need the camera");
    }

    #[test]
    fn the_time_moves_only_when_a_result_changes() {
        let mut list = Checklist::default();
        list.report(&[check(CheckItem::Microphone, CheckState::Pending)], at(0)).expect("report");
        list.report(&[check(CheckItem::Microphone, CheckState::Pending)], at(3)).expect("report");
        let since =
            |l: &Checklist| l.status(false).iter().find(|c| c.item == CheckItem::Microphone).and_then(|c| c.since);
        assert_eq!(since(&list), Some(at(0)));
        list.report(&[check(CheckItem::Microphone, CheckState::Passed)], at(4)).expect("report");
        assert_eq!(since(&list), Some(at(4)));
        let ice = |path| ConsoleCheck { item: CheckItem::IcePath, state: CheckState::Passed, path: Some(path) };
        list.report(&[ice(IcePath::Udp)], at(5)).expect("report");
        list.report(&[ice(IcePath::TurnTls)], at(6)).expect("report");
        let status = list.status(false);
        let path = status.iter().find(|c| c.item == CheckItem::IcePath).expect("listed");
        assert_eq!((path.path, path.since), (Some(IcePath::TurnTls), Some(at(6))));
        // Worker items stay passed once passed.
        list.pass(CheckItem::SfuAudio, at(7));
        list.pass(CheckItem::SfuAudio, at(8));
        let sfu = list.status(false).into_iter().find(|c| c.item == CheckItem::SfuAudio).expect("listed");
        assert_eq!(sfu.since, Some(at(7)));
    }

    #[test]
    fn the_console_cannot_report_the_workers_items_or_nonsense() {
        let mut list = Checklist::default();
        let table: &[(&[ConsoleCheck], ChecksError)] = &[
            (
                &[check(CheckItem::Camera, CheckState::Passed), check(CheckItem::SfuAudio, CheckState::Passed)],
                ChecksError::NotAConsoleItem { index: 1, item: "sfuAudio" },
            ),
            (
                &[check(CheckItem::MediaFlow, CheckState::Passed)],
                ChecksError::NotAConsoleItem { index: 0, item: "mediaFlow" },
            ),
            (
                &[ConsoleCheck { item: CheckItem::Camera, state: CheckState::Passed, path: Some(IcePath::Udp) }],
                ChecksError::PathOnWrongItem { index: 0 },
            ),
            (
                &[check(CheckItem::Camera, CheckState::Passed), check(CheckItem::Camera, CheckState::Failed)],
                ChecksError::Duplicate { index: 1, item: "camera" },
            ),
        ];
        for (checks, expected) in table {
            assert_eq!(list.report(checks, at(0)).as_ref(), Err(expected));
        }
        assert_eq!(list, Checklist::default(), "a refused report changes nothing");
    }

    #[test]
    fn status_lists_the_required_items_in_order_with_the_wire_names() {
        let list = Checklist::default();
        let names: Vec<_> = list.status(true).iter().map(|c| c.item.as_str()).collect();
        assert_eq!(names, ["signaling", "icePath", "microphone", "hostAudio", "sfuAudio", "mediaFlow", "reconnect"]);
        for item in CheckItem::ALL {
            assert_eq!(serde_json::to_value(item).expect("serialize"), item.as_str());
        }
        let pending = serde_json::to_value(list.status(false)[0]).expect("serialize");
        assert_eq!(pending, serde_json::json!({"item": "signaling", "state": "pending"}));
        assert_eq!(serde_json::to_value(IcePath::TurnTls).expect("serialize"), "turn-tls");
    }
}
