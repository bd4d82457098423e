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
    ReceptionSessionStatus, SessionPhase, WorkerStatus,
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
    let valid = match validate_session(&session.spec, &points, &ctx.config.timeline) {
        Ok(v) => v,
        Err(e) => {
            let changed =
                set_condition(&mut status.conditions, "Valid", CS::False, e.reason(), e.to_string(), generation, now);
            if prev.phase != Some(SessionPhase::Completed) {
                status.phase = Some(SessionPhase::Failed);
            }
            write_status(ctx, session, &status).await?;
            ctx.metrics.observe_session(&id, &status, None, now);
            if changed || prev.phase != status.phase {
                events::warning(ctx, session, e.reason(), "Validate", e.to_string()).await;
            }
            // Not retried in a loop: a change to the session or its points triggers a reconcile.
            return Ok(Action::await_change());
        }
    };
    set_condition(
        &mut status.conditions,
        "Valid",
        CS::True,
        "Valid",
        "The session's points, host and schedule are valid.",
        generation,
        now,
    );
    let t = &valid.timeline;
    status.readiness_deadline = Some(Time(t.deadline));
    status.rehearsal_start = Some(Time(t.rehearsal_start));
    status.end = Some(Time(t.end));

    let completed_before = prev.phase == Some(SessionPhase::Completed);
    let time_phase = t.phase_at(now, st::all_verified(&prev.points));
    let mut worker_report = None;
    if completed_before || time_phase == SessionPhase::Completed {
        release(session, ctx).await?;
        set_condition(
            &mut status.conditions,
            "Provisioned",
            CS::False,
            "Released",
            "The session ended; its worker, Service, join tokens and certificates were deleted.",
            generation,
            now,
        );
        set_condition(
            &mut status.conditions,
            "WorkerReady",
            CS::False,
            "Released",
            "The session ended.",
            generation,
            now,
        );
        set_condition(
            &mut status.conditions,
            MONITORING_READY,
            CS::False,
            "Released",
            "The session ended; its dashboard and any PodMonitor and PrometheusRule were deleted.",
            generation,
            now,
        );
        set_condition(
            &mut status.conditions,
            CERTIFICATE_READY,
            CS::False,
            "Released",
            "The session ended; its certificate Secrets (and any cert-manager Certificate) were deleted.",
            generation,
            now,
        );
        status.worker = None;
    } else if t.needs_resources(now) {
        match provision(session, &valid, ctx, now).await {
            Ok(p) => {
                set_condition(
                    &mut status.conditions,
                    "Provisioned",
                    CS::True,
                    "Provisioned",
                    "Worker, signaling Service, join tokens and the session's certificate are in place.",
                    generation,
                    now,
                );
                let health = p.pod.as_ref().map_or(WorkerHealth::Starting, WorkerHealth::of);
                let pod_name = p.pod.as_ref().map(|p| p.name_any()).unwrap_or_default();
                let msg = health.message(&pod_name, &p.worker_message);
                let was = condition::find(&prev.conditions, "WorkerReady").map(|c| c.reason.clone());
                let reason = health.reason();
                set_condition(
                    &mut status.conditions,
                    "WorkerReady",
                    CS::from_bool(health == WorkerHealth::Ready),
                    reason,
                    &msg,
                    generation,
                    now,
                );
                if was.as_deref() != Some(reason) {
                    if health.failed() {
                        events::warning(ctx, session, reason, "Worker", msg).await;
                    } else if health == WorkerHealth::Ready
                        && matches!(was.as_deref(), Some("WorkerCrashed" | "WorkerOOMKilled"))
                    {
                        events::normal(ctx, session, "WorkerRecovered", "Worker", msg).await;
                    }
                }
                status.worker = Some(WorkerStatus {
                    pod: p.pod.as_ref().map(|p| p.name_any()),
                    signaling_url: Some(signaling_service::url(session)),
                });
                let (ms, reason, msg) = monitoring_condition(&p.monitoring);
                set_condition(&mut status.conditions, MONITORING_READY, ms, reason, msg, generation, now);
                let (cs, reason, msg) = certificate::condition(&p.certificate, p.report.as_ref(), &pod_name);
                let was = condition::find(&prev.conditions, CERTIFICATE_READY).map(|c| c.reason.clone());
                set_condition(&mut status.conditions, CERTIFICATE_READY, cs, reason, &msg, generation, now);
                if was.as_deref() != Some(reason) {
                    match reason {
                        "Serving" => events::normal(ctx, session, "CertificateServing", "Certificate", msg).await,
                        "CertificateFailed" => {
                            events::warning(ctx, session, "CertificateFailed", "Certificate", msg).await
                        }
                        _ => {}
                    }
                }
                worker_report = p.report;
            }
            Err(ProvisionError::PoolMissing(pool)) => {
                let msg = format!("spec.workerPool: no MediaWorkerPool named {pool:?} in this namespace");
                if set_condition(
                    &mut status.conditions,
                    "Provisioned",
                    CS::False,
                    "PoolNotFound",
                    &msg,
                    generation,
                    now,
                ) {
                    events::warning(ctx, session, "PoolNotFound", "Provision", msg).await;
                }
            }
            Err(ProvisionError::Other(e)) => return Err(e),
        }
    } else {
        let msg = format!("Provisioning starts at {}.", t.provisioning_start);
        set_condition(&mut status.conditions, "Provisioned", CS::False, "Scheduled", &msg, generation, now);
        set_condition(&mut status.conditions, "WorkerReady", CS::False, "Scheduled", &msg, generation, now);
        set_condition(&mut status.conditions, MONITORING_READY, CS::False, "Scheduled", &msg, generation, now);
        set_condition(&mut status.conditions, CERTIFICATE_READY, CS::False, "Scheduled", msg, generation, now);
    }

    // status
    status.points = st::merge_points(&valid.participants, worker_report.as_ref(), &prev.points, now);
    status.verified = Some(st::verified_summary(&status.points));
    let phase =
        if completed_before { SessionPhase::Completed } else { t.phase_at(now, st::all_verified(&status.points)) };
    status.phase = Some(phase);
    let verified_n = status.points.iter().filter(|p| p.verified).count();
    let all = st::all_verified(&status.points);
    set_condition(
        &mut status.conditions,
        "PointsVerified",
        CS::from_bool(all),
        if all { "AllVerified" } else { "PointsUnverified" },
        format!("{verified_n} of {} points verified.", status.points.len()),
        generation,
        now,
    );
    let (rbd, reason, msg) = if st::all_verified_by(&status.points, t.deadline) {
        (CS::True, "VerifiedBeforeDeadline", format!("Every point was verified before {}.", t.deadline))
    } else if now >= t.deadline {
        (
            CS::False,
            "DeadlineMissed",
            format!(
                "{} of {} points were not verified before {}.",
                status.points.len() - verified_n,
                status.points.len(),
                t.deadline
            ),
        )
    } else {
        (CS::Unknown, "AwaitingVerification", format!("Every point must be verified before {}.", t.deadline))
    };
    set_condition(&mut status.conditions, "ReadyByDeadline", rbd, reason, msg, generation, now);
    let mut summary = status.summary.clone().unwrap_or_default();
    if phase == SessionPhase::Live && summary.actual_start.is_none() {
        summary.actual_start = Some(Time(now));
    }
    if phase == SessionPhase::Completed && summary.actual_end.is_none() {
        summary.actual_end = Some(Time(now));
    }
    status.summary = Some(st::summarize(&status.points, summary));
    write_status(ctx, session, &status).await?;
    ctx.metrics.observe_session(&id, &status, Some(t), now);

    // events and point status, after the session's own status is safely written
    if prev.phase != Some(phase) {
        tracing::info!(session = %id, from = ?prev.phase, to = %phase, "session phase changed");
        phase_event(ctx, session, prev.phase, phase, &status).await;
    }
    for p in st::newly_verified(&prev.points, &status.points) {
        events::normal(
            ctx,
            session,
            "PointVerified",
            "Verify",
            format!("Point {} sent and received audio and video within thresholds.", p.name),
        )
        .await;
        record_point_verification(ctx, &ns, session, p, now).await;
    }
    Ok(next_action(ctx, &valid, phase, now))
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
) -> Result<Provisioned, ProvisionError> {
    let ns = session.namespace().unwrap_or_default();
    let sname = session.name_any();
    let pool = Api::<MediaWorkerPool>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&session.spec.worker_pool)
        .await
        .map_err(Error::Pool)?
        .ok_or_else(|| ProvisionError::PoolMissing(session.spec.worker_pool.clone()))?;
    let key = ensure_signing_key(ctx, &pool).await.map_err(Error::SigningKey)?;

    let alloc = allocation::allocate(&ctx.client, session, &pool).await.map_err(Error::from)?;
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
    let tokens = apply::apply(&secrets, &join_tokens::build(session, valid, &key, 0).map_err(Error::from)?)
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

    let (report, worker_message) = observe_worker(ctx, session, &pod, &key, now).await;
    Ok(Provisioned { pod: Some(pod), report, worker_message, monitoring, certificate })
}

/// Binds a warm worker to the session (idempotent) and reads its per-point status.
#[tracing::instrument(skip_all)]
async fn observe_worker(
    ctx: &Context,
    session: &ReceptionSession,
    pod: &Pod,
    key: &[u8],
    now: Timestamp,
) -> (Option<WorkerReport>, String) {
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
        return (None, format!("Worker pod {} has no IP yet.", pod.name_any()));
    };
    if !pod_ready(pod) {
        return (None, format!("Worker pod {} is not ready yet.", pod.name_any()));
    }
    let base = WorkerClient::base_url(&ip, crate::build::worker_ports::of_pod(pod).admin);
    let id = session_id(&session.namespace().unwrap_or_default(), &session.name_any());
    if !allocation::started_bound(pod) {
        if let Err(e) = ctx.workers.allocate(&base, key, now, &id, &session.spec.title, 0).await {
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

#[tracing::instrument(skip_all)]
async fn write_status(ctx: &Context, session: &ReceptionSession, status: &ReceptionSessionStatus) -> Result<(), Error> {
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
async fn record_point_verification(
    ctx: &Context,
    ns: &str,
    session: &ReceptionSession,
    p: &crate::api::PointStatus,
    now: Timestamp,
) {
    let patch = json!({"status": {"lastVerification": {
        "time": Time(now), "session": session.name_any(),
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
pub const MONITORING_READY: &str = "MonitoringReady";

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
