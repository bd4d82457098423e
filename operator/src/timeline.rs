//! The session timeline, as pure functions of the schedule and the clock:
//!
//! ```text
//!  Scheduled ─▶ Provisioning ─▶ Rehearsal ─▶ Ready | NotReady ─▶ Live ─▶ Completed
//!            ▲ rehearsal − lead ▲ deadline −   ▲ deadline        ▲ start  ▲ end + grace
//!                                 rehearsalMinutes  (15:00 the day before, by default)
//! ```
//!
//! `Failed` is taken instead whenever the spec is not valid; `Completed` is terminal.

use jiff::civil::Time as CivilTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::api::{Readiness, Schedule, SessionPhase};

/// Operator-wide timeline settings.
#[derive(Clone, Debug)]
pub struct TimelineConfig {
    /// How long before the rehearsal the worker, Service and tokens are provisioned.
    pub provisioning_lead: SignedDuration,
    /// How long after the end a session stays Live before it completes (overrun tolerance).
    pub grace: SignedDuration,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        Self { provisioning_lead: SignedDuration::from_mins(30), grace: SignedDuration::from_mins(15) }
    }
}

/// The local time of the default readiness deadline, on the day before the session.
pub const DEFAULT_DEADLINE_LOCAL: CivilTime = CivilTime::constant(15, 0, 0, 0);

/// Every boundary of one session's timeline, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub provisioning_start: Timestamp,
    pub rehearsal_start: Timestamp,
    pub deadline: Timestamp,
    pub start: Timestamp,
    pub end: Timestamp,
    pub complete_at: Timestamp,
}

/// Why a timeline cannot be computed. Each names the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("spec.schedule.timeZone: unknown IANA time zone {0:?}")]
    UnknownTimeZone(String),
    #[error("spec.readiness.deadline: must be before spec.schedule.start ({start}), got {deadline}")]
    DeadlineNotBeforeStart { deadline: Timestamp, start: Timestamp },
    #[error("spec.schedule.start: out of the supported range")]
    OutOfRange,
}

impl Error {
    /// A bounded reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::UnknownTimeZone(_) => "InvalidTimeZone",
            Error::DeadlineNotBeforeStart { .. } => "InvalidDeadline",
            Error::OutOfRange => "InvalidSchedule",
        }
    }
}

/// The default deadline: 15:00 local time on the day before `start`.
pub fn default_deadline(start: Timestamp, tz: &TimeZone) -> Result<Timestamp, Error> {
    let local_day = start.to_zoned(tz.clone()).date();
    let day_before = local_day.yesterday().map_err(|_| Error::OutOfRange)?;
    day_before
        .to_datetime(DEFAULT_DEADLINE_LOCAL)
        .to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|_| Error::OutOfRange)
}

/// Computes the timeline of a session.
pub fn compute(schedule: &Schedule, readiness: &Readiness, cfg: &TimelineConfig) -> Result<Timeline, Error> {
    let tz = TimeZone::get(&schedule.time_zone).map_err(|_| Error::UnknownTimeZone(schedule.time_zone.clone()))?;
    let start = schedule.start.0;
    let deadline = match &readiness.deadline {
        Some(d) => d.0,
        None => default_deadline(start, &tz)?,
    };
    if deadline >= start {
        return Err(Error::DeadlineNotBeforeStart { deadline, start });
    }
    let minutes = |m: i32| SignedDuration::from_mins(i64::from(m));
    let add = |t: Timestamp, d: SignedDuration| t.checked_add(d).map_err(|_| Error::OutOfRange);
    let rehearsal_start = add(deadline, -minutes(readiness.rehearsal_minutes))?;
    let end = add(start, minutes(schedule.duration_minutes))?;
    Ok(Timeline {
        provisioning_start: add(rehearsal_start, -cfg.provisioning_lead)?,
        rehearsal_start,
        deadline,
        start,
        end,
        complete_at: add(end, cfg.grace)?,
    })
}

impl Timeline {
    /// The phase at `now`, given whether every point was verified by the deadline.
    pub fn phase_at(&self, now: Timestamp, verified_by_deadline: bool) -> SessionPhase {
        if now >= self.complete_at {
            SessionPhase::Completed
        } else if now >= self.start {
            SessionPhase::Live
        } else if now >= self.deadline {
            if verified_by_deadline {
                SessionPhase::Ready
            } else {
                SessionPhase::NotReady
            }
        } else if now >= self.rehearsal_start {
            SessionPhase::Rehearsal
        } else if now >= self.provisioning_start {
            SessionPhase::Provisioning
        } else {
            SessionPhase::Scheduled
        }
    }

    /// The first boundary after `now`, when the phase may change by time alone.
    pub fn next_boundary(&self, now: Timestamp) -> Option<Timestamp> {
        [self.provisioning_start, self.rehearsal_start, self.deadline, self.start, self.complete_at]
            .into_iter()
            .find(|t| *t > now)
    }

    /// Whether the session needs its worker, Service and tokens at `now`.
    pub fn needs_resources(&self, now: Timestamp) -> bool {
        now >= self.provisioning_start && now < self.complete_at
    }
}

/// The timeline the unit tests share: provisioning from 06:30Z on 2025-06-`day`, the deadline
/// 08:00Z (15:00 in Hà Nội), the session 01:00–03:00Z the next day, completed at 03:15Z.
#[cfg(test)]
pub(crate) fn example(day: u8) -> Timeline {
    let at = |d: u8, hm: &str| format!("2025-06-{d:02}T{hm}:00Z").parse().expect("timestamp");
    Timeline {
        provisioning_start: at(day, "06:30"),
        rehearsal_start: at(day, "07:00"),
        deadline: at(day, "08:00"),
        start: at(day + 1, "01:00"),
        end: at(day + 1, "03:00"),
        complete_at: at(day + 1, "03:15"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn schedule(start: &str) -> Schedule {
        Schedule { start: Time(ts(start)), duration_minutes: 180, time_zone: "Asia/Ho_Chi_Minh".into() }
    }

    #[test]
    fn default_deadline_is_15h_local_the_day_before() {
        // 08:00 in Hà Nội on 12 June is 01:00Z; the deadline is 15:00 on 11 June in Hà Nội = 08:00Z.
        let t = compute(&schedule("2025-06-12T01:00:00Z"), &Readiness::default(), &TimelineConfig::default()).unwrap();
        assert_eq!(t.deadline, ts("2025-06-11T08:00:00Z"));
        assert_eq!(t.rehearsal_start, ts("2025-06-11T07:00:00Z"));
        assert_eq!(t.provisioning_start, ts("2025-06-11T06:30:00Z"));
        assert_eq!(t.end, ts("2025-06-12T04:00:00Z"));
        assert_eq!(t.complete_at, ts("2025-06-12T04:15:00Z"));
    }

    #[test]
    fn default_deadline_uses_the_local_day_not_the_utc_day() {
        // 06:30 local on 12 June is 23:30Z on 11 June: the local day before is still 11 June.
        let t = compute(&schedule("2025-06-11T23:30:00Z"), &Readiness::default(), &TimelineConfig::default()).unwrap();
        assert_eq!(t.deadline, ts("2025-06-11T08:00:00Z"));
    }

    #[test]
    fn explicit_deadline_after_start_is_refused_naming_the_field() {
        let r = Readiness { deadline: Some(Time(ts("2025-06-12T02:00:00Z"))), rehearsal_minutes: 60 };
        let e = compute(&schedule("2025-06-12T01:00:00Z"), &r, &TimelineConfig::default()).unwrap_err();
        assert!(e.to_string().starts_with("spec.readiness.deadline"), "{e}");
        assert_eq!(e.reason(), "InvalidDeadline");
    }

    #[test]
    fn unknown_time_zone_is_refused() {
        let mut s = schedule("2025-06-12T01:00:00Z");
        s.time_zone = "Asia/Mars".into();
        let e = compute(&s, &Readiness::default(), &TimelineConfig::default()).unwrap_err();
        assert_eq!(e, Error::UnknownTimeZone("Asia/Mars".into()));
    }

    #[test]
    fn phases_follow_the_boundaries() {
        let t = compute(&schedule("2025-06-12T01:00:00Z"), &Readiness::default(), &TimelineConfig::default()).unwrap();
        use SessionPhase::*;
        let cases = [
            ("2025-06-10T00:00:00Z", false, Scheduled),
            ("2025-06-11T06:30:00Z", false, Provisioning),
            ("2025-06-11T07:00:00Z", false, Rehearsal),
            ("2025-06-11T07:59:59Z", true, Rehearsal),
            ("2025-06-11T08:00:00Z", false, NotReady),
            ("2025-06-11T08:00:00Z", true, Ready),
            ("2025-06-12T01:00:00Z", false, Live),
            ("2025-06-12T04:14:59Z", false, Live),
            ("2025-06-12T04:15:00Z", true, Completed),
        ];
        for (now, verified, want) in cases {
            assert_eq!(t.phase_at(ts(now), verified), want, "at {now}");
        }
    }

    #[test]
    fn next_boundary_walks_the_timeline_then_stops() {
        let t = compute(&schedule("2025-06-12T01:00:00Z"), &Readiness::default(), &TimelineConfig::default()).unwrap();
        let mut now = ts("2025-06-01T00:00:00Z");
        let mut seen = vec![];
        while let Some(b) = t.next_boundary(now) {
            seen.push(b);
            now = b;
        }
        assert_eq!(seen, vec![t.provisioning_start, t.rehearsal_start, t.deadline, t.start, t.complete_at]);
    }
}
