//! The ReceptionSession controller. Each reconcile is a pipeline:
//! observe (points, pool, worker) → validate (pure) → build (pure) → apply (SSA) → status,
//! and a finalizer removes everything the session created.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use super::allocation::{self, Allocation};
use super::certificate::{self, CERTIFICATE_READY};
use super::monitoring::{self, Applied};
use super::pool::{ensure_signing_key, pod_ready};
use super::status as st;
use super::worker_health::WorkerHealth;
use super::{events, Context};
use crate::api::{
    condition, set_condition, ConditionStatus as CS, MediaWorkerPool, ReceptionPoint, ReceptionSession,
    ReceptionSessionStatus, SessionCondition as SC, SessionPhase, WorkerStatus,
};
use crate::apply;
use crate::build::{join_tokens, labels, network_policy, signaling_service, tls};
use crate::metrics::KIND_SESSION;
use crate::tokens::{self, session_id};
use crate::validate::{validate_session, ValidSession};
use crate::worker_client::{WorkerClient, WorkerReport};

/// The finalizer that guarantees clean-up.
pub const FINALIZER: &str = "tiepdan.io/cleanup";

/// Errors reconciling a session. `category()` is a bounded label for metrics and logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to list reception points")]
    ListPoints(#[source] kube::Error),
    #[error("failed to read the worker pool")]
    Pool(#[source] kube::Error),
    #[error("failed to read the pool's signing key")]
    SigningKey(#[source] kube::Error),
    #[error(transparent)]
    Allocate(#[from] allocation::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error(transparent)]
    Tokens(#[from] tokens::Error),
    #[error("failed to read the API server's version")]
    ServerVersion(#[source] kube::Error),
    #[error("failed to update session status")]
    Status(#[source] kube::Error),
    #[error(transparent)]
    Monitoring(#[from] monitoring::Error),
    #[error("finalizer failed: {0}")]
    Finalizer(String),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::ListPoints(_) => "observe",
            Error::Pool(_) | Error::SigningKey(_) => "pool",
            Error::Allocate(_) => "allocate",
            Error::Apply(_) => "apply",
            Error::Tokens(_) => "tokens",
            Error::Status(_) => "status",
            Error::ServerVersion(_) => "observe",
            Error::Monitoring(_) => "monitoring",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

pub fn controller(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl Stream<Item = Result<(ObjectRef<ReceptionSession>, Action), impl std::error::Error>> {
    let managed = watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let ctl = Controller::new(ctx.watched::<ReceptionSession>(), watcher::Config::default());
    let (by_point, by_pool) = (ctl.store(), ctl.store());
    ctl.owns(ctx.watched::<Pod>(), managed.clone())
        .owns(ctx.watched::<Service>(), managed.clone())
        .owns(ctx.watched::<Secret>(), managed)
        // Points coming and going change a session's validity and participants.
        .watches(ctx.watched::<ReceptionPoint>(), watcher::Config::default(), move |p: ReceptionPoint| {
            let ns = p.namespace();
            by_point
                .state()
                .into_iter()
                .filter(|s| s.namespace() == ns)
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .watches(ctx.watched::<MediaWorkerPool>(), watcher::Config::default(), move |p: MediaWorkerPool| {
            let (ns, name) = (p.namespace(), p.name_any());
            by_pool
                .state()
                .into_iter()
                .filter(|s| s.namespace() == ns && s.spec.worker_pool == name)
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        // A simulated clock jumping re-evaluates every timeline at once.
        .reconcile_all_on(ctx.clock.jumps())
        .trigger_backoff(super::watch_backoff::WatchBackoff::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
}

async fn reconcile(session: Arc<ReceptionSession>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::instrument::reconcile(KIND_SESSION, &*session, &ctx, reconcile_session(session.clone(), ctx.clone())).await
}

async fn reconcile_session(session: Arc<ReceptionSession>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api = Api::<ReceptionSession>::namespaced(ctx.client.clone(), &session.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, session, |event| async {
        match event {
            Finalizer::Apply(s) => apply_session(&s, &ctx).await,
            Finalizer::Cleanup(s) => cleanup(&s, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// What the apply step produced, for the status step.
struct Provisioned {
    pod: Option<Pod>,
    report: Option<WorkerReport>,
    worker_message: String,
    /// Monitoring never fails provisioning: its outcome goes to the MonitoringReady condition.
    monitoring: Result<Applied, monitoring::Error>,
    /// Nor does the certificate: its outcome goes to CertificateReady.
    certificate: Result<certificate::Issued, certificate::Error>,
    /// The worker this reconcile replaced, and why it could not go on.
    replaced: Option<(String, &'static str)>,
}

/// Sets one of the session's conditions at the reconcile's generation and time.
struct Conditions<'a> {
    list: &'a mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    generation: Option<i64>,
    now: Timestamp,
}

impl Conditions<'_> {
    /// Returns whether the condition's status changed.
    fn set(&mut self, c: SC, status: CS, reason: &str, message: impl Into<String>) -> bool {
        set_condition(self.list, c.as_str(), status, reason, message, self.generation, self.now)
    }

    /// Every resource condition False with one reason, for a session holding no resources.
    fn no_resources(&mut self, reason: &str, message: &str) {
        for c in [SC::Provisioned, SC::WorkerReady, SC::MonitoringReady, SC::CertificateReady, SC::Degraded] {
            self.set(c, CS::False, reason, message);
        }
    }
}

async fn apply_session(session: &ReceptionSession, ctx: &Context) -> Result<Action, Error> {
    let now = ctx.clock.now();
    let ns = session.namespace().unwrap_or_default();
    let id = session_id(&ns, &session.name_any());
    let prev = session.status.clone().unwrap_or_default();
    let generation = session.metadata.generation;
    let mut status = prev.clone();
    status.observed_generation = generation;

    // observe
    let points = Api::<ReceptionPoint>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::ListPoints)?
        .items;

    // validate
    let valid = match validate_session(&session.name_any(), &session.spec, &points, &ctx.config.timeline) {
        Ok(v) => v,
        Err(e) => return fail(session, ctx, &prev, status, &e, now).await,
    };
    let mut conds = Conditions { list: &mut status.conditions, generation, now };
    conds.set(SC::Valid, CS::True, "Valid", "The session's points, host and schedule are valid.");
    let t = &valid.timeline;
    let completed_before = prev.phase == Some(SessionPhase::Completed);
    // A schedule moved after the operator acted on it: the links and the rehearsal were for
    // another day, so the tokens get a new epoch (older links are refused) and points verify again.
    let rescheduled = !completed_before && st::rescheduled(&prev, t);
    if rescheduled {
        status.token_epoch = prev.token_epoch + 1;
    }
    // Whole seconds, as the API server keeps them: otherwise the status computed here never equals
    // the one read back, and every reconcile would write it.
    let whole = |ts: Timestamp| Some(Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts)));
    status.readiness_deadline = whole(t.deadline);
    status.rehearsal_start = whole(t.rehearsal_start);
    status.end = whole(t.end);

    let mut conds = Conditions { list: &mut status.conditions, generation, now };
    let mut worker_report = None;
    if completed_before || t.phase_at(now, false) == SessionPhase::Completed {
        release(session, ctx).await?;
        conds.no_resources(
            "Released",
            "The session ended; its worker, Service, join tokens, certificates and monitoring were deleted.",
        );
        status.worker = None;
    } else if t.needs_resources(now) {
        match provision(session, &valid, ctx, now, status.token_epoch).await {
            Ok(p) => {
                status.worker = Some(WorkerStatus {
                    pod: p.pod.as_ref().map(|p| p.name_any()),
                    signaling_url: Some(signaling_service::url(session)),
                });
                provisioned_conditions(ctx, session, &prev, &mut conds, &p).await;
                worker_report = p.report;
            }
            Err(ProvisionError::PoolMissing(pool)) => {
                let msg = format!("spec.workerPool: no MediaWorkerPool named {pool:?} in this namespace");
                if conds.set(SC::Provisioned, CS::False, "PoolNotFound", &msg) {
                    events::warning(ctx, session, "PoolNotFound", "Provision", msg).await;
                }
            }
            Err(ProvisionError::Other(e)) => return Err(e),
        }
    } else {
        // Not yet time, or no longer: a session moved to a later day gives its worker back.
        if rescheduled || condition_true(session, SC::Provisioned.as_str()) {
            release(session, ctx).await?;
            status.worker = None;
        }
        let msg = format!("Provisioning starts at {}.", t.provisioning_start);
        conds.no_resources("Scheduled", &msg);
    }

    // derive status (pure)
    let derived = st::derive(&prev, &valid, worker_report.as_ref(), rescheduled, now);
    status.points = derived.points;
    status.quality_sampled_at = derived.quality_sampled_at;
    let phase = derived.phase;
    status.phase = Some(phase);
    status.verified = Some(st::verified_summary(&status.points));
    readiness_conditions(&mut Conditions { list: &mut status.conditions, generation, now }, &status.points, t);
    let mut summary = status.summary.clone().unwrap_or_default();
    if phase == SessionPhase::Live && summary.actual_start.is_none() {
        summary.actual_start = Some(Time(now));
    }
    if phase == SessionPhase::Completed && summary.actual_end.is_none() {
        summary.actual_end = Some(Time(now));
    }
    status.summary = Some(st::summarize(&status.points, summary));
    write_status(ctx, session, &prev, &status).await?;
    ctx.metrics.observe_session(&id, &status, Some(t), now);

    // events from the diff, after the session's own status is safely written
    if rescheduled {
        let msg = format!(
            "The schedule changed after provisioning: join links were issued again (epoch {}), older links are \
             refused, and every point must be verified again before {}.",
            status.token_epoch, t.deadline
        );
        events::warning(ctx, session, "Rescheduled", "Schedule", msg).await;
    }
    if prev.phase != Some(phase) {
        tracing::info!(session = %id, from = ?prev.phase, to = %phase, "session phase changed");
        phase_event(ctx, session, prev.phase, phase, &status).await;
    }
    for p in st::newly_removed(&prev.points, &status.points) {
        let msg = format!(
            "Point {} is no longer a ReceptionPoint in this namespace: it left the session and its join token was \
             withdrawn. The session goes on with the other points.",
            p.name
        );
        events::warning(ctx, session, "PointRemoved", "Points", msg).await;
    }
    for p in st::newly_verified(&prev.points, &status.points) {
        if p.verified_late {
            let msg =
                format!("Point {} was verified after the deadline {}; the session stays NotReady.", p.name, t.deadline);
            events::warning(ctx, session, "PointVerifiedLate", "Verify", msg).await;
        } else {
            let msg = format!("Point {} sent and received audio and video within thresholds.", p.name);
            events::normal(ctx, session, "PointVerified", "Verify", msg).await;
        }
        record_point_verification(ctx, &ns, session, p).await;
    }
    Ok(next_action(ctx, &valid, phase, now))
}

/// A session that failed validation gives back everything usable (worker, links, certificates),
/// keeping its spec and status so people can see why.
async fn fail(
    session: &ReceptionSession,
    ctx: &Context,
    prev: &ReceptionSessionStatus,
    mut status: ReceptionSessionStatus,
    e: &crate::validate::Error,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = session.metadata.generation;
    let mut conds = Conditions { list: &mut status.conditions, generation, now };
    let changed = conds.set(SC::Valid, CS::False, e.reason(), e.to_string());
    if prev.phase != Some(SessionPhase::Completed) {
        status.phase = Some(SessionPhase::Failed);
        release(session, ctx).await?;
        conds.no_resources(
            "Failed",
            "The session is not valid (see the Valid condition); its worker, Service, join tokens and certificates \
             were released.",
        );
        status.worker = None;
    }
    write_status(ctx, session, prev, &status).await?;
    let id = session_id(&session.namespace().unwrap_or_default(), &session.name_any());
    ctx.metrics.observe_session(&id, &status, None, now);
    if changed || prev.phase != status.phase {
        events::warning(ctx, session, e.reason(), "Validate", e.to_string()).await;
    }
    // Not retried in a loop: a change to the session or its points triggers a reconcile.
    Ok(Action::await_change())
}

/// The conditions of a provisioned session, and the events for their transitions.
async fn provisioned_conditions(
    ctx: &Context,
    session: &ReceptionSession,
    prev: &ReceptionSessionStatus,
    conds: &mut Conditions<'_>,
    p: &Provisioned,
) {
    conds.set(
        SC::Provisioned,
        CS::True,
        "Provisioned",
        "Worker, signaling Service, join tokens and the session's certificate are in place.",
    );
    let health = p.pod.as_ref().map_or(WorkerHealth::Starting, WorkerHealth::of);
    let pod_name = p.pod.as_ref().map(|p| p.name_any()).unwrap_or_default();
    let msg = health.message(&pod_name, &p.worker_message);
    let was = condition::find(&prev.conditions, SC::WorkerReady.as_str()).map(|c| c.reason.clone());
    let reason = health.reason();
    conds.set(SC::WorkerReady, CS::from_bool(health == WorkerHealth::Ready), reason, &msg);
    if was.as_deref() != Some(reason) {
        if health.failed() {
            events::warning(ctx, session, reason, "Worker", msg).await;
        } else if health == WorkerHealth::Ready && was.as_deref().is_some_and(WorkerHealth::is_failure_reason) {
            events::normal(ctx, session, "WorkerRecovered", "Worker", msg).await;
        }
    }
    let was_degraded = condition::find(&prev.conditions, SC::Degraded.as_str()).is_some_and(|c| c.status == "True");
    if let Some((old, why)) = &p.replaced {
        let msg = if *why == allocation::Stale::OldEpoch.as_str() {
            format!("Worker pod {old} served the session before it was rescheduled; {pod_name} serves the new links.")
        } else {
            format!(
                "Worker pod {old} can no longer serve the session ({why}); {pod_name} replaces it. The links stay \
                 the same and the consoles reconnect; verification is kept."
            )
        };
        conds.set(SC::Degraded, CS::True, "WorkerReplaced", &msg);
        ctx.metrics.worker_replaced(why);
        events::warning(ctx, session, "WorkerReplaced", "Worker", msg).await;
    } else if health == WorkerHealth::Ready {
        conds.set(SC::Degraded, CS::False, "WorkerServing", "The session's worker serves it.");
        if was_degraded {
            let msg = format!("Worker pod {pod_name} serves the session again.");
            events::normal(ctx, session, "WorkerRestored", "Worker", msg).await;
        }
    } else if !was_degraded {
        conds.set(SC::Degraded, CS::False, "WorkerStarting", "The session's worker is starting.");
    }
    let (ms, reason, msg) = monitoring_condition(&p.monitoring);
    conds.set(SC::MonitoringReady, ms, reason, msg);
    let (cs, reason, msg) = certificate::condition(&p.certificate, p.report.as_ref(), &pod_name);
    let was = condition::find(&prev.conditions, CERTIFICATE_READY).map(|c| c.reason.clone());
    conds.set(SC::CertificateReady, cs, reason, &msg);
    if was.as_deref() != Some(reason) {
        match reason {
            "Serving" => events::normal(ctx, session, "CertificateServing", "Certificate", msg).await,
            "CertificateFailed" => events::warning(ctx, session, "CertificateFailed", "Certificate", msg).await,
            _ => {}
        }
    }
}

/// PointsVerified and ReadyByDeadline from the points (pure).
fn readiness_conditions(conds: &mut Conditions<'_>, points: &[crate::api::PointStatus], t: &crate::timeline::Timeline) {
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

/// When to look again: the next timeline boundary, and the worker poll while media flows.
fn next_action(ctx: &Context, valid: &ValidSession, phase: SessionPhase, now: Timestamp) -> Action {
    use SessionPhase::*;
    let poll = matches!(phase, Provisioning | Rehearsal | Ready | NotReady | Live).then_some(ctx.config.status_poll);
    let boundary = valid.timeline.next_boundary(now).and_then(|b| ctx.clock.real_wait_until(b));
    match (poll, boundary) {
        (Some(p), Some(b)) => Action::requeue(p.min(b).max(Duration::from_millis(100))),
        (Some(p), None) => Action::requeue(p),
        (None, Some(b)) => Action::requeue(b.max(Duration::from_millis(100))),
        (None, None) => Action::await_change(),
    }
}

enum ProvisionError {
    PoolMissing(String),
    Other(Error),
}

impl From<Error> for ProvisionError {
    fn from(e: Error) -> Self {
        ProvisionError::Other(e)
    }
}

/// build + apply: the worker, the signaling Service, the join tokens and the monitoring children;
/// then orphans go.
#[tracing::instrument(skip_all)]
async fn provision(
    session: &ReceptionSession,
    valid: &ValidSession,
    ctx: &Context,
    now: Timestamp,
    epoch: u64,
) -> Result<Provisioned, ProvisionError> {
    let ns = session.namespace().unwrap_or_default();
    let sname = session.name_any();
    let pool = Api::<MediaWorkerPool>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&session.spec.worker_pool)
        .await
        .map_err(Error::Pool)?
        .ok_or_else(|| ProvisionError::PoolMissing(session.spec.worker_pool.clone()))?;
    let key = ensure_signing_key(ctx, &pool).await.map_err(Error::SigningKey)?;

    let (alloc, stale) = allocation::allocate(&ctx.client, session, &pool, epoch).await.map_err(Error::from)?;
    let had = session.status.as_ref().and_then(|s| s.worker.as_ref()).and_then(|w| w.pod.clone());
    let replaced = match (&alloc, had) {
        (Allocation::Existing(_), _) | (_, None) => None,
        (_, Some(old)) => Some((old, stale.map_or("Gone", allocation::Stale::as_str))),
    };
    match &alloc {
        Allocation::TookIdle(p) => {
            events::normal(
                ctx,
                session,
                "WorkerAllocated",
                "Allocate",
                format!("Took warm worker {} from pool {}.", p.name_any(), pool.name_any()),
            )
            .await
        }
        Allocation::Created(p) => {
            events::normal(
                ctx,
                session,
                "WorkerCreated",
                "Allocate",
                format!("No warm worker was idle in pool {}; created {}.", pool.name_any(), p.name_any()),
            )
            .await
        }
        Allocation::Existing(_) => {}
    }
    let pod = alloc.pod().clone();
    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let svc = apply::apply(&services, &signaling_service::build(session)).await.map_err(Error::from)?;
    let tokens = apply::apply(&secrets, &join_tokens::build(session, valid, &key, epoch).map_err(Error::from)?)
        .await
        .map_err(Error::from)?;
    // The certificate goes to the pod before the worker is bound, so it can load it at once.
    let (certificate, mut keep_secrets) = match certificate::ensure(ctx, session, &pool, &pod, now).await {
        Ok((issued, keep)) => (Ok(issued), keep),
        Err(e) => {
            tracing::warn!(error = %e, category = e.category(), "failed to provide the session's certificate");
            // Keep whatever certificate Secrets exist: a failed renewal must not take signaling down.
            let keep = [tls::secret_name(&sname), tls::pod_secret_name(&pod.name_any())].into();
            (Err(e), keep)
        }
    };
    keep_secrets.insert(tokens.name_any());

    let sel = labels::session_selector(&sname);
    let one = |n: String| BTreeSet::from([n]);
    apply::delete_orphans(&Api::<Pod>::namespaced(ctx.client.clone(), &ns), &sel, &one(pod.name_any()))
        .await
        .map_err(Error::from)?;
    apply::delete_orphans(&services, &sel, &one(svc.name_any())).await.map_err(Error::from)?;
    apply::delete_orphans(&secrets, &sel, &keep_secrets).await.map_err(Error::from)?;
    // Only signaling and the pool's RTC ports reach the session's worker.
    let policies = Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns);
    let ranges = network_policy::PortRanges::for_minor(ctx.server_minor().await.map_err(Error::ServerVersion)?);
    let policy = apply::apply(&policies, &network_policy::build(session, &pool, ranges)).await.map_err(Error::from)?;
    apply::delete_orphans(&policies, &sel, &one(policy.name_any())).await.map_err(Error::from)?;
    let monitoring = monitoring::apply(ctx, session).await;
    if let Err(e) = &monitoring {
        tracing::warn!(error = %e, category = e.category(), "failed to apply the session's monitoring");
    }

    let (report, worker_message) = observe_worker(ctx, session, &pod, &key, now, epoch).await;
    Ok(Provisioned { pod: Some(pod), report, worker_message, monitoring, certificate, replaced })
}

/// Binds a warm worker to the session (idempotent) and reads its per-point status.
#[tracing::instrument(skip_all)]
async fn observe_worker(
    ctx: &Context,
    session: &ReceptionSession,
    pod: &Pod,
    key: &[u8],
    now: Timestamp,
    epoch: u64,
) -> (Option<WorkerReport>, String) {
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
        return (None, format!("Worker pod {} has no IP yet.", pod.name_any()));
    };
    if !pod_ready(pod) {
        return (None, format!("Worker pod {} is not ready yet.", pod.name_any()));
    }
    let base = WorkerClient::base_url(&ip, crate::build::worker_ports::of_pod(pod).admin);
    let id = session_id(&session.namespace().unwrap_or_default(), &session.name_any());
    // A pod started bound knows its session, but not a raised epoch: tell it, so older links are
    // refused (the worker only ever raises its epoch, so repeating this is harmless).
    if !allocation::started_bound(pod) || epoch > 0 {
        if let Err(e) = ctx.workers.allocate(&base, key, now, &id, &session.spec.title, epoch).await {
            return (
                None,
                format!("Worker pod {} is ready but could not be bound to the session: {e}", pod.name_any()),
            );
        }
    }
    match ctx.workers.status(&base).await {
        Ok(r) => (Some(r), format!("Worker pod {} is ready and serving the session.", pod.name_any())),
        Err(e) => (None, format!("Worker pod {} is ready but its status is unavailable: {e}", pod.name_any())),
    }
}

/// Deletes everything the session made: worker pods, Services, cert-manager Certificates, Secrets
/// (join tokens, certificates) and the monitoring children (dashboard ConfigMap, PodMonitor,
/// PrometheusRule).
#[tracing::instrument(skip_all)]
async fn release(session: &ReceptionSession, ctx: &Context) -> Result<(), Error> {
    let ns = session.namespace().unwrap_or_default();
    let sel = labels::session_selector(&session.name_any());
    let none = BTreeSet::new();
    apply::delete_orphans(&Api::<Pod>::namespaced(ctx.client.clone(), &ns), &sel, &none).await?;
    certificate::release(ctx, &ns, &sel).await?;
    apply::delete_orphans(&Api::<Service>::namespaced(ctx.client.clone(), &ns), &sel, &none).await?;
    apply::delete_orphans(&Api::<Secret>::namespaced(ctx.client.clone(), &ns), &sel, &none).await?;
    apply::delete_orphans(&Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns), &sel, &none).await?;
    monitoring::release(ctx, &ns, &sel).await?;
    Ok(())
}

async fn cleanup(session: &ReceptionSession, ctx: &Context) -> Result<Action, Error> {
    release(session, ctx).await?;
    ctx.metrics.remove_session(&session_id(&session.namespace().unwrap_or_default(), &session.name_any()));
    events::normal(
        ctx,
        session,
        "CleanedUp",
        "Delete",
        "Deleted the session's worker, Service, join tokens, certificates and monitoring.".to_owned(),
    )
    .await;
    Ok(Action::await_change())
}

/// Writes `status` only if it differs from `prev`: a session in which nothing changed costs no
/// API writes.
#[tracing::instrument(skip_all)]
async fn write_status(
    ctx: &Context,
    session: &ReceptionSession,
    prev: &ReceptionSessionStatus,
    status: &ReceptionSessionStatus,
) -> Result<(), Error> {
    if session.status.is_some() && prev == status {
        return Ok(());
    }
    let patch = json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionSession", "status": status});
    Api::<ReceptionSession>::namespaced(ctx.client.clone(), &session.namespace().unwrap_or_default())
        .patch_status(&session.name_any(), &PatchParams::apply(labels::MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Status)?;
    Ok(())
}

async fn phase_event(
    ctx: &Context,
    session: &ReceptionSession,
    from: Option<SessionPhase>,
    to: SessionPhase,
    status: &ReceptionSessionStatus,
) {
    let from = from.map_or("(new)".to_owned(), |p| p.to_string());
    let verified = status.verified.clone().unwrap_or_default();
    let note = format!("{from} → {to}; points verified {verified}.");
    match to {
        SessionPhase::NotReady => events::warning(ctx, session, "DeadlineMissed", "Phase", note).await,
        SessionPhase::Failed => events::warning(ctx, session, "Failed", "Phase", note).await,
        _ => events::normal(ctx, session, to.as_str(), "Phase", note).await,
    }
}

/// Records a verification on the point itself. Best effort: a merge patch (not the apply
/// manager's field set, which the point controller owns).
async fn record_point_verification(ctx: &Context, ns: &str, session: &ReceptionSession, p: &crate::api::PointStatus) {
    let patch = json!({"status": {"lastVerification": {
        "time": p.verified_at, "session": session.name_any(),
        "rttMs": p.rtt_ms, "lossPercent": p.loss_percent, "jitterMs": p.jitter_ms,
    }}});
    let api = Api::<ReceptionPoint>::namespaced(ctx.client.clone(), ns);
    if let Err(e) = api.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::warn!(error = %e, point = %p.name, "failed to record verification on point");
    }
}

/// Failures are logged and counted inside the reconcile span (see [`super::instrument`]).
fn error_policy(_session: Arc<ReceptionSession>, err: &Error, ctx: Arc<Context>) -> Action {
    // Adding or removing the finalizer is a JSON patch guarded by a `test` of the object's
    // current finalizers: when another write got in first the API server answers 422, which is a
    // lost race, not a broken spec. Retry it at once rather than after the error back-off.
    if matches!(err, Error::Finalizer(_)) {
        return Action::requeue(Duration::from_secs(1).min(ctx.config.error_backoff));
    }
    Action::requeue(ctx.config.error_backoff)
}

/// The condition saying whether the session's monitoring children are in place.
pub const MONITORING_READY: &str = SC::MonitoringReady.as_str();

/// `MonitoringReady` from what [`monitoring::apply`] did.
fn monitoring_condition(outcome: &Result<Applied, monitoring::Error>) -> (CS, &'static str, String) {
    match outcome {
        Ok(Applied::All) => (
            CS::True,
            "MonitoringApplied",
            "The Grafana dashboard ConfigMap, PodMonitor and PrometheusRule are in place.".to_owned(),
        ),
        Ok(Applied::DashboardOnly) => (
            CS::False,
            "PrometheusOperatorMissing",
            format!(
                "The prometheus-operator CRDs ({}) are not installed, so no PodMonitor or PrometheusRule was \
                 created; the Grafana dashboard ConfigMap is in place.",
                monitoring::PROMETHEUS_OPERATOR_CRDS.join(", ")
            ),
        ),
        Err(e) => (CS::False, "MonitoringFailed", format!("{e} ({})", e.category())),
    }
}

/// Whether `session` currently has its condition `type_` True (for callers and tests).
pub fn condition_true(session: &ReceptionSession, type_: &str) -> bool {
    session.status.as_ref().and_then(|s| condition::find(&s.conditions, type_)).is_some_and(|c| c.status == "True")
}
