//! Agones-style allocation of a worker pod to a session: take an idle warm pod by relabelling it
//! (a compare-and-swap on its resourceVersion, so two sessions never take the same pod), or
//! create a new pod bound to the session when none is idle.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use super::failover::{self, NodeHealth};
use super::pods::pod_ready;
use super::Context;
use crate::api::{MediaWorkerPool, ReceptionSession};
use crate::apply;
use crate::build::{labels, owner_ref, worker_pod, worker_ports};

/// Errors allocating a worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to list worker pods")]
    List(#[source] kube::Error),
    #[error("failed to read node {0} of the session's worker")]
    Node(String, #[source] kube::Error),
    #[error("failed to label pod {0} as allocated")]
    Label(String, #[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error("pool {pool}: no ports left for the session's worker")]
    Ports { pool: String, source: worker_ports::Error },
}

/// How the session got its worker.
#[derive(Clone, Debug)]
pub enum Allocation {
    /// The session already had this pod.
    Existing(Pod),
    /// An idle warm pod was taken.
    TookIdle(Pod),
    /// No idle pod was ready: a new one was created for the session.
    Created(Pod),
}

impl Allocation {
    pub fn pod(&self) -> &Pod {
        match self {
            Allocation::Existing(p) | Allocation::TookIdle(p) | Allocation::Created(p) => p,
        }
    }
}

/// The annotation recording which token epoch a worker was allocated for. A worker of an older
/// epoch holds verification state and connections from before a reschedule, so it is replaced.
pub const EPOCH_ANNOTATION: &str = "tiepdan.io/token-epoch";

/// Why a pod labelled for a session can no longer serve it, if it can't.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Being deleted.
    Terminating,
    /// Failed or ended (an evicted pod is Failed): it will never serve again.
    Ended,
    /// Its node is NotReady, Unknown or gone (see [`failover::NodeHealth`]).
    NodeLost,
    /// It served, then stayed unready longer than [`failover::UNREADY_GRACE`].
    Unready,
    /// Taken from a pool the session no longer names: its tokens are signed with another key.
    OtherPool,
    /// Allocated for an older token epoch (the session was rescheduled).
    OldEpoch,
}

impl Stale {
    pub fn as_str(self) -> &'static str {
        match self {
            Stale::Terminating => "Terminating",
            Stale::Ended => "Ended",
            Stale::NodeLost => "NodeLost",
            Stale::Unready => "Unready",
            Stale::OtherPool => "OtherPool",
            Stale::OldEpoch => "OldEpoch",
        }
    }
}

/// Whether `pod` can still serve a session that uses `pool` at token `epoch`, at `now` (real
/// time) with its node as observed. Faults come before configuration changes. Pure.
pub fn stale(pod: &Pod, pool: &str, epoch: u64, now: Timestamp, node: NodeHealth) -> Option<Stale> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(Stale::Terminating);
    }
    if pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Failed" || p == "Succeeded") {
        return Some(Stale::Ended);
    }
    if node.lost() {
        return Some(Stale::NodeLost);
    }
    if failover::unready_too_long(pod, now) {
        return Some(Stale::Unready);
    }
    if pod.labels().get(labels::POOL).is_some_and(|p| p != pool) {
        return Some(Stale::OtherPool);
    }
    let pod_epoch = pod.annotations().get(EPOCH_ANNOTATION).and_then(|e| e.parse::<u64>().ok()).unwrap_or(0);
    (pod_epoch != epoch).then_some(Stale::OldEpoch)
}

/// Finds or allocates the worker pod of `session` from `pool`, for token `epoch`, at `now` (real
/// time: pod readiness is stamped by the kubelet's clock, whatever clock drives the timeline).
/// Pods of the session that are [`stale`] are passed over (the caller deletes them as orphans);
/// when a new worker is allocated, why the session's pod could not go on (if it still exists)
/// comes back too.
/// Pods are read from the operator's pod cache with its own recent writes on top (see
/// [`super::pod_view`]); the pod named in the session's status is read from the API server when
/// the cache does not have it as the session's yet, so a lagging cache never makes a session
/// take a second worker. [`Context::pod_ports`] is held while a new pod's ports are chosen and it
/// is created.
pub async fn allocate(
    ctx: &Context,
    session: &ReceptionSession,
    pool: &MediaWorkerPool,
    epoch: u64,
    now: Timestamp,
) -> Result<(Allocation, Option<Stale>), Error> {
    let client = &ctx.client;
    let ns = session.namespace().unwrap_or_default();
    let sname = session.name_any();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let is_worker = |p: &Pod| p.labels().get(labels::COMPONENT).is_some_and(|c| c == labels::COMPONENT_WORKER);
    let mut mine: Vec<Arc<Pod>> =
        ctx.pods_labelled(&ns, labels::SESSION, &sname).into_iter().filter(|p| is_worker(p)).collect();
    let recorded = session.status.as_ref().and_then(|s| s.worker.as_ref()).and_then(|w| w.pod.clone());
    if let Some(name) = recorded.filter(|n| !mine.iter().any(|p| &p.name_any() == n)) {
        let labelled_mine = |p: &Pod| p.labels().get(labels::SESSION).is_some_and(|s| s == &sname);
        if let Some(p) = pods.get_opt(&name).await.map_err(Error::List)?.filter(labelled_mine) {
            mine.push(Arc::new(p));
        }
    }
    let pool_name = pool.name_any();
    let mut judged = Vec::with_capacity(mine.len());
    for p in mine {
        let mut why = stale(&p, &pool_name, epoch, now, NodeHealth::Unchecked);
        if why.is_none() {
            why = stale(&p, &pool_name, epoch, now, node_health(client, &p).await?);
        }
        judged.push((why, p));
    }
    let replacing = judged.iter().find_map(|(why, _)| *why);
    if let Some((_, p)) = judged.into_iter().find(|(why, _)| why.is_none()) {
        return Ok((Allocation::Existing(Arc::unwrap_or_clone(p)), None));
    }

    let is_idle = |p: &Pod| p.labels().get(labels::WORKER_STATE).is_some_and(|s| s == labels::STATE_IDLE);
    let mut idle: Vec<Arc<Pod>> = ctx
        .pods_labelled(&ns, labels::POOL, &pool_name)
        .into_iter()
        .filter(|p| is_worker(p) && is_idle(p))
        // Only Ready pods are taken (below), whose node is not known to be lost.
        .filter(|p| stale(p, &pool_name, 0, now, NodeHealth::Unchecked).is_none())
        .collect();
    // Only Ready pods, as in Agones: a warming pod may never come up (a bad image, a port taken),
    // and a session bound to it would wait on it. Without one, the session gets its own pod below.
    idle.retain(|p| pod_ready(p));
    // Nor an idle pod built from an older pool spec (the pool is rolling it): it may listen on
    // RTC ports the session's NetworkPolicy no longer opens.
    let current = worker_pod::template_hash(pool);
    idle.retain(|p| worker_pod::hash_of(p) == Some(current.as_str()));
    for p in idle {
        let name = p.name_any();
        let patch = json!({
            "metadata": {
                "resourceVersion": p.resource_version(),
                "labels": {
                    labels::WORKER_STATE: labels::STATE_ALLOCATED,
                    labels::SESSION: sname,
                    labels::INSTANCE: sname,
                },
                "annotations": { EPOCH_ANNOTATION: epoch.to_string() },
                "ownerReferences": [owner_ref(session)],
            }
        });
        match pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(pod) => {
                ctx.written_pods.record(&pod);
                return Ok((Allocation::TookIdle(pod), replacing));
            }
            // Somebody else changed the pod first (another session took it, or it is being
            // deleted), or the cache had an older version: try the next one.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
            Err(e) => return Err(Error::Label(name, e)),
        }
    }

    // Ports held by any pod of the pool, terminating and allocated ones too; read and taken under
    // the lock, so that sessions allocated at once never take the same ones.
    // The new pod is recorded (reserved) before the lock is let go, so its ports count for the
    // next choice at once while the API call runs outside the lock: holding it through the
    // create serialized every session's allocation behind one API round trip.
    let pod = {
        let _choosing = ctx.pod_ports.lock().await;
        let all = ctx.pods_labelled(&ns, labels::POOL, &pool_name);
        let ports = worker_ports::allocate(
            &pool.spec,
            &mut worker_ports::held(all.iter().map(|p| &**p).filter(|p| is_worker(p))),
        )
        .map_err(|source| Error::Ports { pool: pool_name.clone(), source })?;
        // A fresh name each time: the pod it replaces may still be terminating under the old name.
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 5).to_lowercase();
        let mut pod = worker_pod::build(pool, &format!("{sname}-worker-{suffix}"), Some(session), ports);
        pod.annotations_mut().insert(EPOCH_ANNOTATION.to_owned(), epoch.to_string());
        ctx.written_pods.record(&pod);
        pod
    };
    match apply::apply(&pods, &pod).await {
        Ok(created) => {
            ctx.written_pods.record(&created);
            Ok((Allocation::Created(created), replacing))
        }
        Err(e) => {
            ctx.written_pods.forget(&pod);
            Err(e.into())
        }
    }
}

/// The node of `pod` as far as it matters: looked up only while the pod is not Ready (see
/// [`failover::node_to_check`]), so a serving session costs no extra read.
async fn node_health(client: &kube::Client, pod: &Pod) -> Result<NodeHealth, Error> {
    let Some(name) = failover::node_to_check(pod) else { return Ok(NodeHealth::Unchecked) };
    let node = Api::<Node>::all(client.clone()).get_opt(name).await.map_err(|e| Error::Node(name.to_owned(), e))?;
    Ok(NodeHealth::of(node.as_ref()))
}

/// Whether `pod` was started bound to its session (so it needs no allocation call).
pub fn started_bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.args.as_ref())
        .is_some_and(|a| a.iter().any(|x| x.starts_with("--session-id=")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn which_pods_can_still_serve_the_session() {
        use NodeHealth::{Gone, NotReady, Ready, Unchecked};
        let now: Timestamp = "2025-06-11T07:01:00Z".parse().unwrap();
        let ok = json!({"metadata": {"name": "w", "labels": {labels::POOL: "default"},
                        "annotations": {EPOCH_ANNOTATION: "1"}}, "status": {"phase": "Running"}});
        let mut terminating = ok.clone();
        terminating["metadata"]["deletionTimestamp"] = json!("2025-06-11T07:00:00Z");
        let mut evicted = ok.clone();
        evicted["status"] = json!({"phase": "Failed", "reason": "Evicted"});
        let mut no_epoch = ok.clone();
        no_epoch["metadata"]["annotations"] = json!({});
        // Started at 07:00, Ready=False since `since`.
        let unready_since = |since: &str| {
            let mut p = ok.clone();
            p["status"] = json!({"phase": "Running", "startTime": "2025-06-11T07:00:00Z",
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": since}]});
            p
        };
        let served_then_unready_6s = unready_since("2025-06-11T07:00:54Z");
        let served_then_unready_4s = unready_since("2025-06-11T07:00:56Z");
        let never_ready = unready_since("2025-06-11T07:00:00Z");
        let mut unready_other_epoch = served_then_unready_6s.clone();
        unready_other_epoch["metadata"]["annotations"] = json!({EPOCH_ANNOTATION: "0"});
        let cases = [
            (ok.clone(), "default", 1, Unchecked, None),
            (ok.clone(), "other", 1, Unchecked, Some(Stale::OtherPool)),
            (ok.clone(), "default", 2, Unchecked, Some(Stale::OldEpoch)),
            (terminating.clone(), "default", 1, Unchecked, Some(Stale::Terminating)),
            (terminating, "default", 1, Gone, Some(Stale::Terminating)),
            (evicted, "default", 1, Unchecked, Some(Stale::Ended)),
            (no_epoch.clone(), "default", 0, Unchecked, None),
            (no_epoch, "default", 1, Unchecked, Some(Stale::OldEpoch)),
            (ok.clone(), "default", 1, Ready, None),
            (ok.clone(), "default", 1, NotReady, Some(Stale::NodeLost)),
            (ok.clone(), "default", 1, Gone, Some(Stale::NodeLost)),
            (never_ready.clone(), "default", 1, NotReady, Some(Stale::NodeLost)),
            (served_then_unready_6s.clone(), "default", 1, Ready, Some(Stale::Unready)),
            (served_then_unready_6s, "default", 1, Gone, Some(Stale::NodeLost)),
            (served_then_unready_4s, "default", 1, Ready, None),
            // A worker that never got Ready keeps its crash diagnosis instead of being churned.
            (never_ready, "default", 1, Ready, None),
            (unready_other_epoch, "default", 1, Ready, Some(Stale::Unready)),
        ];
        for (p, pool, epoch, node, want) in cases {
            assert_eq!(
                stale(&pod(p.clone()), pool, epoch, now, node),
                want,
                "{p} in {pool} at epoch {epoch}, {node:?}"
            );
        }
    }
}
