//! The MediaWorkerPool controller: keeps `spec.replicas` idle warm workers on top of the
//! allocated ones, and the pool's signing key.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use super::{events, Context};
use crate::api::{set_condition, ConditionStatus, MediaWorkerPool, MediaWorkerPoolStatus};
use crate::apply;
use crate::build::{labels, signing_key, worker_pod, worker_ports};
use crate::tokens::generate_signing_key;

/// Errors reconciling a pool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read or create the signing key")]
    SigningKey(#[source] kube::Error),
    #[error("failed to list worker pods")]
    List(#[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error("failed to update pool status")]
    Status(#[source] kube::Error),
    #[error("spec.hostPorts {min}-{max} has no free pair of ports left for another worker")]
    PortsExhausted { min: i32, max: i32 },
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::SigningKey(_) => "signing_key",
            Error::List(_) => "list",
            Error::Apply(_) => "apply",
            Error::Status(_) => "status",
            Error::PortsExhausted { .. } => "ports_exhausted",
        }
    }
}

pub fn controller(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl Stream<Item = Result<(ObjectRef<MediaWorkerPool>, Action), impl std::error::Error>> {
    let pools = ctx.watched::<MediaWorkerPool>();
    let pods = ctx.watched::<Pod>();
    let wc = watcher::Config::default().labels(&format!("{}={}", labels::COMPONENT, labels::COMPONENT_WORKER));
    // Allocated pods are owned by their session, not the pool, so pods map to pools by label.
    Controller::new(pools, watcher::Config::default())
        .watches(pods, wc, |pod: Pod| {
            let pool = pod.labels().get(labels::POOL).cloned()?;
            Some(ObjectRef::new(&pool).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ensures the pool's signing-key Secret exists, creating it once; returns the key.
pub async fn ensure_signing_key(ctx: &Context, pool: &MediaWorkerPool) -> Result<Vec<u8>, kube::Error> {
    let ns = pool.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let name = signing_key::name(&pool.name_any());
    if let Some(s) = api.get_opt(&name).await? {
        if let Some(k) = s.data.as_ref().and_then(|d| d.get(signing_key::KEY)) {
            return Ok(k.0.clone());
        }
    }
    let key = generate_signing_key();
    match api.create(&PostParams::default(), &signing_key::build(pool, &key)).await {
        Ok(_) => Ok(key.into_bytes()),
        // Another reconcile won the race: use its key, never overwrite it.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let s = api.get(&name).await?;
            Ok(s.data.and_then(|d| d.get(signing_key::KEY).map(|k| k.0.clone())).unwrap_or_default())
        }
        Err(e) => Err(e),
    }
}

async fn reconcile(pool: Arc<MediaWorkerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::instrument::reconcile(crate::metrics::KIND_POOL, &*pool, &ctx, reconcile_pool(pool.clone(), ctx.clone()))
        .await
}

async fn reconcile_pool(pool: Arc<MediaWorkerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    ensure_signing_key(&ctx, &pool).await.map_err(Error::SigningKey)?;

    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let list = pods.list(&ListParams::default().labels(&labels::pool_selector(&name))).await.map_err(Error::List)?;
    let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let is_idle = |p: &&Pod| p.labels().get(labels::WORKER_STATE).map(String::as_str) == Some(labels::STATE_IDLE);
    let mut idle: Vec<&Pod> = live.iter().copied().filter(is_idle).collect();
    let allocated = live.len() - idle.len();
    let want = usize::try_from(pool.spec.replicas.max(0)).unwrap_or(0);

    if idle.len() < want {
        let n = want - idle.len();
        let mut held = worker_ports::held(&list.items);
        for _ in 0..n {
            let range = &pool.spec.host_ports;
            let ports = worker_ports::allocate(&pool.spec, &mut held)
                .ok_or(Error::PortsExhausted { min: range.min, max: range.max })?;
            let pod_name = format!("{name}-{}", Alphanumeric.sample_string(&mut rand::rng(), 5).to_lowercase());
            apply::apply(&pods, &worker_pod::build(&pool, &pod_name, None, ports)).await?;
        }
        events::normal(
            &ctx,
            &*pool,
            "ScaledUp",
            "Scale",
            format!("Created {n} idle worker pod(s) to keep {want} idle."),
        )
        .await;
    } else if idle.len() > want {
        // Keep the Ready workers: the ones that are not ready yet serve nobody, so they go first.
        idle.sort_by_key(|p| scale_down_order(p));
        let extra: Vec<String> = idle.iter().skip(want).map(|p| p.name_any()).collect();
        for p in &extra {
            apply::delete(&pods, p).await?;
        }
        events::normal(
            &ctx,
            &*pool,
            "ScaledDown",
            "Scale",
            format!("Deleted {} idle worker pod(s) to keep {want} idle.", extra.len()),
        )
        .await;
    }

    let ready = live.iter().filter(|p| pod_ready(p)).count();
    let available = idle.iter().take(want).filter(|p| pod_ready(p)).count();
    let mut status = pool.status.clone().unwrap_or_default();
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let enough = available >= want;
    set_condition(
        &mut status.conditions,
        "Ready",
        ConditionStatus::from_bool(enough),
        if enough { "WarmWorkersAvailable" } else { "WarmingUp" },
        format!("{available} of {want} idle workers are ready; {allocated} allocated."),
        pool.metadata.generation,
        ctx.clock.now(),
    );
    let status = MediaWorkerPoolStatus {
        // After the scale step above, exactly `want` idle pods exist.
        replicas: to_i32(want + allocated),
        ready_replicas: to_i32(ready),
        allocated: to_i32(allocated),
        available: to_i32(available),
        selector: Some(labels::pool_selector(&name)),
        observed_generation: pool.metadata.generation,
        conditions: status.conditions,
    };
    ctx.metrics.observe_pool(&format!("{ns}/{name}"), &status);
    let patch = json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool", "status": status});
    Api::<MediaWorkerPool>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&name, &PatchParams::apply(labels::MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Status)?;
    Ok(Action::await_change())
}

/// Sort key for idle pods on scale-down: the first `want` are kept, so Ready pods sort first.
fn scale_down_order(p: &Pod) -> u8 {
    u8::from(!pod_ready(p))
}

fn error_policy(_pool: Arc<MediaWorkerPool>, _err: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.config.error_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    #[test]
    fn scale_down_keeps_ready_pods_and_removes_warming_ones() {
        type Case<'a> = (&'a [(&'a str, bool)], usize, &'a [&'a str]);
        let cases: [Case; 3] = [
            (&[("a", true), ("b", true), ("c", false)], 2, &["c"]),
            (&[("c", false), ("a", true)], 1, &["c"]),
            (&[("a", false), ("b", true), ("c", false)], 1, &["a", "c"]),
        ];
        for (pods, want, removed) in cases {
            let mut idle: Vec<Pod> = pods.iter().map(|(n, r)| pod(n, *r)).collect();
            idle.sort_by_key(scale_down_order);
            let gone: Vec<String> = idle.iter().skip(want).map(ResourceExt::name_any).collect();
            assert_eq!(gone, removed.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), "{pods:?} keep {want}");
        }
    }
}
