//! kstatus-style conditions (`type/status/reason/message/observedGeneration/lastTransitionTime`).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The status of a condition, as the strings Kubernetes expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    pub fn from_bool(b: bool) -> Self {
        if b {
            Self::True
        } else {
            Self::False
        }
    }
}

/// Sets (or replaces) the condition of `type_` in `conditions`.
///
/// `lastTransitionTime` only moves when the status changes, so a condition that is re-asserted
/// every reconcile does not look like it flapped. Returns whether the status changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let message = message.into();
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    match existing {
        Some(c) => {
            let changed = c.status != status.as_str();
            if changed {
                c.last_transition_time = Time(now);
            }
            c.status = status.as_str().to_owned();
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = observed_generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_owned(),
                status: status.as_str().to_owned(),
                reason: reason.to_owned(),
                message,
                observed_generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0: Timestamp = "2025-05-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2025-05-01T01:00:00Z".parse().unwrap();
        let mut cs = vec![];
        assert!(set_condition(&mut cs, "Valid", ConditionStatus::True, "Ok", "", Some(1), t0));
        assert!(!set_condition(&mut cs, "Valid", ConditionStatus::True, "Ok", "again", Some(2), t1));
        assert_eq!(cs[0].last_transition_time, Time(t0));
        assert_eq!(cs[0].observed_generation, Some(2));
        assert!(set_condition(&mut cs, "Valid", ConditionStatus::False, "Bad", "x", Some(3), t1));
        assert_eq!(cs[0].last_transition_time, Time(t1));
        assert_eq!(cs.len(), 1);
    }
}
