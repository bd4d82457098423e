//! The ReceptionSession controller. Each reconcile is a pipeline:
//! observe (points) → validate (pure, `validate`) → plan (pure, `session_plan`) → apply only what
//! differs (allocate, build, `apply`) → derive status (pure, `session_status`) → write it only on
//! change → events from the diff (pure, `session_events`). A finalizer removes everything the
//! session created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use super::allocation::{self, Allocation};
use super::caches::{self, known};
use super::certificate;
use super::failover;
use super::monitoring::{self, Applied};
use super::pods::pod_ready;
use super::session_events::{self, Kind};
use super::session_plan::{self, Plan, Resources};
use super::session_status::{self, Allocated, Outcome, Provisioned, Replaced};
use super::status as st;
use super::token_keys::ensure_signing_keys;
use super::worker_health::WorkerHealth;
use super::{events, Context};
use crate::api::{
    condition, ConditionStatus as CS, MediaWorkerPool, ReceptionPoint, ReceptionSession, ReceptionSessionStatus,
    SessionCondition as SC, SessionPhase,
};
use crate::apply;
use crate::build::{join_tokens, labels, network_policy, signaling_service, tls};
use crate::link_generations;
use crate::metrics::KIND_SESSION;
use crate::node_address;
use crate::tokens::{self, session_id, SigningKeys};
use crate::validate::{validate_session, ValidSession};
use crate::worker_client::{self, Admin, WorkerClient, WorkerReport};

/// The finalizer that guarantees clean-up.
pub const FINALIZER: &str = "tiepdan.io/cleanup";

/// Errors reconciling a session. `category()` is a bounded label for metrics and logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read the pool's token keys")]
    SigningKey(#[source] super::token_keys::Error),
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
    #[error("failed to add or remove the finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::SigningKey(_) => "pool",
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

impl super::instrument::ReconcileError for Error {
    fn category(&self) -> &'static str {
        Error::category(self)
    }
}

/// What starts a session's reconcile besides the session itself: its children, and the points and
/// pools it names (each from [`super::caches`], so the cache has what started it).
pub struct Triggers {
    pub pods: super::caches::Trigger<PartialObjectMeta<Pod>>,
    pub services: super::caches::Trigger<PartialObjectMeta<Service>>,
    pub secrets: super::caches::Trigger<PartialObjectMeta<Secret>>,
    pub points: super::caches::Trigger<ReceptionPoint>,
    pub pools: super::caches::Trigger<MediaWorkerPool>,
}

pub fn controller(
    ctx: Arc<Context>,
    triggers: Triggers,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl Stream<Item = super::Outcome<ReceptionSession, Error>> {
    // The sessions' own store, without managedFields (see caches::strip).
    let (reader, writer) = kube::runtime::reflector::store();
    let sessions = watcher::watcher(ctx.watched::<ReceptionSession>(), watcher::Config::default())
        .backoff(super::watch_backoff::WatchBackoff::default())
        .modify(caches::strip)
        .reflect(writer)
        .applied_objects();
    let ctl = Controller::for_stream(sessions, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.max_concurrent_reconciles));
    let (by_point, by_pool) = (ctl.store(), ctl.store());
    ctl.owns_stream(triggers.pods)
        .owns_stream(triggers.services)
        .owns_stream(triggers.secrets)
        // Points coming and going change a session's validity and participants.
        .watches_stream(caches::spec_changes(triggers.points, ctx.caches.points.clone()), move |p: ReceptionPoint| {
            let ns = p.namespace();
            by_point
                .state()
                .into_iter()
                .filter(|s| s.namespace() == ns)
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .watches_stream(caches::spec_changes(triggers.pools, ctx.caches.pools.clone()), move |p: MediaWorkerPool| {
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
    let has_finalizer = session.finalizers().iter().any(|f| f == FINALIZER);
    if session.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            cleanup(&session, &ctx).await?;
            remove_finalizer(&api, &session).await?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        add_finalizer(&api, &session).await?;
    }
    // Provisioned in the same pass: kube-runtime's finalizer helper returned after adding the
    // finalizer and waited for the watch to bring the session back, and a reconcile started in
    // between by a child or a point (with the session's cached copy still without the finalizer)
    // tried to add it again. Its precondition then failed with 422, on about 60 % of sessions at
    // scale: a wasted write and a retry each.
    apply_session(&session, &ctx).await
}

/// Adds the finalizer by server-side apply: idempotent, so a repeat from a stale copy of the
/// session is one harmless write, not a conflict.
async fn add_finalizer(api: &Api<ReceptionSession>, session: &ReceptionSession) -> Result<(), Error> {
    let patch = json!({
        "apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionSession",
        "metadata": {"name": session.name_any(), "finalizers": [FINALIZER]},
    });
    api.patch(&session.name_any(), &PatchParams::apply(FINALIZER_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map(drop)
        .map_err(|e| Error::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(e))))
}

/// Removes the finalizer once everything is given back, guarded by the list it was read with (as
/// kube-runtime does): another controller's finalizer added or removed meanwhile makes this a 422,
/// retried at once (see [`error_policy`]).
async fn remove_finalizer(api: &Api<ReceptionSession>, session: &ReceptionSession) -> Result<(), Error> {
    let finalizers = session.finalizers();
    let Some(i) = finalizers.iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]))
    .expect("a JSON patch literal");
    match api.patch::<ReceptionSession>(&session.name_any(), &PatchParams::default(), &Patch::Json(patch)).await {
        Ok(_) => Ok(()),
        // Already gone: the finalizer was the last one and the object went with it.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Finalizer(Box::new(kube::runtime::finalizer::Error::RemoveFinalizer(e)))),
    }
}

/// The field manager that owns the finalizer (apart from the one writing status).
const FINALIZER_MANAGER: &str = "tiepdan-operator-finalizer";

/// observe → validate → plan (pure) → apply → derive status (pure) → write only on change →
/// events from the diff.
async fn apply_session(session: &ReceptionSession, ctx: &Context) -> Result<Action, Error> {
    let now = ctx.clock.now();
    let ns = session.namespace().unwrap_or_default();
    let id = session_id(&ns, &session.name_any());
    let prev = session.status.clone().unwrap_or_default();

    // observe (from the caches, which hold at least what started this reconcile)
    ctx.caches.synced().await;
    // Shared, not copied: every session of the namespace reads them, a thousand at once.
    let points = ctx.caches.points.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    // validate
    let valid = validate_session(&session.name_any(), &session.spec, &points, &ctx.config.timeline);
    // plan (the webhook refuses rotation annotations that are not generations; here they count
    // as absent)
    let (requested_links, _) = link_generations::requested(session.annotations());
    let plan = session_plan::plan(&prev, valid.as_ref(), &requested_links, now);
    // apply
    let outcome = match (plan.resources, &valid) {
        (Resources::Provision, Ok(v)) => match provision(session, v, ctx, now, &plan).await {
            Ok(p) => Outcome::Provisioned(Box::new(p)),
            Err(ProvisionError::PoolMissing(pool)) => Outcome::PoolMissing(pool),
            Err(ProvisionError::Other(e)) => return Err(e),
        },
        (Resources::Release(_), _) => {
            // Read from the API server the first time (a child created a moment ago may not be
            // in the caches yet); a Completed session that already gave everything back is
            // reconciled again on every point or pool change, so later passes read the caches.
            let reads = if prev.phase == Some(SessionPhase::Completed) && !session_plan::held(&prev) {
                Reads::Cached
            } else {
                Reads::Fresh
            };
            release(session, ctx, reads).await?;
            Outcome::Released
        }
        _ => Outcome::Released,
    };
    // derive status, and write it only if it changed
    let mut status = session_status::next(&prev, session.metadata.generation, valid.as_ref(), &plan, &outcome, now);
    // Where the points' links lead (`tiepdan-operator links` reads it): the same for every session.
    status.entry_url.clone_from(&ctx.config.entry_url);
    write_status(ctx, session, &prev, &status).await?;
    ctx.metrics.observe_session(&id, &status, valid.as_ref().ok().map(|v| &v.timeline), now);
    if let Outcome::Provisioned(p) = &outcome {
        if let Some(r) = &p.replaced {
            ctx.metrics.worker_replaced(r.why);
        }
    }
    // events from the diff, after the session's own status is safely written
    if prev.phase != status.phase {
        tracing::info!(session = %id, from = ?prev.phase, to = ?status.phase, "session phase changed");
    }
    for n in session_events::from_diff(&prev, &status, valid.as_ref(), &plan, &outcome) {
        match n.kind {
            Kind::Normal => events::normal(ctx, session, n.reason, n.action, n.message).await,
            Kind::Warning => events::warning(ctx, session, n.reason, n.action, n.message).await,
        }
    }
    for p in st::newly_verified(&prev.points, &status.points) {
        record_point_verification(ctx, &ns, session, p).await;
    }
    let recheck = match &outcome {
        Outcome::Provisioned(p) => p.recheck,
        _ => None,
    };
    Ok(match &valid {
        Ok(v) => next_action(ctx, v, status.phase.unwrap_or(SessionPhase::Scheduled), now, recheck),
        // Not retried in a loop: a change to the session or its points triggers a reconcile.
        Err(_) => Action::await_change(),
    })
}

/// When to look again: the next timeline boundary, and the worker poll while media flows (sooner
/// when an unready worker's grace ends first).
fn next_action(
    ctx: &Context,
    valid: &ValidSession,
    phase: SessionPhase,
    now: Timestamp,
    recheck: Option<Duration>,
) -> Action {
    use SessionPhase::*;
    let poll = matches!(phase, Provisioning | Rehearsal | Ready | NotReady | Live)
        .then_some(ctx.config.status_poll)
        .map(|p| recheck.map_or(p, |r| p.min(r)));
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
    plan: &Plan,
) -> Result<Provisioned, ProvisionError> {
    let epoch = plan.token_epoch;
    let ns = session.namespace().unwrap_or_default();
    let sname = session.name_any();
    let pool = ctx
        .caches
        .pools
        .get(&ObjectRef::new(&session.spec.worker_pool).within(&ns))
        .map(|p| (*p).clone())
        .ok_or_else(|| ProvisionError::PoolMissing(session.spec.worker_pool.clone()))?;
    let keys = ensure_signing_keys(ctx, &pool).await.map_err(Error::SigningKey)?;

    // Pod readiness is stamped by the kubelet's clock, whatever clock drives the timeline.
    let wall = Timestamp::now();
    let (alloc, stale) = allocation::allocate(ctx, session, &pool, epoch, wall).await.map_err(Error::from)?;
    let had = session.status.as_ref().and_then(|s| s.worker.as_ref()).and_then(|w| w.pod.clone());
    let replaced = match (&alloc, had) {
        (Allocation::Existing(_), _) | (_, None) => None,
        (_, Some(old)) => Some(Replaced { old, why: stale.map_or("Gone", allocation::Stale::as_str) }),
    };
    let allocated = match &alloc {
        Allocation::TookIdle(_) => Some(Allocated::TookIdle { pool: pool.name_any() }),
        Allocation::Created(_) => Some(Allocated::Created { pool: pool.name_any() }),
        Allocation::Existing(_) => None,
    };
    let pod = alloc.pod().clone();
    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let c = &ctx.caches;
    let svc = signaling_service::build(session);
    let svc = apply::apply_known(&services, &svc, known(&c.services, &ns, &svc.name_any()).as_ref(), &ctx.applied)
        .await
        .map_err(Error::from)?;
    let tokens = join_tokens::build(session, valid, &keys, epoch, &plan.link_generations).map_err(Error::from)?;
    let tokens =
        apply::apply_known(&secrets, &tokens, known(&c.secrets, &ns, &tokens.name_any()).as_ref(), &ctx.applied)
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
    keep_secrets.insert(tokens);

    // Orphans (a replaced worker, its certificate copy) from the caches: one the cache does not
    // show yet goes on a later pass.
    let one = |n: String| BTreeSet::from([n]);
    let my_pods: Vec<_> =
        ctx.pods_labelled(&ns, labels::SESSION, &sname).into_iter().map(|p| p.metadata.clone()).collect();
    apply::delete_unkept(&Api::<Pod>::namespaced(ctx.client.clone(), &ns), &my_pods, &one(pod.name_any()))
        .await
        .map_err(Error::from)?;
    apply::delete_unkept(&services, &caches::of_session(&c.services, &ns, &sname), &one(svc.clone()))
        .await
        .map_err(Error::from)?;
    apply::delete_unkept(&secrets, &caches::of_session(&c.secrets, &ns, &sname), &keep_secrets)
        .await
        .map_err(Error::from)?;
    // Only signaling and the pool's RTC ports reach the session's worker.
    let policies = Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns);
    let ranges = network_policy::PortRanges::for_minor(ctx.server_minor().await.map_err(Error::ServerVersion)?);
    let policy = network_policy::build(session, &pool, crate::build::worker_ports::of_pod(&pod), ranges);
    let policy =
        apply::apply_known(&policies, &policy, known(&c.policies, &ns, &policy.name_any()).as_ref(), &ctx.applied)
            .await
            .map_err(Error::from)?;
    apply::delete_unkept(&policies, &caches::of_session(&c.policies, &ns, &sname), &one(policy))
        .await
        .map_err(Error::from)?;
    let monitoring = monitoring::apply(ctx, session).await;
    if let Err(e) = &monitoring {
        tracing::warn!(error = %e, category = e.category(), "failed to apply the session's monitoring");
    }

    let links = link_generations::raised(&plan.link_generations);
    // Admin tokens are checked against the worker's wall clock, whatever clock drives the
    // timeline: signed at a simulated time ahead, they would not be valid yet.
    let (report, worker_message, address) =
        observe_worker(ctx, session, valid, (&pool, &pod), &keys, wall, (epoch, &links)).await;
    let pod_name = pod.name_any();
    Ok(Provisioned {
        signaling_url: signaling_service::url(session),
        health: WorkerHealth::of(&pod),
        certificate: certificate::condition(&certificate, report.as_ref(), &pod_name),
        monitoring: monitoring_condition(&monitoring),
        pod: pod_name,
        worker_message,
        address,
        report,
        allocated,
        replaced,
        recheck: failover::recheck_in(&pod, wall),
        relay_without_turn: relay_without_turn(valid, &pool),
    })
}

/// The points that must relay (`network.turnRequired`) when the pool offers no TURN.
fn relay_without_turn(valid: &ValidSession, pool: &MediaWorkerPool) -> Vec<String> {
    if pool.spec.turn.is_some() {
        return Vec::new();
    }
    valid.participants.iter().filter(|p| p.media.relay).map(|p| p.name.clone()).collect()
}

/// What the session's worker announces, once known: the address, where it came from, and the
/// node and RTC range of the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerAddress {
    pub node: Option<String>,
    pub announced: Option<node_address::Announced>,
    pub rtc_ports: Option<crate::build::worker_ports::PortRange>,
}

/// The address `pod` of `pool` announces: for a hostNetwork pool without `announcedAddress`,
/// its node's (read now: the pod is scheduled), otherwise known without the node.
async fn worker_address(ctx: &Context, pool: &MediaWorkerPool, pod: &Pod) -> Result<WorkerAddress, String> {
    use k8s_openapi::api::core::v1::Node;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let rtc_ports = crate::build::worker_ports::of_pod(pod).rtc;
    if !node_address::from_node(&pool.spec) {
        let announced = node_address::choose(&pool.spec, &Node::default()).ok().flatten();
        return Ok(WorkerAddress { node: node_name, announced, rtc_ports });
    }
    let pod_name = pod.name_any();
    let Some(name) = node_name else { return Err(format!("Worker pod {pod_name} is not scheduled on a node yet.")) };
    let node = Api::<Node>::all(ctx.client.clone())
        .get(&name)
        .await
        .map_err(|e| format!("Worker pod {pod_name} is ready but its node {name} could not be read: {e}"))?;
    let announced = node_address::choose(&pool.spec, &node)
        .map_err(|e| format!("Worker pod {pod_name} is ready but has no address to announce: {e}"))?;
    Ok(WorkerAddress { node: Some(name), announced, rtc_ports })
}

/// Binds a warm worker to the session (idempotent), tells it the session's points (and, for a
/// hostNetwork pool, its node's address), and reads its per-point status.
#[tracing::instrument(skip_all)]
async fn observe_worker(
    ctx: &Context,
    session: &ReceptionSession,
    valid: &ValidSession,
    (pool, pod): (&MediaWorkerPool, &Pod),
    keys: &SigningKeys,
    wall: Timestamp,
    (epoch, link_generations): (u64, &BTreeMap<String, u32>),
) -> (Option<WorkerReport>, String, Option<WorkerAddress>) {
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
        return (None, format!("Worker pod {} has no IP yet.", pod.name_any()), None);
    };
    if !pod_ready(pod) {
        return (None, format!("Worker pod {} is not ready yet.", pod.name_any()), None);
    }
    let address = match worker_address(ctx, pool, pod).await {
        Ok(a) => a,
        Err(message) => return (None, message, None),
    };
    let (report, message) =
        bind_and_report(ctx, session, valid, pod, &ip, &address, keys, wall, (epoch, link_generations)).await;
    (report, message, Some(address))
}

#[allow(clippy::too_many_arguments)]
async fn bind_and_report(
    ctx: &Context,
    session: &ReceptionSession,
    valid: &ValidSession,
    pod: &Pod,
    ip: &str,
    address: &WorkerAddress,
    keys: &SigningKeys,
    wall: Timestamp,
    (epoch, link_generations): (u64, &BTreeMap<String, u32>),
) -> (Option<WorkerReport>, String) {
    let base = WorkerClient::base_url(ip, crate::build::worker_ports::of_pod(pod).admin);
    let id = session_id(&session.namespace().unwrap_or_default(), &session.name_any());
    let points: BTreeSet<String> = valid.participants.iter().map(|p| p.name.clone()).collect();
    let mut binding = match worker_client::binding(&id, &session.spec.title, epoch, &points, link_generations) {
        Ok(b) => b,
        Err(e) => return (None, format!("The session's names cannot be sent to worker pod {}: {e}", pod.name_any())),
    };
    // The pool's own address reached the worker as an argument; a node's comes with the call.
    binding.announced_address =
        address.announced.as_ref().filter(|a| a.source != node_address::Source::Pool).map(|a| a.address.clone());
    let pod_name = pod.name_any();
    let admin = Admin { keys, now: wall, pod: &pod_name };
    let bind = || ctx.workers.allocate(&base, &admin, &binding);
    let unbound = |e| format!("Worker pod {} is ready but could not be bound to the session: {e}", pod.name_any());
    // A pod started bound knows its session, but not a raised epoch nor its node's address: tell
    // it, so older links are refused (the worker only ever raises its epoch, so repeating this is
    // harmless) and joins are taken.
    if !allocation::started_bound(pod) || epoch > 0 || binding.announced_address.is_some() {
        if let Err(e) = bind().await {
            return (None, unbound(e));
        }
    }
    let unavailable = |e| format!("Worker pod {} is ready but its status is unavailable: {e}", pod.name_any());
    let mut report = match ctx.workers.status(&base, &admin).await {
        Ok(r) => r,
        Err(e) => return (None, unavailable(e)),
    };
    // A point taken out of the session (deleted, or edited out), or a rotated link, must lose its
    // way in now, not when the session ends: the old link is still validly signed, so the worker
    // has to be told.
    let told = |r: &WorkerReport| {
        binding.announced_address.as_ref().is_none_or(|a| r.announced.as_ref().is_some_and(|r| &r.address == a))
    };
    if report.allowed_points != binding.points || report.link_generations != binding.link_generations || !told(&report)
    {
        if let Err(e) = bind().await {
            return (None, unbound(e));
        }
        report = match ctx.workers.status(&base, &admin).await {
            Ok(r) => r,
            Err(e) => return (None, unavailable(e)),
        };
    }
    (Some(report), format!("Worker pod {} is ready and serving the session.", pod.name_any()))
}

/// Deletes everything the session made: worker pods, Services, cert-manager Certificates, Secrets
/// (join tokens, certificates) and the monitoring children (dashboard ConfigMap, PodMonitor,
/// PrometheusRule).
#[tracing::instrument(skip_all)]
async fn release(session: &ReceptionSession, ctx: &Context, reads: Reads) -> Result<(), Error> {
    let ns = session.namespace().unwrap_or_default();
    let sname = session.name_any();
    let sel = labels::session_selector(&sname);
    let none = BTreeSet::new();
    let (pods, services) =
        (Api::<Pod>::namespaced(ctx.client.clone(), &ns), Api::<Service>::namespaced(ctx.client.clone(), &ns));
    let (secrets, policies) =
        (Api::<Secret>::namespaced(ctx.client.clone(), &ns), Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns));
    match reads {
        Reads::Fresh => {
            apply::delete_orphans(&pods, &sel, &none).await?;
            certificate::release(ctx, &ns, &sel).await?;
            apply::delete_orphans(&services, &sel, &none).await?;
            apply::delete_orphans(&secrets, &sel, &none).await?;
            apply::delete_orphans(&policies, &sel, &none).await?;
        }
        Reads::Cached => {
            let c = &ctx.caches;
            let my_pods: Vec<_> =
                ctx.pods_labelled(&ns, labels::SESSION, &sname).into_iter().map(|p| p.metadata.clone()).collect();
            apply::delete_unkept(&pods, &my_pods, &none).await?;
            apply::delete_unkept(&services, &caches::of_session(&c.services, &ns, &sname), &none).await?;
            apply::delete_unkept(&secrets, &caches::of_session(&c.secrets, &ns, &sname), &none).await?;
            apply::delete_unkept(&policies, &caches::of_session(&c.policies, &ns, &sname), &none).await?;
        }
    }
    monitoring::release(ctx, &ns, &sname, reads).await?;
    ctx.secrets.forget(&ns, &tls::secret_name(&sname));
    Ok(())
}

/// Where giving a session's children back reads them from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// From the API server: the first release, and a deleted session's clean-up, must not miss a
    /// child the caches do not show yet.
    Fresh,
    /// From the caches: a session that already gave everything back, reconciled again.
    Cached,
}

async fn cleanup(session: &ReceptionSession, ctx: &Context) -> Result<Action, Error> {
    release(session, ctx, Reads::Fresh).await?;
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
    session.status.as_ref().is_some_and(|s| condition::is_true(&s.conditions, type_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finalizer_write_refused_by_the_write_gate_is_still_seen_as_a_refusal() {
        let refused = crate::write_gate::Error::NotLeading { verb: "patch", resource: "receptionsessions".into() };
        let err = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(kube::Error::Service(
            Box::new(refused),
        ))));
        assert!(crate::write_gate::refusal(&err).is_some(), "{err}");
        assert_eq!(err.category(), "finalizer");
    }
}
