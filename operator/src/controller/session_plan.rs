//! The plan step of the session reconcile: from the previous status, the validation outcome and
//! the clock, what to do with the session's resources and which token epoch its links carry.
//! Pure, so every transition is table-tested without a cluster (see `session_transitions`).

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::status as st;
use crate::api::{condition, ReceptionSessionStatus, SessionCondition, SessionPhase};
use crate::link_generations;
use crate::validate::{self, ValidSession};

/// What the apply step does with the session's worker, Service, tokens, certificates, policy and
/// monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resources {
    /// Allocate or keep a worker and apply every child (each only if it differs).
    Provision,
    /// Delete every child.
    Release(Release),
    /// Hold nothing and delete nothing: not yet time, and nothing was provisioned.
    Nothing,
}

/// Why a session gives its resources back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The session is over (Completed).
    Ended,
    /// The session is no longer valid (Failed): nothing of it may keep serving.
    Invalid,
    /// Its schedule moved so that it no longer needs them yet.
    Moved,
}

/// The plan for one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub resources: Resources,
    /// The epoch the join tokens are issued at; older links are refused by the worker.
    pub token_epoch: u64,
    /// The schedule moved after the operator acted on it: links are issued again and every point
    /// must be verified again.
    pub rescheduled: bool,
    /// Each participant's link generation (see `link_generations`): its token carries it, and
    /// the worker refuses the point's older links.
    pub link_generations: BTreeMap<String, u32>,
}

/// Plans one reconcile, given the link generations ops asked for (the session's
/// `links.tiepdan.io/<point>` annotations). Completed is final: a Completed session never
/// provisions again.
pub fn plan(
    prev: &ReceptionSessionStatus,
    valid: Result<&ValidSession, &validate::Error>,
    requested_links: &BTreeMap<String, u32>,
    now: Timestamp,
) -> Plan {
    let completed = prev.phase == Some(SessionPhase::Completed);
    let Ok(v) = valid else {
        // A Completed session already gave everything back; any other one must stop serving.
        let resources = if completed { Resources::Nothing } else { Resources::Release(Release::Invalid) };
        return Plan {
            resources,
            token_epoch: prev.token_epoch,
            rescheduled: false,
            link_generations: BTreeMap::new(),
        };
    };
    let link_generations = link_generations::plan(&prev.points, requested_links, &v.participants);
    let t = &v.timeline;
    // A schedule moved after the operator acted on it: the links and the rehearsal were for
    // another day, so the tokens get a new epoch and points verify again.
    let rescheduled = !completed && st::rescheduled(prev, t);
    let token_epoch = prev.token_epoch + u64::from(rescheduled);
    let resources = if completed || t.phase_at(now, false) == SessionPhase::Completed {
        Resources::Release(Release::Ended)
    } else if t.needs_resources(now) {
        Resources::Provision
    } else if rescheduled || held(prev) {
        // Moved to a later day: give the worker back until provisioning starts again.
        Resources::Release(Release::Moved)
    } else {
        Resources::Nothing
    };
    Plan { resources, token_epoch, rescheduled, link_generations }
}

/// Whether the previous status says the session holds provisioned resources.
pub fn held(prev: &ReceptionSessionStatus) -> bool {
    condition::is_true(&prev.conditions, SessionCondition::Provisioned.as_str())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{set_condition, ConditionStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn valid() -> ValidSession {
        ValidSession { timeline: crate::timeline::example(11), participants: vec![], missing: vec![] }
    }

    /// A status provisioned against `valid()`'s timeline, optionally holding resources.
    fn provisioned(phase: SessionPhase, holding: bool) -> ReceptionSessionStatus {
        let t = valid().timeline;
        let mut s = ReceptionSessionStatus {
            phase: Some(phase),
            rehearsal_start: Some(Time(t.rehearsal_start)),
            readiness_deadline: Some(Time(t.deadline)),
            end: Some(Time(t.end)),
            token_epoch: 2,
            ..Default::default()
        };
        let status = ConditionStatus::from_bool(holding);
        set_condition(&mut s.conditions, "Provisioned", status, "x", "", None, t.rehearsal_start);
        s
    }

    #[test]
    fn resources_follow_the_clock_the_schedule_and_validity() {
        use Resources::*;
        let v = valid();
        let moved = ValidSession { timeline: crate::timeline::example(18), ..v.clone() };
        let invalid = validate::Error::UnknownHost("tinh".into());
        let new = ReceptionSessionStatus::default();
        // (what, previous status, validation, clock) → (resources, epoch, rescheduled)
        type Case<'a> = (
            &'a str,
            ReceptionSessionStatus,
            Result<&'a ValidSession, &'a validate::Error>,
            &'a str,
            Resources,
            u64,
            bool,
        );
        let cases: [Case; 9] = [
            ("new, too early", new.clone(), Ok(&v), "2025-06-10T00:00:00Z", Nothing, 0, false),
            ("new, provisioning window", new.clone(), Ok(&v), "2025-06-11T06:30:00Z", Provision, 0, false),
            ("live", provisioned(SessionPhase::Live, true), Ok(&v), "2025-06-12T02:00:00Z", Provision, 2, false),
            (
                "over",
                provisioned(SessionPhase::Live, true),
                Ok(&v),
                "2025-06-12T03:15:00Z",
                Release(super::Release::Ended),
                2,
                false,
            ),
            (
                "completed stays released",
                provisioned(SessionPhase::Completed, false),
                Ok(&v),
                "2025-06-11T07:00:00Z",
                Release(super::Release::Ended),
                2,
                false,
            ),
            (
                "moved a week while provisioned",
                provisioned(SessionPhase::Ready, true),
                Ok(&moved),
                "2025-06-11T09:00:00Z",
                Release(super::Release::Moved),
                3,
                true,
            ),
            (
                "moved, and already inside the new window",
                provisioned(SessionPhase::Ready, true),
                Ok(&moved),
                "2025-06-18T07:30:00Z",
                Provision,
                3,
                true,
            ),
            (
                "invalid while provisioned",
                provisioned(SessionPhase::Rehearsal, true),
                Err(&invalid),
                "2025-06-11T07:30:00Z",
                Release(super::Release::Invalid),
                2,
                false,
            ),
            (
                "invalid after completion",
                provisioned(SessionPhase::Completed, false),
                Err(&invalid),
                "2025-06-13T00:00:00Z",
                Nothing,
                2,
                false,
            ),
        ];
        for (what, prev, valid, now, resources, token_epoch, rescheduled) in cases {
            let got = plan(&prev, valid, &BTreeMap::new(), ts(now));
            assert_eq!(
                (got.resources, got.token_epoch, got.rescheduled),
                (resources, token_epoch, rescheduled),
                "{what}"
            );
        }
    }
}
