//! Who speaks now, and who has the floor: what drives the consoles' focus layout.
//!
//! The room's AudioLevelObserver reports, every interval, the points above the voice threshold,
//! loudest first. A point becomes the *active speaker* once it has been the loudest in
//! [`REPORTS_TO_SWITCH`] reports in a row, so a cough or a door does not pull the layout around;
//! silence keeps the last speaker (the picture should not jump back when someone pauses). The
//! host may *give the floor* to one point (where the citizen sits): that point is shown large
//! for everyone whoever speaks, until the host takes it back.
//!
//! This module is pure: the room feeds it reports and pushes what changed.

use crate::ids::PointName;
use tiepdan_contract::roles::Role;

/// How many reports in a row a point must be the loudest to become the speaker. With the
/// observer's 500 ms interval that is 1 to 1.5 s, inside the 2 s the consoles must follow.
pub const REPORTS_TO_SWITCH: u8 = 2;

/// Why a floor request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FloorError {
    #[error("only the host's console may give the floor")]
    NotHost,
    #[error("point: {0} is not in the session's room now")]
    NotPresent(PointName),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Speakers {
    speaker: Option<PointName>,
    /// The loudest of the last report and in how many reports in a row it was.
    candidate: Option<(PointName, u8)>,
    floor: Option<PointName>,
}

impl Speakers {
    pub fn speaker(&self) -> Option<&PointName> {
        self.speaker.as_ref()
    }

    pub fn floor(&self) -> Option<&PointName> {
        self.floor.as_ref()
    }

    /// One observer report: the points heard, loudest first (an empty report is silence).
    /// Returns the new speaker when it changed.
    pub fn report(&mut self, loudest_first: &[PointName]) -> Option<PointName> {
        let Some(loudest) = loudest_first.first() else {
            // Silence: the last speaker stays, and a run of loudness is broken.
            self.candidate = None;
            return None;
        };
        let run = match &self.candidate {
            Some((point, n)) if point == loudest => n.saturating_add(1),
            _ => 1,
        };
        self.candidate = Some((loudest.clone(), run));
        if run >= REPORTS_TO_SWITCH && self.speaker.as_ref() != Some(loudest) {
            self.speaker = Some(loudest.clone());
            return self.speaker.clone();
        }
        None
    }

    /// A point left: it can no longer be the speaker or hold the floor. Returns whether the
    /// speaker or the floor changed.
    pub fn left(&mut self, point: &PointName) -> (bool, bool) {
        let speaker = self.speaker.as_ref() == Some(point);
        if speaker {
            self.speaker = None;
        }
        if self.candidate.as_ref().is_some_and(|(p, _)| p == point) {
            self.candidate = None;
        }
        let floor = self.floor.as_ref() == Some(point);
        if floor {
            self.floor = None;
        }
        (speaker, floor)
    }

    /// The host gives the floor to `point` (present: `present`), or takes it back (`None`).
    /// Returns whether it changed.
    pub fn give_floor(&mut self, actor: Role, point: Option<&PointName>, present: bool) -> Result<bool, FloorError> {
        if actor != Role::Host {
            return Err(FloorError::NotHost);
        }
        if let (Some(point), false) = (point, present) {
            return Err(FloorError::NotPresent(point.clone()));
        }
        let changed = self.floor.as_ref() != point;
        self.floor = point.cloned();
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> PointName {
        name.parse().expect("point")
    }

    #[test]
    fn the_loudest_becomes_the_speaker_after_a_run_and_silence_keeps_it() {
        // (report, loudest first; expected change)
        let a = || vec![p("xa-a"), p("xa-b")];
        let b = || vec![p("xa-b"), p("xa-a")];
        let table: Vec<(Vec<PointName>, Option<&str>)> = vec![
            (a(), None),         // one report is a cough
            (a(), Some("xa-a")), // two in a row: the speaker
            (a(), None),         // still speaking: no change to push
            (b(), None),         // interrupted once
            (a(), None),         // back: the run restarts, and it is still the speaker
            (vec![], None),      // silence keeps the speaker
            (b(), None),
            (vec![], None), // silence breaks b's run
            (b(), None),
            (b(), Some("xa-b")),
        ];
        let mut s = Speakers::default();
        for (i, (report, expected)) in table.into_iter().enumerate() {
            assert_eq!(s.report(&report), expected.map(p), "report {i}");
        }
        assert_eq!(s.speaker(), Some(&p("xa-b")));
    }

    #[test]
    fn only_the_host_gives_the_floor_to_a_present_point() {
        let mut s = Speakers::default();
        assert_eq!(s.give_floor(Role::Participant, Some(&p("xa-a")), true), Err(FloorError::NotHost));
        assert_eq!(s.give_floor(Role::Probe, None, true), Err(FloorError::NotHost));
        let absent = s.give_floor(Role::Host, Some(&p("xa-z")), false).expect_err("absent");
        assert_eq!(absent.to_string(), "point: xa-z is not in the session's room now");
        assert_eq!(s.give_floor(Role::Host, Some(&p("xa-a")), true), Ok(true));
        assert_eq!(s.give_floor(Role::Host, Some(&p("xa-a")), true), Ok(false), "no change, nothing to push");
        assert_eq!(s.floor(), Some(&p("xa-a")));
        assert_eq!(s.give_floor(Role::Host, None, false), Ok(true), "taken back");
        assert_eq!(s.floor(), None);
    }

    #[test]
    fn a_point_that_leaves_loses_the_speaker_and_the_floor() {
        let mut s = Speakers::default();
        s.report(&[p("xa-a")]);
        s.report(&[p("xa-a")]);
        s.give_floor(Role::Host, Some(&p("xa-a")), true).expect("floor");
        assert_eq!(s.left(&p("xa-b")), (false, false));
        assert_eq!(s.left(&p("xa-a")), (true, true));
        assert_eq!((s.speaker(), s.floor()), (None, None));
    }
}
