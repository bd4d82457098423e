//! Agones-style allocation of a worker pod to a session: take an idle warm pod by relabelling it
//! (a compare-and-swap on its resourceVersion, so two sessions never take the same pod), or
//! create a new pod bound to the session when none is idle.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::pool::pod_ready;
use crate::api::{MediaWorkerPool, ReceptionSession};
use crate::apply;
use crate::build::{labels, owner_ref, worker_pod, worker_ports};

/// Errors allocating a worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to list worker pods")]
    List(#[source] kube::Error),
    #[error("failed to label pod {0} as allocated")]
    Label(String, #[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error("spec.hostPorts {min}-{max} of pool {pool} has no free pair of ports left for the session's worker")]
    PortsExhausted { pool: String, min: i32, max: i32 },
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

/// Finds or allocates the worker pod of `session` from `pool`.
pub async fn allocate(
    client: &kube::Client,
    session: &ReceptionSession,
    pool: &MediaWorkerPool,
) -> Result<Allocation, Error> {
    let ns = session.namespace().unwrap_or_default();
    let sname = session.name_any();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let mine = pods
        .list(&ListParams::default().labels(&format!(
            "{},{}={}",
            labels::session_selector(&sname),
            labels::COMPONENT,
            labels::COMPONENT_WORKER
        )))
        .await
        .map_err(Error::List)?;
    if let Some(p) = mine.items.into_iter().find(|p| p.metadata.deletion_timestamp.is_none()) {
        return Ok(Allocation::Existing(p));
    }

    let idle_sel =
        format!("{},{}={}", labels::pool_selector(&pool.name_any()), labels::WORKER_STATE, labels::STATE_IDLE);
    let mut idle: Vec<Pod> = pods
        .list(&ListParams::default().labels(&idle_sel))
        .await
        .map_err(Error::List)?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    // Only Ready pods, as in Agones: a warming pod may never come up (a bad image, a port taken),
    // and a session bound to it would wait on it. Without one, the session gets its own pod below.
    idle.retain(pod_ready);
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
                "ownerReferences": [owner_ref(session)],
            }
        });
        match pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(pod) => return Ok(Allocation::TookIdle(pod)),
            // Somebody else changed the pod first (another session took it, or it is being
            // deleted): try the next one.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
            Err(e) => return Err(Error::Label(name, e)),
        }
    }

    // Ports held by any pod of the pool, terminating and allocated ones too.
    let all = pods
        .list(&ListParams::default().labels(&labels::pool_selector(&pool.name_any())))
        .await
        .map_err(Error::List)?;
    let range = &pool.spec.host_ports;
    let ports = worker_ports::allocate(&pool.spec, &mut worker_ports::held(&all.items))
        .ok_or_else(|| Error::PortsExhausted { pool: pool.name_any(), min: range.min, max: range.max })?;
    let pod = worker_pod::build(pool, &format!("{sname}-worker"), Some(session), ports);
    Ok(Allocation::Created(apply::apply(&pods, &pod).await?))
}

/// Whether `pod` was started bound to its session (so it needs no allocation call).
pub fn started_bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.args.as_ref())
        .is_some_and(|a| a.iter().any(|x| x.starts_with("--session-id=")))
}
