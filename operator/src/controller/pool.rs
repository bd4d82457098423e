//! The MediaWorkerPool controller: keeps `spec.replicas` idle warm workers on top of the
//! allocated ones, all built from the pool's current template, the pool's token keys (the public
//! ones published for its workers), and a PodDisruptionBudget over its allocated workers.
//!
//! Idle workers built from an older template (their `tiepdan.io/template-hash` differs, e.g.
//! after an edit of `rtcPorts`) are replaced like a Deployment rolls out with `maxSurge: 1,
//! maxUnavailable: 0`: a new pod first, an old one deleted only once enough Ready pods remain.
//! Allocated workers are never touched: they belong to their session.
//!
//! Pools made by an older operator signed tokens with one HS256 key mounted into every worker.
//! Their idle workers roll like after any template change (the template now mounts the public
//! keys instead), and the old key's Secret is deleted once no worker mounts it.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use super::pods::pod_ready;
use super::token_keys::{apply_public_keys, delete_legacy_key, ensure_signing_keys};
use super::{events, Context};
use crate::api::{set_condition, ConditionStatus, MediaWorkerPool, MediaWorkerPoolStatus};
use crate::apply;
use crate::build::{labels, pod_disruption_budget, worker_pod, worker_ports};

/// Errors reconciling a pool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to provide the pool's token keys")]
    TokenKeys(#[from] super::token_keys::Error),
    #[error("failed to list worker pods")]
    List(#[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error("failed to update pool status")]
    Status(#[source] kube::Error),
    #[error(transparent)]
    Ports(#[from] worker_ports::Error),
    #[error("failed to delete idle worker pod {0}")]
    DeleteIdle(String, #[source] kube::Error),
    #[error("failed to read or apply the disruption budget {0}")]
    DisruptionBudget(String, #[source] kube::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::TokenKeys(_) => "token_keys",
            Error::List(_) => "list",
            Error::Apply(_) => "apply",
            Error::Status(_) => "status",
            Error::Ports(_) => "ports_exhausted",
            Error::DeleteIdle(..) => "delete",
            Error::DisruptionBudget(..) => "disruption_budget",
        }
    }
}

impl super::instrument::ReconcileError for Error {
    fn category(&self) -> &'static str {
        Error::category(self)
    }
}

pub fn controller(
    ctx: Arc<Context>,
    pods: super::caches::Trigger<PartialObjectMeta<Pod>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl Stream<Item = super::Outcome<MediaWorkerPool, Error>> {
    let pools = ctx.watched::<MediaWorkerPool>();
    // Allocated pods are owned by their session, not the pool, so pods map to pools by label.
    Controller::new(pools, watcher::Config::default())
        .watches_stream(pods, |pod: PartialObjectMeta<Pod>| {
            let pool = pod.labels().get(labels::POOL).cloned()?;
            Some(ObjectRef::new(&pool).within(&pod.namespace()?))
        })
        .trigger_backoff(super::watch_backoff::WatchBackoff::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
}

async fn reconcile(pool: Arc<MediaWorkerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::instrument::reconcile(crate::metrics::KIND_POOL, &*pool, &ctx, reconcile_pool(pool.clone(), ctx.clone()))
        .await
}

async fn reconcile_pool(pool: Arc<MediaWorkerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let keys = ensure_signing_keys(&ctx, &pool).await?;
    apply_public_keys(&ctx, &pool, &keys).await?;
    ensure_disruption_budget(&ctx, &pool).await?;

    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    // From reading the ports the pool's pods hold to reserving the ones new pods take (see
    // Context::pod_ports and pod_view::Written::record).
    let choosing = ctx.pod_ports.lock().await;
    // From the pod cache, with this process's own recent pod writes on top (see
    // super::pod_view): a pod created a moment ago counts, so it is not created twice.
    ctx.caches.synced().await;
    let is_worker = |p: &Pod| p.labels().get(labels::COMPONENT).is_some_and(|c| c == labels::COMPONENT_WORKER);
    let cached = ctx.pods_labelled(&ns, labels::POOL, &name);
    let all: Vec<&Pod> = cached.iter().map(|p| &**p).filter(|p| is_worker(p)).collect();
    let live: Vec<&Pod> = all.iter().copied().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let is_idle = |p: &&Pod| p.labels().get(labels::WORKER_STATE).map(String::as_str) == Some(labels::STATE_IDLE);
    let idle: Vec<&Pod> = live.iter().copied().filter(is_idle).collect();
    let allocated = live.len() - idle.len();
    let want = usize::try_from(pool.spec.replicas.max(0)).unwrap_or(0);
    let hash = worker_pod::template_hash(&pool);
    let workers: Vec<IdleWorker<'_>> = idle
        .iter()
        .map(|p| IdleWorker {
            name: p.metadata.name.as_deref().unwrap_or_default(),
            current: worker_pod::hash_of(p) == Some(hash.as_str()),
            ready: pod_ready(p),
        })
        .collect();
    let plan = plan(&workers, want);
    // The new pods' ports, chosen and reserved under the lock; terminating pods hold theirs, so
    // the deletions below free none for them.
    let mut held = worker_ports::held(all.iter().copied());
    let mut reserved = Vec::with_capacity(plan.create);
    for _ in 0..plan.create {
        let ports = worker_ports::allocate(&pool.spec, &mut held)?;
        let pod_name = format!("{name}-{}", Alphanumeric.sample_string(&mut rand::rng(), 5).to_lowercase());
        let pod = worker_pod::build(&pool, &pod_name, None, ports);
        ctx.written_pods.record(&pod);
        reserved.push((pod, ports));
    }
    drop(choosing);

    // Terminating pods still have their volumes, so all of them count.
    if delete_legacy_key(&ctx, &pool, &all).await? {
        events::normal(
            &ctx,
            &*pool,
            "LegacyKeyDeleted",
            "Migrate",
            "Deleted the HS256 signing-key Secret: no worker mounts it any more.".to_owned(),
        )
        .await;
    }
    let mut deleted = 0;
    for p in idle.iter().filter(|p| plan.delete.contains(&p.metadata.name.as_deref().unwrap_or_default())) {
        if delete_idle(&pods, p).await? {
            deleted += 1;
        }
    }
    if plan.create > 0 {
        let mut created = Vec::with_capacity(plan.create);
        let mut reserved = reserved.into_iter();
        while let Some((pod, ports)) = reserved.next() {
            match apply::apply(&pods, &pod).await {
                Ok(made) => ctx.written_pods.record(&made),
                Err(e) => {
                    // Give back this reservation and the ones not tried.
                    ctx.written_pods.forget(&pod);
                    reserved.for_each(|(p, _)| ctx.written_pods.forget(&p));
                    return Err(e.into());
                }
            }
            created.push(created_message(&pod.name_any(), &pool.spec, ports));
        }
        events::normal(
            &ctx,
            &*pool,
            "ScaledUp",
            "Scale",
            format!("Created {} idle worker pod(s) to keep {want} idle: {}.", plan.create, created.join("; ")),
        )
        .await;
    }
    if plan.replaced > 0 {
        events::normal(
            &ctx,
            &*pool,
            "RollingOut",
            "Replace",
            format!(
                "Deleted {} idle worker pod(s) built from an older template; new workers have template hash {hash}.",
                plan.replaced
            ),
        )
        .await;
    }
    if deleted > plan.replaced {
        events::normal(
            &ctx,
            &*pool,
            "ScaledDown",
            "Scale",
            format!("Deleted {} idle worker pod(s) to keep {want} idle.", deleted - plan.replaced),
        )
        .await;
    }

    let kept: Vec<&IdleWorker<'_>> = workers.iter().filter(|w| !plan.delete.contains(&w.name)).collect();
    let ready = live.iter().filter(|p| pod_ready(p)).count();
    let available = kept.iter().filter(|w| w.ready).count().min(want);
    let outdated = kept.iter().filter(|w| !w.current).count();
    let mut status = pool.status.clone().unwrap_or_default();
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let enough = available >= want;
    let rollout = if outdated > 0 { format!(" {outdated} idle built from an older template.") } else { String::new() };
    set_condition(
        &mut status.conditions,
        "Ready",
        ConditionStatus::from_bool(enough),
        if enough { "WarmWorkersAvailable" } else { "WarmingUp" },
        format!("{available} of {want} idle workers are ready; {allocated} allocated.{rollout}"),
        pool.metadata.generation,
        ctx.clock.now(),
    );
    let status = MediaWorkerPoolStatus {
        replicas: to_i32(kept.len() + plan.create + allocated),
        ready_replicas: to_i32(ready),
        allocated: to_i32(allocated),
        available: to_i32(available),
        selector: Some(labels::pool_selector(&name)),
        observed_generation: pool.metadata.generation,
        conditions: status.conditions,
    };
    ctx.metrics.observe_pool(&format!("{ns}/{name}"), &status);
    // Written only on change: a pool whose workers did not change costs no API writes.
    if pool.status.as_ref() != Some(&status) {
        let patch = json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool", "status": status});
        Api::<MediaWorkerPool>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::apply(labels::MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::Status)?;
    }
    Ok(Action::await_change())
}

/// How an event names a new worker: its ports, RTC range and what it will announce.
pub fn created_message(pod: &str, spec: &crate::api::MediaWorkerPoolSpec, ports: worker_ports::WorkerPorts) -> String {
    let rtc = worker_ports::rtc_range(spec, ports);
    let announces = match &spec.announced_address {
        Some(a) => format!("announcing {a}"),
        None if spec.host_network => "announcing its node's public address once scheduled".to_owned(),
        None => "announcing its pod IP".to_owned(),
    };
    if spec.host_network {
        format!("{pod} on host ports {}/{} with RTC ports {rtc}, {announces}", ports.admin, ports.signaling)
    } else {
        format!("{pod} with RTC ports {rtc}, {announces}")
    }
}

/// Deletes idle pod `pod`, fenced on the resourceVersion it was listed with: allocation takes an
/// idle pod by relabelling it, so a pod allocated since the list answers 409 and is left alone.
/// Returns whether it was deleted (or already gone).
async fn delete_idle(pods: &Api<Pod>, pod: &Pod) -> Result<bool, Error> {
    let name = pod.name_any();
    let dp = DeleteParams {
        preconditions: Some(Preconditions { resource_version: pod.resource_version(), uid: pod.uid() }),
        ..DeleteParams::background()
    };
    match pods.delete(&name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
        // Changed since the list (allocated, most likely): the change requeues the pool.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(Error::DeleteIdle(name, e)),
    }
}

/// Applies the pool's PodDisruptionBudget when the one in the cluster differs (or is missing).
async fn ensure_disruption_budget(ctx: &Context, pool: &MediaWorkerPool) -> Result<(), Error> {
    let ns = pool.namespace().unwrap_or_default();
    let desired = pod_disruption_budget::build(pool);
    let name = desired.name_any();
    let err = |e| Error::DisruptionBudget(name.clone(), e);
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ns, &pod_disruption_budget::api_resource());
    match api.get_opt(&name).await.map_err(err)? {
        Some(existing) if !pod_disruption_budget::differs(&existing, &desired) => Ok(()),
        _ => {
            api.patch(&name, &PatchParams::apply(labels::MANAGER).force(), &Patch::Apply(&desired))
                .await
                .map_err(err)?;
            Ok(())
        }
    }
}

/// An idle worker as the rollout sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleWorker<'a> {
    pub name: &'a str,
    /// Built from the pool's current template.
    pub current: bool,
    pub ready: bool,
}

/// What to do with a pool's idle workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    /// How many new idle workers to create.
    pub create: usize,
    /// Which idle workers to delete.
    pub delete: Vec<&'a str>,
    /// How many of `delete` were built from an older template.
    pub replaced: usize,
}

/// How many idle workers above `replicas` may exist while old ones are replaced (a Deployment's
/// `maxSurge`). One keeps the extra host ports and node resources small.
pub const MAX_SURGE: usize = 1;

/// Plans one step towards `want` idle workers, all current, without ever having fewer Ready idle
/// workers than now (up to `want`):
/// - out-of-date workers that are not Ready serve nobody: deleted at once;
/// - out-of-date Ready ones are deleted only as far as Ready current ones (and the other old
///   Ready ones kept) still make `want`, or as many Ready as there are now;
/// - current workers above `want` are deleted, not-yet-Ready ones first;
/// - new ones are created up to `want` current, with at most [`MAX_SURGE`] idle workers in total
///   above `want` while old ones remain.
pub fn plan<'a>(idle: &[IdleWorker<'a>], want: usize) -> Plan<'a> {
    let (mut current, old): (Vec<IdleWorker<'a>>, Vec<IdleWorker<'a>>) = idle.iter().partition(|w| w.current);
    let ready_current = current.iter().filter(|w| w.ready).count();
    let ready_old = old.iter().filter(|w| w.ready).count();
    let keep_old = want.min(ready_current + ready_old).saturating_sub(ready_current);
    let mut delete: Vec<&'a str> = old.iter().filter(|w| !w.ready).map(|w| w.name).collect();
    delete.extend(old.iter().filter(|w| w.ready).skip(keep_old).map(|w| w.name));
    let replaced = delete.len();
    // Keep the Ready workers: the ones that are not ready yet serve nobody, so they go first.
    current.sort_by_key(|w| u8::from(!w.ready));
    delete.extend(current.iter().skip(want).map(|w| w.name));
    let current = current.len().min(want);
    let create = (want - current).min((want + MAX_SURGE).saturating_sub(current + keep_old));
    Plan { create, delete, replaced }
}

fn error_policy(_pool: Arc<MediaWorkerPool>, _err: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.config.error_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, current, ready)` rows.
    fn workers<'a>(rows: &[(&'a str, bool, bool)]) -> Vec<IdleWorker<'a>> {
        rows.iter().map(|&(name, current, ready)| IdleWorker { name, current, ready }).collect()
    }

    #[test]
    fn scaling_keeps_ready_workers_and_removes_warming_ones() {
        const C: bool = true;
        type Case<'a> = (&'a [(&'a str, bool, bool)], usize, usize, &'a [&'a str]);
        let cases: [Case; 5] = [
            (&[("a", C, true), ("b", C, true), ("c", C, false)], 2, 0, &["c"]),
            (&[("c", C, false), ("a", C, true)], 1, 0, &["c"]),
            (&[("a", C, false), ("b", C, true), ("c", C, false)], 1, 0, &["a", "c"]),
            (&[("a", C, true)], 3, 2, &[]),
            (&[], 2, 2, &[]),
        ];
        for (rows, want, create, delete) in cases {
            let p = plan(&workers(rows), want);
            assert_eq!((p.create, p.delete.as_slice(), p.replaced), (create, delete, 0), "{rows:?} want {want}");
        }
    }

    #[test]
    fn out_of_date_idle_workers_are_replaced_without_losing_ready_ones() {
        const OLD: bool = false;
        const NEW: bool = true;
        type Case<'a> = (&'a str, &'a [(&'a str, bool, bool)], usize, usize, &'a [&'a str]);
        let cases: [Case; 9] = [
            ("surge one new pod first", &[("o1", OLD, true), ("o2", OLD, true)], 2, 1, &[]),
            ("the surge pod is warming: wait", &[("o1", OLD, true), ("o2", OLD, true), ("n1", NEW, false)], 2, 0, &[]),
            (
                "one new Ready: one old goes, the next new comes",
                &[("o1", OLD, true), ("o2", OLD, true), ("n1", NEW, true)],
                2,
                1,
                &["o2"],
            ),
            ("the last old one goes", &[("o2", OLD, true), ("n1", NEW, true), ("n2", NEW, true)], 2, 0, &["o2"]),
            ("old and not Ready: gone at once", &[("o1", OLD, false), ("o2", OLD, false)], 2, 2, &["o1", "o2"]),
            ("mixed", &[("o1", OLD, false), ("o2", OLD, true)], 2, 2, &["o1"]),
            ("scaled to zero: all old go", &[("o1", OLD, true), ("o2", OLD, true)], 0, 0, &["o1", "o2"]),
            (
                "scaled down while rolling",
                &[("o1", OLD, true), ("o2", OLD, true), ("n1", NEW, true)],
                1,
                0,
                &["o1", "o2"],
            ),
            ("the only Ready one is old", &[("o1", OLD, true)], 1, 1, &[]),
        ];
        for (what, rows, want, create, delete) in cases {
            let p = plan(&workers(rows), want);
            assert_eq!((p.create, p.delete.as_slice()), (create, delete), "{what}");
            let ws = workers(rows);
            let ready_after = ws.iter().filter(|w| w.ready && !p.delete.contains(&w.name)).count();
            let ready_now = ws.iter().filter(|w| w.ready).count();
            assert!(ready_after >= want.min(ready_now), "{what}: fewer Ready idle workers");
            let total_after = ws.len() - p.delete.len() + p.create;
            assert!(total_after <= want + MAX_SURGE || p.create == 0, "{what}: surged too far");
        }
    }

    #[test]
    fn a_rollout_converges_to_current_ready_workers() {
        // Play the controller against a pool where every created pod becomes Ready next round.
        let mut pods: Vec<(String, bool, bool)> = (0..3).map(|i| (format!("old{i}"), false, true)).collect();
        let mut next = 0;
        for round in 0..20 {
            let names: Vec<String> = pods.iter().map(|p| p.0.clone()).collect();
            let ws: Vec<IdleWorker<'_>> = pods
                .iter()
                .zip(&names)
                .map(|((_, current, ready), name)| IdleWorker { name, current: *current, ready: *ready })
                .collect();
            let p = plan(&ws, 3);
            let ready_now = ws.iter().filter(|w| w.ready).count();
            let delete: Vec<String> = p.delete.iter().map(|s| (*s).to_owned()).collect();
            let create = p.create;
            pods.retain(|(n, _, _)| !delete.contains(n));
            assert!(pods.iter().filter(|x| x.2).count() >= ready_now.min(3), "round {round}");
            for x in &mut pods {
                x.2 = true;
            }
            for _ in 0..create {
                pods.push((format!("new{next}"), true, false));
                next += 1;
            }
            if pods.len() == 3 && pods.iter().all(|x| x.1 && x.2) {
                assert!(round <= 8, "took {round} rounds");
                return;
            }
        }
        panic!("did not converge: {pods:?}");
    }
}
