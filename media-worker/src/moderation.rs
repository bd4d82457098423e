//! Moderation by the host: muting a point's microphone and asking it to unmute.
//!
//! The worker enforces it, not the console. A mute pauses the point's audio producers in the SFU,
//! so nobody receives its sound whatever its browser does. The point stays *held* until the host
//! asks it to unmute; while held, the worker refuses to resume its audio (`muted_by_host`), and a
//! new audio producer it makes (after a reconnect, say) starts paused. Asking lifts the hold, and
//! the office decides when to speak: its own `resumeProducer` then resumes the audio. Only the
//! host's connection may moderate.
//!
//! This module is pure: the room applies what it decides.

use crate::ids::PointName;
use std::collections::BTreeMap;
use tiepdan_contract::roles::Role;

/// Why a moderation request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModerationError {
    #[error("only the host's console may mute a point or ask it to unmute")]
    NotHost,
    #[error("point: {0} is not in the session's room now")]
    NotPresent(PointName),
    #[error("the host ({by}) muted this point's microphone; wait until the host asks you to unmute")]
    HeldByHost { by: String },
}

/// A point the host muted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    /// The host's display name, shown to the muted office ("muted by ...").
    pub by: String,
    /// Until the host asks the point to unmute, the point may not resume its audio.
    pub held: bool,
}

/// The room's moderation state, kept for the allocation (a reconnect does not lift a mute).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moderation {
    muted: BTreeMap<PointName, Mute>,
}

impl Moderation {
    /// The host (`actor`, named `by`) mutes `target`, which must be present (`present`).
    pub fn mute(&mut self, actor: Role, by: &str, target: &PointName, present: bool) -> Result<(), ModerationError> {
        authorize(actor)?;
        if !present {
            return Err(ModerationError::NotPresent(target.clone()));
        }
        self.muted.insert(target.clone(), Mute { by: by.to_owned(), held: true });
        Ok(())
    }

    /// The host asks `target` to unmute: the hold is lifted, the audio stays paused until the
    /// office resumes it. Returns who muted it, when it was muted.
    pub fn ask_to_unmute(
        &mut self,
        actor: Role,
        target: &PointName,
        present: bool,
    ) -> Result<Option<String>, ModerationError> {
        authorize(actor)?;
        if !present {
            return Err(ModerationError::NotPresent(target.clone()));
        }
        Ok(self.muted.get_mut(target).map(|m| {
            m.held = false;
            m.by.clone()
        }))
    }

    /// Whether `point` may resume its audio now.
    pub fn may_resume_audio(&self, point: &PointName) -> Result<(), ModerationError> {
        match self.muted.get(point) {
            Some(Mute { by, held: true }) => Err(ModerationError::HeldByHost { by: by.clone() }),
            _ => Ok(()),
        }
    }

    /// `point` resumed its audio: it is no longer muted. Returns whether it was.
    pub fn resumed(&mut self, point: &PointName) -> bool {
        self.muted.remove(point).is_some()
    }

    /// Whether a new audio producer of `point` must start paused.
    pub fn is_muted(&self, point: &PointName) -> bool {
        self.muted.contains_key(point)
    }

    pub fn mute_of(&self, point: &PointName) -> Option<&Mute> {
        self.muted.get(point)
    }

    /// Every muted point, for a joining console's tiles.
    pub fn muted_points(&self) -> Vec<PointName> {
        self.muted.keys().cloned().collect()
    }
}

fn authorize(actor: Role) -> Result<(), ModerationError> {
    match actor {
        Role::Host => Ok(()),
        Role::Participant | Role::Probe => Err(ModerationError::NotHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(name: &str) -> PointName {
        name.parse().expect("point")
    }

    #[test]
    fn only_the_host_moderates() {
        // (actor, may mute?)
        let table = [(Role::Host, true), (Role::Participant, false), (Role::Probe, false)];
        for (actor, allowed) in table {
            let mut m = Moderation::default();
            let result = m.mute(actor, "UBND tỉnh", &point("xa-a"), true);
            assert_eq!(result.is_ok(), allowed, "{actor:?}");
            assert_eq!(m.is_muted(&point("xa-a")), allowed, "{actor:?}");
            let ask = m.ask_to_unmute(actor, &point("xa-a"), true);
            assert_eq!(ask.is_ok(), allowed, "{actor:?}");
            if !allowed {
                assert_eq!(result, Err(ModerationError::NotHost));
            }
        }
    }

    #[test]
    fn a_muted_point_is_held_until_asked_and_then_decides_itself() {
        let mut m = Moderation::default();
        let xa = point("xa-a");
        assert_eq!(m.may_resume_audio(&xa), Ok(()), "nobody muted it");
        m.mute(Role::Host, "UBND tỉnh", &xa, true).expect("mute");
        assert_eq!(m.may_resume_audio(&xa), Err(ModerationError::HeldByHost { by: "UBND tỉnh".into() }));
        assert!(m.is_muted(&xa));
        assert_eq!(m.muted_points(), std::slice::from_ref(&xa));
        assert_eq!(m.ask_to_unmute(Role::Host, &xa, true), Ok(Some("UBND tỉnh".into())));
        assert_eq!(m.may_resume_audio(&xa), Ok(()));
        assert!(m.is_muted(&xa), "asked, not yet unmuted: the office speaks when it is ready");
        assert!(m.resumed(&xa));
        assert!(!m.is_muted(&xa));
        assert!(!m.resumed(&xa));
        assert_eq!(m.ask_to_unmute(Role::Host, &xa, true), Ok(None), "asking a point nobody muted");
    }

    #[test]
    fn an_absent_point_is_named_in_the_refusal() {
        let mut m = Moderation::default();
        let err = m.mute(Role::Host, "UBND tỉnh", &point("xa-b"), false).expect_err("absent");
        assert_eq!(err.to_string(), "point: xa-b is not in the session's room now");
        assert_eq!(m, Moderation::default(), "a refused request changes nothing");
    }
}
