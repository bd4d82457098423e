//! The derive-status step of the session reconcile: the next status, from the previous one, the
//! plan and what applying it did. Pure; the driver writes the result only if it differs.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::session_plan::{Plan, Release, Resources};
use super::status as st;
use super::worker_health::WorkerHealth;
use crate::api::{
    set_condition, ConditionStatus as CS, PointStatus, ReceptionSessionStatus, SessionCondition as SC, SessionPhase,
    WorkerStatus,
};
use crate::timeline::Timeline;
use crate::validate::{self, ValidSession};
use crate::worker_client::WorkerReport;

/// What the apply step did.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Nothing is held: released now, or never provisioned.
    Released,
    /// The session names a pool that does not exist.
    PoolMissing(String),
    Provisioned(Box<Provisioned>),
}

/// A provisioned session's worker and children, as observed after applying them.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub pod: String,
    pub signaling_url: String,
    pub health: WorkerHealth,
    /// What the operator saw when it bound the worker and asked for its report.
    pub worker_message: String,
    pub report: Option<WorkerReport>,
    /// What the worker announces, once the operator knew (the pod is Ready).
    pub address: Option<super::session::WorkerAddress>,
    /// The MonitoringReady and CertificateReady conditions' status, reason and message.
    pub monitoring: (CS, &'static str, String),
    pub certificate: (CS, &'static str, String),
    /// How the worker came to the session, if it did in this reconcile.
    pub allocated: Option<Allocated>,
    /// The worker this reconcile replaced.
    pub replaced: Option<Replaced>,
    /// When to reconcile again because the worker is unready (see `failover::recheck_in`);
    /// not part of the status.
    pub recheck: Option<std::time::Duration>,
    /// Points whose `network.turnRequired` asks for a relay the pool does not offer (no
    /// `spec.turn`): their browsers cannot connect.
    pub relay_without_turn: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allocated {
    /// A warm worker was taken from the pool.
    TookIdle { pool: String },
    /// No warm worker was idle: one was created.
    Created { pool: String },
}

/// A worker that could no longer serve the session and was replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaced {
    pub old: String,
    /// A bounded reason (an `allocation::Stale`, or `Gone`), also a metric label.
    pub why: &'static str,
}

/// Sets the session's conditions at one generation and time.
pub(crate) struct Conditions<'a> {
    pub list: &'a mut Vec<Condition>,
    pub generation: Option<i64>,
    pub now: Timestamp,
}

impl Conditions<'_> {
    pub fn set(&mut self, c: SC, status: CS, reason: &str, message: impl Into<String>) {
        set_condition(self.list, c.as_str(), status, reason, message, self.generation, self.now);
    }

    /// Every resource condition False with one reason, for a session holding no resources.
    fn no_resources(&mut self, reason: &str, message: &str) {
        for c in [SC::Provisioned, SC::WorkerReady, SC::MonitoringReady, SC::CertificateReady, SC::Degraded] {
            self.set(c, CS::False, reason, message);
        }
    }
}

/// The next status.
pub fn next(
    prev: &ReceptionSessionStatus,
    generation: Option<i64>,
    valid: Result<&ValidSession, &validate::Error>,
    plan: &Plan,
    outcome: &Outcome,
    now: Timestamp,
) -> ReceptionSessionStatus {
    let mut status = prev.clone();
    status.observed_generation = generation;
    let v = match valid {
        Ok(v) => v,
        Err(e) => {
            let mut conds = Conditions { list: &mut status.conditions, generation, now };
            conds.set(SC::Valid, CS::False, e.reason(), e.to_string());
            if plan.resources == Resources::Release(Release::Invalid) {
                status.phase = Some(SessionPhase::Failed);
                conds.no_resources(
                    "Failed",
                    "The session is not valid (see the Valid condition); its worker, Service, join tokens and \
                     certificates were released.",
                );
                status.worker = None;
            }
            return status;
        }
    };
    let t = &v.timeline;
    status.token_epoch = plan.token_epoch;
    // Whole seconds, as the API server keeps them: otherwise the status computed here never equals
    // the one read back, and every reconcile would write it.
    let whole = |ts: Timestamp| Some(Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts)));
    status.readiness_deadline = whole(t.deadline);
    status.rehearsal_start = whole(t.rehearsal_start);
    status.end = whole(t.end);

    let mut conds = Conditions { list: &mut status.conditions, generation, now };
    conds.set(SC::Valid, CS::True, "Valid", "The session's points, host and schedule are valid.");
    let mut report = None;
    match outcome {
        Outcome::Provisioned(p) => {
            let prev_worker = prev.worker.as_ref().filter(|w| w.pod.as_deref() == Some(p.pod.as_str()));
            status.worker = Some(worker_status(p, prev_worker));
            worker_conditions(&mut conds, prev, p);
            report = p.report.as_ref();
        }
        Outcome::PoolMissing(pool) => {
            let msg = format!("spec.workerPool: no MediaWorkerPool named {pool:?} in this namespace");
            conds.set(SC::Provisioned, CS::False, "PoolNotFound", msg);
        }
        Outcome::Released if plan.resources == Resources::Release(Release::Ended) => {
            conds.no_resources(
                "Released",
                "The session ended; its worker, Service, join tokens, certificates and monitoring were deleted.",
            );
            status.worker = None;
        }
        Outcome::Released => {
            conds.no_resources("Scheduled", &format!("Provisioning starts at {}.", t.provisioning_start));
            status.worker = None;
        }
    }

    let derived = st::derive(prev, v, report, (plan.rescheduled, &plan.link_generations), now);
    status.points = derived.points;
    status.quality_sampled_at = derived.quality_sampled_at;
    status.phase = Some(derived.phase);
    status.verified = Some(st::verified_summary(&status.points));
    readiness_conditions(&mut Conditions { list: &mut status.conditions, generation, now }, &status.points, t);
    let mut summary = status.summary.clone().unwrap_or_default();
    if derived.phase == SessionPhase::Live && summary.actual_start.is_none() {
        summary.actual_start = Some(Time(now));
    }
    if derived.phase == SessionPhase::Completed && summary.actual_end.is_none() {
        summary.actual_end = Some(Time(now));
    }
    status.summary = Some(st::summarize(&status.points, summary));
    status
}

/// The conditions of a provisioned session.
/// The worker's part of the status: its pod and URL, and where it announces itself (kept from
/// `prev` for the same pod while the operator cannot read it, e.g. the pod is briefly unready).
fn worker_status(p: &Provisioned, prev: Option<&WorkerStatus>) -> WorkerStatus {
    let mut w =
        WorkerStatus { pod: Some(p.pod.clone()), signaling_url: Some(p.signaling_url.clone()), ..Default::default() };
    match &p.address {
        Some(a) => {
            w.node = a.node.clone();
            w.announced_address = a.announced.as_ref().map(|a| a.address.clone());
            w.announced_from = a.announced.as_ref().map(|a| a.source.as_str().to_owned());
            w.rtc_ports = a.rtc_ports.map(|r| r.to_string());
        }
        None => {
            if let Some(prev) = prev {
                w.node = prev.node.clone();
                w.announced_address = prev.announced_address.clone();
                w.announced_from = prev.announced_from.clone();
                w.rtc_ports = prev.rtc_ports.clone();
            }
        }
    }
    w
}

fn worker_conditions(conds: &mut Conditions<'_>, prev: &ReceptionSessionStatus, p: &Provisioned) {
    conds.set(
        SC::Provisioned,
        CS::True,
        "Provisioned",
        "Worker, signaling Service, join tokens and the session's certificate are in place.",
    );
    let ready = p.health == WorkerHealth::Ready;
    conds.set(SC::WorkerReady, CS::from_bool(ready), p.health.reason(), p.health.message(&p.pod, &p.worker_message));
    let was_degraded = is_true(&prev.conditions, SC::Degraded);
    if let Some(r) = &p.replaced {
        conds.set(SC::Degraded, CS::True, "WorkerReplaced", replaced_message(r, &p.pod));
    } else if ready {
        conds.set(SC::Degraded, CS::False, "WorkerServing", "The session's worker serves it.");
    } else if !was_degraded {
        conds.set(SC::Degraded, CS::False, "WorkerStarting", "The session's worker is starting.");
    }
    let (status, reason, msg) = &p.monitoring;
    conds.set(SC::MonitoringReady, *status, reason, msg.clone());
    let (status, reason, msg) = &p.certificate;
    conds.set(SC::CertificateReady, *status, reason, msg.clone());
}

/// The reason of condition `c`, if set.
pub fn reason(conds: &[Condition], c: SC) -> Option<&str> {
    crate::api::condition::find(conds, c.as_str()).map(|x| x.reason.as_str())
}

/// Whether condition `c` is True.
pub fn is_true(conds: &[Condition], c: SC) -> bool {
    crate::api::condition::is_true(conds, c.as_str())
}

/// Why the Degraded condition is True after a replacement.
pub fn replaced_message(r: &Replaced, pod: &str) -> String {
    let old = &r.old;
    if r.why == super::allocation::Stale::OldEpoch.as_str() {
        format!("Worker pod {old} served the session before it was rescheduled; {pod} serves the new links.")
    } else {
        format!(
            "Worker pod {old} can no longer serve the session ({}); {pod} replaces it. The links stay the same and \
             the consoles reconnect; verification is kept.",
            r.why
        )
    }
}

/// PointsVerified and ReadyByDeadline from the points.
fn readiness_conditions(conds: &mut Conditions<'_>, points: &[PointStatus], t: &Timeline) {
    let present: Vec<_> = st::present(points).collect();
    let verified_n = present.iter().filter(|p| p.verified).count();
    let all = st::all_verified(points);
    conds.set(
        SC::PointsVerified,
        CS::from_bool(all),
        if all { "AllVerified" } else { "PointsUnverified" },
        format!("{verified_n} of {} points verified.", present.len()),
    );
    let on_time = present.iter().filter(|p| p.verified_at.as_ref().is_some_and(|v| v.0 <= t.deadline)).count();
    let (rbd, reason, msg) = if st::all_verified_by(points, t.deadline) {
        (CS::True, "VerifiedBeforeDeadline", format!("Every point was verified before {}.", t.deadline))
    } else if conds.now >= t.deadline {
        let late = present.iter().filter(|p| p.verified_late).count();
        let msg = format!(
            "{} of {} points were not verified before {} ({late} verified late).",
            present.len() - on_time,
            present.len(),
            t.deadline
        );
        (CS::False, "DeadlineMissed", msg)
    } else {
        (CS::Unknown, "AwaitingVerification", format!("Every point must be verified before {}.", t.deadline))
    };
    conds.set(SC::ReadyByDeadline, rbd, reason, msg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_ports::PortRange;
    use crate::controller::session::WorkerAddress;
    use crate::node_address::{Announced, Source};

    fn provisioned(pod: &str, address: Option<WorkerAddress>) -> Provisioned {
        Provisioned {
            pod: pod.into(),
            signaling_url: "https://s".into(),
            health: WorkerHealth::Ready,
            worker_message: "ok".into(),
            report: None,
            address,
            monitoring: (CS::True, "MonitoringApplied", "ok".into()),
            certificate: (CS::True, "Serving", "ok".into()),
            allocated: None,
            replaced: None,
            recheck: None,
            relay_without_turn: vec![],
        }
    }

    #[test]
    fn the_status_names_each_workers_node_address_and_rtc_range_and_keeps_them_while_unread() {
        let seen = WorkerAddress {
            node: Some("media-1".into()),
            announced: Some(Announced { address: "203.0.113.5".into(), source: Source::NodeAnnotation }),
            rtc_ports: Some(PortRange { min: 40100, max: 40199 }),
        };
        let w = worker_status(&provisioned("w1", Some(seen)), None);
        let got =
            (w.node.as_deref(), w.announced_address.as_deref(), w.announced_from.as_deref(), w.rtc_ports.as_deref());
        assert_eq!(got, (Some("media-1"), Some("203.0.113.5"), Some("tiepdan.io/public-address"), Some("40100-40199")));
        // The pod briefly unready: the operator did not read its node, and the status keeps what it knew.
        assert_eq!(worker_status(&provisioned("w1", None), Some(&w)), w);
        // Pod-network: nothing announced but the pod IP.
        let pod_network = WorkerAddress { node: Some("n".into()), announced: None, rtc_ports: None };
        let p = worker_status(&provisioned("w2", Some(pod_network)), None);
        assert_eq!((p.announced_address, p.announced_from, p.rtc_ports), (None, None, None));
    }
}
