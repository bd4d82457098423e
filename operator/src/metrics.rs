//! The operator's Prometheus metrics, all prefixed `tiepdan_operator_`, on a registry owned by
//! the [`Context`](crate::controller::Context) (so several in-process operators, as in the tests,
//! never share series).
//!
//! Labels are bounded: `kind` (three kinds), `result` (`success`/`error`), `category` (each error
//! enum's closed `category()`), `phase` (eight phases), `state` and `event` (closed sets below),
//! `session` (`<namespace>/<name>`, the same value the media-worker uses, so operator and worker
//! series join), `point` (the points of a session) and `pool` (`<namespace>/<name>`). A session's
//! series are removed when it completes or is deleted, so label values follow the sessions that
//! are in progress.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::api::{ConditionStatus, ReceptionSessionStatus, SessionPhase};
use crate::timeline::Timeline;

/// Errors encoding metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to encode metrics")]
    Encode(#[source] prometheus::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Encode(_) => "encode",
        }
    }
}

/// The kinds the operator reconciles (the `kind` label).
pub const KIND_SESSION: &str = "ReceptionSession";
pub const KIND_POINT: &str = "ReceptionPoint";
pub const KIND_POOL: &str = "MediaWorkerPool";

/// `state` values of `tiepdan_operator_session_points`.
pub const POINTS_VERIFIED: &str = "verified";
pub const POINTS_UNVERIFIED: &str = "unverified";

/// `event` values of `tiepdan_operator_session_timestamp_seconds`, in timeline order.
pub const EVENTS: [&str; 6] = ["provisioning_start", "rehearsal_start", "deadline", "start", "end", "complete"];

/// The reconcile duration buckets, in seconds: a reconcile is a handful of API calls.
const DURATION_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What the operator last saw of one session, for the gauges computed over all sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SessionSeen {
    phase: Option<SessionPhase>,
    past_deadline_not_ready: bool,
}

/// Every metric of the operator. Cheap to share behind the Context's `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_duration: HistogramVec,
    worker_replacements: IntCounterVec,
    sessions: IntGaugeVec,
    past_deadline_not_ready: IntGauge,
    session_points: IntGaugeVec,
    session_points_connected: IntGaugeVec,
    point_connected: IntGaugeVec,
    session_phase: IntGaugeVec,
    session_timestamp: GaugeVec,
    pool_workers: IntGaugeVec,
    pool_workers_ready: IntGaugeVec,
    pool_workers_allocated: IntGaugeVec,
    pool_workers_available: IntGaugeVec,
    /// Keyed by session id; drives `sessions{phase}` and the past-deadline gauge.
    seen: Mutex<BTreeMap<String, SessionSeen>>,
    /// The points each session's series were last set for, so departed points are removed.
    session_point_names: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("tiepdan_operator_{name}"), help)
}

impl Metrics {
    /// Also exports the operator's API request counters (sent, and writes refused).
    pub fn with_api_requests(self, requests: &crate::api_requests::ApiRequests) -> Self {
        // One collector per registry: a duplicate would be a programming error, caught in tests.
        for c in requests.collectors() {
            self.registry.register(Box::new(c)).unwrap_or_else(|e| panic!("api requests: {e}"));
        }
        self
    }

    pub fn new() -> Self {
        let registry = Registry::new();
        // Names and label sets are fixed at compile time and unique, which the unit tests prove;
        // registering them cannot fail at run time.
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone())).unwrap_or_else(|e| panic!("metric registration: {e}"));
            c
        }
        let counter = |name, help, labels: &[&str]| {
            reg(&registry, IntCounterVec::new(opts(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}")))
        };
        let gauge = |name, help, labels: &[&str]| {
            reg(&registry, IntGaugeVec::new(opts(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}")))
        };
        let m = Self {
            reconciles: counter(
                "reconciles_total",
                "Reconciles by kind and result (success or error).",
                &["kind", "result"],
            ),
            reconcile_errors: counter(
                "reconcile_errors_total",
                "Failed reconciles by kind and error category.",
                &["kind", "category"],
            ),
            reconcile_duration: reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::from(opts("reconcile_duration_seconds", "How long reconciles take, by kind."))
                        .buckets(DURATION_BUCKETS.to_vec()),
                    &["kind"],
                )
                .unwrap_or_else(|e| panic!("reconcile_duration_seconds: {e}")),
            ),
            worker_replacements: counter(
                "worker_replacements_total",
                "Workers replaced under a session that had one, by why the old one could not go on (Terminating, \
                 Ended, NodeLost, Unready, OtherPool, OldEpoch, Gone).",
                &["reason"],
            ),
            sessions: gauge("sessions", "Sessions by phase.", &["phase"]),
            past_deadline_not_ready: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "sessions_past_deadline_not_ready",
                    "Sessions past their readiness deadline that are not ready (points were not all verified in time).",
                ))
                .unwrap_or_else(|e| panic!("sessions_past_deadline_not_ready: {e}")),
            ),
            session_points: gauge(
                "session_points",
                "A session's points by verification state (verified or unverified).",
                &["session", "state"],
            ),
            session_points_connected: gauge(
                "session_points_connected",
                "A session's points connected to its worker now.",
                &["session"],
            ),
            point_connected: gauge(
                "session_point_connected",
                "1 while a point of a session is connected to the session's worker.",
                &["session", "point"],
            ),
            session_phase: gauge(
                "session_phase",
                "1 for the phase a session is in, 0 for the others.",
                &["session", "phase"],
            ),
            session_timestamp: reg(
                &registry,
                GaugeVec::new(
                    opts(
                        "session_timestamp_seconds",
                        "A session's timeline as Unix seconds (provisioning_start, rehearsal_start, deadline, start, \
                         end, complete).",
                    ),
                    &["session", "event"],
                )
                .unwrap_or_else(|e| panic!("session_timestamp_seconds: {e}")),
            ),
            pool_workers: gauge("pool_workers", "A pool's worker pods, idle and allocated.", &["pool"]),
            pool_workers_ready: gauge("pool_workers_ready", "A pool's ready worker pods.", &["pool"]),
            pool_workers_allocated: gauge(
                "pool_workers_allocated",
                "A pool's worker pods allocated to sessions.",
                &["pool"],
            ),
            pool_workers_available: gauge(
                "pool_workers_available",
                "A pool's idle, ready worker pods (what a session can take at once).",
                &["pool"],
            ),
            seen: Mutex::new(BTreeMap::new()),
            session_point_names: Mutex::new(BTreeMap::new()),
            registry,
        };
        for phase in SessionPhase::ALL {
            m.sessions.with_label_values(&[phase.as_str()]).set(0);
        }
        m
    }

    /// Counts a worker replaced under a session.
    pub fn worker_replaced(&self, reason: &str) {
        self.worker_replacements.with_label_values(&[reason]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).map_err(Error::Encode)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    /// Counts one reconcile of `kind` that took `took`; `error` is the failure's category.
    pub fn reconciled(&self, kind: &str, took: Duration, error: Option<&'static str>) {
        self.reconcile_duration.with_label_values(&[kind]).observe(took.as_secs_f64());
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles.with_label_values(&[kind, result]).inc();
        if let Some(category) = error {
            self.reconcile_errors.with_label_values(&[kind, category]).inc();
        }
    }

    /// Records what a reconcile of session `id` (`<namespace>/<name>`) concluded. A completed
    /// session keeps only its place in `sessions{phase}`: its per-session series are removed.
    pub fn observe_session(
        &self,
        id: &str,
        status: &ReceptionSessionStatus,
        timeline: Option<&Timeline>,
        now: Timestamp,
    ) {
        let phase = status.phase;
        let ready_by_deadline = status
            .conditions
            .iter()
            .find(|c| c.type_ == "ReadyByDeadline")
            .map(|c| c.status.as_str() == ConditionStatus::True.as_str());
        let past_deadline = timeline.is_some_and(|t| now >= t.deadline);
        let active = !matches!(phase, Some(SessionPhase::Completed | SessionPhase::Failed) | None);
        let seen =
            SessionSeen { phase, past_deadline_not_ready: active && past_deadline && ready_by_deadline != Some(true) };
        self.update_seen(|m| {
            m.insert(id.to_owned(), seen);
        });

        if phase == Some(SessionPhase::Completed) {
            self.forget_session_series(id);
            return;
        }
        for p in SessionPhase::ALL {
            self.session_phase.with_label_values(&[id, p.as_str()]).set(i64::from(phase == Some(p)));
        }
        match timeline {
            Some(t) => {
                let times = [t.provisioning_start, t.rehearsal_start, t.deadline, t.start, t.end, t.complete_at];
                for (event, at) in EVENTS.iter().zip(times) {
                    self.session_timestamp.with_label_values(&[id, event]).set(at.as_millisecond() as f64 / 1000.0);
                }
            }
            None => {
                for event in EVENTS {
                    let _ = self.session_timestamp.remove_label_values(&[id, event]);
                }
            }
        }
        let count = |f: fn(&crate::api::PointStatus) -> bool| {
            i64::try_from(status.points.iter().filter(|p| f(p)).count()).unwrap_or(i64::MAX)
        };
        self.session_points.with_label_values(&[id, POINTS_VERIFIED]).set(count(|p| p.verified));
        self.session_points.with_label_values(&[id, POINTS_UNVERIFIED]).set(count(|p| !p.verified));
        self.session_points_connected.with_label_values(&[id]).set(count(|p| p.connected));
        let names: Vec<String> = status.points.iter().map(|p| p.name.clone()).collect();
        for p in &status.points {
            self.point_connected.with_label_values(&[id, &p.name]).set(i64::from(p.connected));
        }
        let previous = self.lock_point_names().insert(id.to_owned(), names.clone()).unwrap_or_default();
        for gone in previous.iter().filter(|n| !names.contains(n)) {
            let _ = self.point_connected.remove_label_values(&[id, gone]);
        }
    }

    /// Forgets a deleted session entirely.
    pub fn remove_session(&self, id: &str) {
        self.update_seen(|m| {
            m.remove(id);
        });
        self.forget_session_series(id);
    }

    /// Records a pool's counts from the status its reconcile wrote (`pool` is `<namespace>/<name>`).
    pub fn observe_pool(&self, pool: &str, status: &crate::api::MediaWorkerPoolStatus) {
        self.pool_workers.with_label_values(&[pool]).set(i64::from(status.replicas));
        self.pool_workers_ready.with_label_values(&[pool]).set(i64::from(status.ready_replicas));
        self.pool_workers_allocated.with_label_values(&[pool]).set(i64::from(status.allocated));
        self.pool_workers_available.with_label_values(&[pool]).set(i64::from(status.available));
    }

    fn forget_session_series(&self, id: &str) {
        for p in SessionPhase::ALL {
            let _ = self.session_phase.remove_label_values(&[id, p.as_str()]);
        }
        for event in EVENTS {
            let _ = self.session_timestamp.remove_label_values(&[id, event]);
        }
        for state in [POINTS_VERIFIED, POINTS_UNVERIFIED] {
            let _ = self.session_points.remove_label_values(&[id, state]);
        }
        let _ = self.session_points_connected.remove_label_values(&[id]);
        for point in self.lock_point_names().remove(id).unwrap_or_default() {
            let _ = self.point_connected.remove_label_values(&[id, &point]);
        }
    }

    fn lock_point_names(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<String>>> {
        self.session_point_names.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the per-session map and recomputes the gauges derived from it.
    fn update_seen(&self, f: impl FnOnce(&mut BTreeMap<String, SessionSeen>)) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut seen);
        for phase in SessionPhase::ALL {
            let n = seen.values().filter(|s| s.phase == Some(phase)).count();
            self.sessions.with_label_values(&[phase.as_str()]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let late = seen.values().filter(|s| s.past_deadline_not_ready).count();
        self.past_deadline_not_ready.set(i64::try_from(late).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{set_condition, PointStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn timeline() -> Timeline {
        Timeline {
            provisioning_start: ts("2027-03-14T06:30:00Z"),
            rehearsal_start: ts("2027-03-14T07:00:00Z"),
            deadline: ts("2027-03-14T08:00:00Z"),
            start: ts("2027-03-15T01:00:00Z"),
            end: ts("2027-03-15T04:00:00Z"),
            complete_at: ts("2027-03-15T04:15:00Z"),
        }
    }

    fn status(phase: SessionPhase, verified: &[bool], rbd: ConditionStatus) -> ReceptionSessionStatus {
        let mut s = ReceptionSessionStatus {
            phase: Some(phase),
            points: verified
                .iter()
                .enumerate()
                .map(|(i, v)| PointStatus { name: format!("p{i}"), verified: *v, connected: *v, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        set_condition(&mut s.conditions, "ReadyByDeadline", rbd, "r", "", None, ts("2027-03-14T00:00:00Z"));
        s
    }

    #[test]
    fn every_phase_is_exported_from_the_start() {
        let text = Metrics::new().render().unwrap();
        for phase in SessionPhase::ALL {
            assert!(text.contains(&format!("tiepdan_operator_sessions{{phase=\"{phase}\"}} 0")), "{text}");
        }
        assert!(text.contains("tiepdan_operator_sessions_past_deadline_not_ready 0"));
    }

    #[test]
    fn a_session_past_its_deadline_with_unverified_points_is_counted_until_it_completes() {
        let m = Metrics::new();
        let id = "my-hao/s";
        let t = timeline();
        m.observe_session(
            id,
            &status(SessionPhase::Rehearsal, &[true, false], CS::Unknown),
            Some(&t),
            t.rehearsal_start,
        );
        let text = m.render().unwrap();
        assert!(text.contains("tiepdan_operator_sessions_past_deadline_not_ready 0"), "{text}");
        assert!(text.contains(r#"tiepdan_operator_session_points{session="my-hao/s",state="unverified"} 1"#));
        assert!(text.contains(r#"tiepdan_operator_session_phase{phase="Rehearsal",session="my-hao/s"} 1"#));
        assert!(text
            .contains(r#"tiepdan_operator_session_timestamp_seconds{event="deadline",session="my-hao/s"} 1805011200"#));

        m.observe_session(id, &status(SessionPhase::NotReady, &[true, false], CS::False), Some(&t), t.deadline);
        let text = m.render().unwrap();
        assert!(text.contains("tiepdan_operator_sessions_past_deadline_not_ready 1"), "{text}");
        assert!(text.contains(r#"tiepdan_operator_sessions{phase="NotReady"} 1"#));
        assert!(text.contains(r#"tiepdan_operator_session_point_connected{point="p1",session="my-hao/s"} 0"#));

        m.observe_session(id, &status(SessionPhase::Completed, &[true, false], CS::False), Some(&t), t.complete_at);
        let text = m.render().unwrap();
        assert!(text.contains("tiepdan_operator_sessions_past_deadline_not_ready 0"), "{text}");
        assert!(text.contains(r#"tiepdan_operator_sessions{phase="Completed"} 1"#));
        assert!(!text.contains(r#"session="my-hao/s""#), "a completed session's series are removed:\n{text}");

        m.remove_session(id);
        assert!(m.render().unwrap().contains(r#"tiepdan_operator_sessions{phase="Completed"} 0"#));
    }

    #[test]
    fn a_point_that_leaves_the_session_loses_its_series() {
        let m = Metrics::new();
        let t = timeline();
        m.observe_session(
            "n/s",
            &status(SessionPhase::Rehearsal, &[true, true], CS::Unknown),
            Some(&t),
            t.rehearsal_start,
        );
        m.observe_session("n/s", &status(SessionPhase::Rehearsal, &[true], CS::Unknown), Some(&t), t.rehearsal_start);
        let text = m.render().unwrap();
        assert!(text.contains(r#"point="p0""#) && !text.contains(r#"point="p1""#), "{text}");
    }

    #[test]
    fn reconciles_are_counted_by_kind_result_and_category() {
        let m = Metrics::new();
        m.reconciled(KIND_SESSION, Duration::from_millis(20), None);
        m.reconciled(KIND_SESSION, Duration::from_millis(30), Some("apply"));
        let text = m.render().unwrap();
        assert!(text.contains(r#"tiepdan_operator_reconciles_total{kind="ReceptionSession",result="success"} 1"#));
        assert!(text.contains(r#"tiepdan_operator_reconciles_total{kind="ReceptionSession",result="error"} 1"#));
        assert!(text.contains(r#"tiepdan_operator_reconcile_errors_total{category="apply",kind="ReceptionSession"} 1"#));
        assert!(text.contains(r#"tiepdan_operator_reconcile_duration_seconds_count{kind="ReceptionSession"} 2"#));
    }

    use ConditionStatus as CS;
}
