//! The node emulation: this process plays the kubelet of a node whose pods live on loopback.
//!
//! ```text
//!  pods (watch) ──► Pending, no podIP?  ──► claim: status patch (conditional on resourceVersion)
//!                                             podIP 127.<block>.x.y, hostIP 127.0.0.1
//!                   │                        │
//!                   │           Simulated ───┴─ Processes + container `media-worker`
//!                   │           Running+Ready    └► runner: volumes, env, $(VAR) → real process,
//!                   │                                 readiness probe → Ready True/False,
//!                   │                                 every `volume_sync_interval`: re-fetch the
//!                   │                                 volumes' Secrets/ConfigMaps → rewrite changed
//!                   │                                 volumes (a `..data` swap; env stays as started)
//!                   └► deleted / deletionTimestamp ──► SIGTERM, SIGKILL after the grace bound;
//!                                                      delete with grace 0
//! ```
//!
//! Volumes live in `pods/<namespace>/<pod>/volumes/<volume>/`. Secret and configMap volumes have
//! kubelet's AtomicWriter layout (see [`atomic_writer`]): `<key> -> ..data/<key>` and
//! `..data -> ..<time>/`, so a process keeps reading `<mount>/tls.crt` across updates and never
//! sees half a file. As with kubelet, a missing optional source gives an empty directory (and
//! empties it again when deleted later), a required one that disappears while the process runs
//! leaves the last content, and environment variables keep the values they started with. Unlike
//! kubelet, a `subPath` mount sees updates too, and a restart re-fetches every source (a required
//! one gone by then fails the start with `CreateContainerConfigError`).
//!
//! Pods are never bound (`spec.nodeName` stays empty), so the API server deletes them at once.
//! PodIPs are unique within the process (see [`ips`]) and never reused.

mod atomic_writer;
mod env;
mod ips;
mod probe;
mod runner;
mod status;
#[cfg(test)]
mod tests;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::process::{make_temp_dir, signal, ProcessError, Reaper};
use runner::{RunnerConfig, RunnerHandle};
pub use status::HOST_IP;

/// The container the node starts as a real process in [`NodeMode::Processes`].
pub const WORKER_CONTAINER: &str = "media-worker";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("failed to prepare the node's directory")]
    Dir(#[from] ProcessError),
}

/// What the node does with the pods it takes.
#[derive(Debug, Clone)]
pub enum NodeMode {
    /// Every container runs and is ready at once; nothing is started.
    Simulated,
    /// Containers named `media-worker` run `media_worker_bin` for real; others are simulated.
    Processes { media_worker_bin: PathBuf },
}

#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub mode: NodeMode,
    /// Only pods of this namespace; `None` for all namespaces.
    pub namespace: Option<String>,
    /// Where pod directories and logs go; `None` for a fresh temp dir, removed on drop.
    pub dir: Option<PathBuf>,
    /// Readiness probes run this often (faster than a real `periodSeconds`, to keep tests quick).
    pub probe_interval: Duration,
    /// Upper bound on a pod's `terminationGracePeriodSeconds` before SIGKILL.
    pub max_grace: Duration,
    /// Second octet of pod IPs (`127.<block>.x.y`); give concurrent harness processes different
    /// blocks so their pods cannot collide.
    pub ip_block: u8,
    /// While a process runs, its pod's secret and configMap volumes are re-synced this often: a
    /// Secret created, changed or (if optional) deleted shows up in the files within about this
    /// long. Kubelet's period is about a minute (`syncFrequency` plus its cache TTL); the default
    /// here is 1 s so tests of certificate rotation stay quick. `Duration::ZERO` turns it off.
    pub volume_sync_interval: Duration,
}

impl NodeOptions {
    pub fn new(mode: NodeMode) -> Self {
        Self {
            mode,
            namespace: None,
            dir: None,
            probe_interval: Duration::from_millis(200),
            max_grace: Duration::from_secs(10),
            ip_block: 0,
            volume_sync_interval: Duration::from_secs(1),
        }
    }

    /// Only pods of `namespace`.
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// Re-syncs secret and configMap volumes every `interval` (see
    /// [`NodeOptions::volume_sync_interval`]).
    pub fn with_volume_sync_interval(mut self, interval: Duration) -> Self {
        self.volume_sync_interval = interval;
        self
    }
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self::new(NodeMode::Simulated)
    }
}

/// A pod this node has taken.
struct Taken {
    namespace: String,
    name: String,
    ip: Ipv4Addr,
    grace: Duration,
    runner: Option<RunnerHandle>,
    deleting: bool,
}

struct Shared {
    client: Client,
    options: NodeOptions,
    dir: PathBuf,
    reaper: Arc<Reaper>,
    /// Keyed by pod UID.
    pods: Mutex<HashMap<String, Taken>>,
}

impl Shared {
    fn pods(&self) -> MutexGuard<'_, HashMap<String, Taken>> {
        self.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running node emulation. Dropping it stops the watch and kills every process it started;
/// [`Node::shutdown`] does the same gracefully and waits for it.
pub struct Node {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    remove_dir: bool,
}

impl Node {
    /// Starts watching pods with `client` (the node's tasks run on the caller's runtime).
    pub fn start(client: Client, options: NodeOptions) -> Result<Node, NodeError> {
        let (dir, remove_dir) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| ProcessError::Io { path: dir.clone(), source })?;
                (dir.clone(), false)
            }
            None => (make_temp_dir("tiepdan-node")?, std::env::var_os("TIEPDAN_KEEP_CLUSTER").is_none()),
        };
        let reaper = Arc::new(Reaper::arm(&dir, remove_dir)?);
        let shared = Arc::new(Shared { client, options, dir, reaper, pods: Mutex::new(HashMap::new()) });
        let task = tokio::spawn(watch(shared.clone()));
        Ok(Node { shared, task, remove_dir })
    }

    /// The directory holding `pods/<namespace>/<pod>/` (volumes, `<container>.log`).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The working directory of a pod's processes (its volumes are under `volumes/`).
    pub fn pod_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        pod_dir(&self.shared.dir, namespace, pod)
    }

    /// Everything the pod's `media-worker` process wrote (all its starts), for debugging.
    pub fn logs(&self, namespace: &str, pod: &str) -> std::io::Result<String> {
        let path = runner::log_path(&self.pod_dir(namespace, pod), WORKER_CONTAINER);
        Ok(String::from_utf8_lossy(&std::fs::read(path)?).into_owned())
    }

    /// The IP this node gave the pod, if it took it and it still exists.
    pub fn pod_ip(&self, namespace: &str, pod: &str) -> Option<Ipv4Addr> {
        self.find(namespace, pod, |t| Some(t.ip))
    }

    /// The PID of the pod's running `media-worker` process.
    pub fn pid(&self, namespace: &str, pod: &str) -> Option<u32> {
        self.find(namespace, pod, |t| t.runner.as_ref().and_then(RunnerHandle::pid))
    }

    fn find<T>(&self, namespace: &str, pod: &str, f: impl Fn(&Taken) -> Option<T>) -> Option<T> {
        let pods = self.shared.pods();
        pods.values().find(|t| t.namespace == namespace && t.name == pod).and_then(f)
    }

    /// Stops watching, stops every process (SIGTERM, then SIGKILL after its grace) and waits.
    pub async fn shutdown(self) {
        self.task.abort();
        let runners: Vec<_> =
            self.shared.pods().values_mut().filter_map(|t| t.runner.take().map(|r| r.stop(t.grace))).collect();
        for runner in runners {
            let _ = runner.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
        for taken in self.shared.pods().values() {
            if let Some(runner) = &taken.runner {
                if let Some(pid) = runner.pid() {
                    signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
                runner.abort();
            }
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.shared.dir);
        }
    }
}

fn pod_dir(root: &Path, namespace: &str, pod: &str) -> PathBuf {
    root.join("pods").join(namespace).join(pod)
}

async fn watch(shared: Arc<Shared>) {
    let api: Api<Pod> = match &shared.options.namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let mut events = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    // UIDs seen during a re-list; pods we hold that are missing from it were deleted meanwhile.
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => relisted = Some(HashSet::new()),
            Ok(Event::InitApply(pod)) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(pod.uid().unwrap_or_default());
                }
                apply(&shared, pod).await;
            }
            Ok(Event::Apply(pod)) => apply(&shared, pod).await,
            Ok(Event::Delete(pod)) => gone(&shared, &pod.uid().unwrap_or_default()),
            Ok(Event::InitDone) => {
                let seen = relisted.take().unwrap_or_default();
                let held: Vec<String> = shared.pods().keys().cloned().collect();
                for uid in held.iter().filter(|uid| !seen.contains(*uid)) {
                    gone(&shared, uid);
                }
            }
            Err(e) => tracing::warn!(error = %e, "node emulation: pod watch failed; retrying"),
        }
    }
}

/// A pod was added or changed.
async fn apply(shared: &Arc<Shared>, pod: Pod) {
    let uid = pod.uid().unwrap_or_default();
    let held = shared.pods().contains_key(&uid);
    if held {
        if pod.metadata.deletion_timestamp.is_some() {
            finish_deletion(shared, &uid, pod);
        }
        return;
    }
    let status = pod.status.as_ref();
    let unclaimed = status.is_none_or(|s| s.pod_ip.is_none() && matches!(s.phase.as_deref(), None | Some("Pending")));
    if unclaimed && pod.metadata.deletion_timestamp.is_none() {
        admit(shared, pod).await;
    }
}

/// Takes an unclaimed pod: reports it on a fresh IP, then runs or simulates its containers.
async fn admit(shared: &Arc<Shared>, pod: Pod) {
    let (Some(namespace), Some(name), Some(uid)) = (pod.namespace(), pod.metadata.name.clone(), pod.uid()) else {
        return;
    };
    let Some(ip) = ips::allocate(shared.options.ip_block) else {
        tracing::error!("node emulation: out of pod IPs");
        return;
    };
    let start_time = Timestamp::now();
    let worker = match &shared.options.mode {
        NodeMode::Processes { media_worker_bin } => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .find(|c| c.name == WORKER_CONTAINER)
            .cloned()
            .map(|c| (c, media_worker_bin.clone())),
        NodeMode::Simulated => None,
    };
    let state = if worker.is_some() {
        status::ContainerState::Waiting { reason: "ContainerCreating".into(), message: None }
    } else {
        status::ContainerState::Running { started_at: start_time, ready: true }
    };
    let views = status::ContainerView::all(&pod, &state);
    let claim = status::status_patch(ip, start_time, &views, true, pod.resource_version().as_deref());
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&claim)).await {
        // 409: changed meanwhile (or claimed by another node); the watch brings the new version.
        tracing::debug!(pod = %name, namespace = %namespace, error = %e, "claim not applied");
        return;
    }
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .map_or(shared.options.max_grace, |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
        .min(shared.options.max_grace);
    let runner = worker.map(|(container, program)| {
        let pod_dir = pod_dir(&shared.dir, &namespace, &name);
        RunnerHandle::spawn(RunnerConfig {
            client: shared.client.clone(),
            pod: pod.clone(),
            container,
            ip,
            start_time,
            pod_dir,
            program,
            probe_interval: shared.options.probe_interval,
            volume_sync_interval: shared.options.volume_sync_interval,
            reaper: shared.reaper.clone(),
        })
    });
    shared.pods().insert(uid, Taken { namespace, name, ip, grace, runner, deleting: false });
}

/// The pod is gone from the API: stop its process.
fn gone(shared: &Arc<Shared>, uid: &str) {
    if let Some(taken) = shared.pods().remove(uid) {
        if let Some(runner) = taken.runner {
            drop(runner.stop(taken.grace));
        }
    }
}

/// The pod has a deletionTimestamp: stop its process, then delete it for good, as a kubelet does.
fn finish_deletion(shared: &Arc<Shared>, uid: &str, pod: Pod) {
    let (runner, grace) = {
        let mut pods = shared.pods();
        let Some(taken) = pods.get_mut(uid).filter(|t| !t.deleting) else {
            return;
        };
        taken.deleting = true;
        (taken.runner.take(), taken.grace)
    };
    let client = shared.client.clone();
    let uid = uid.to_owned();
    tokio::spawn(async move {
        if let Some(runner) = runner {
            let _ = runner.stop(grace).await;
        }
        let api: Api<Pod> = Api::namespaced(client, &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&pod.name_any(), &params).await {
            tracing::debug!(pod = %pod.name_any(), error = %e, "final delete not applied");
        }
    });
}
