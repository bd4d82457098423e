//! One real process per `media-worker` container: prepare (volumes, env, `$(VAR)`), start,
//! probe readiness, keep secret/configMap volumes in sync while it runs, restart per
//! `restartPolicy`, and stop with SIGTERM then SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::env::{self, Sources};
use super::probe::{self, Readiness};
use super::status::{status_patch, ContainerState, ContainerView};
use super::volumes;
use crate::process::{append_log, signal, Reaper};

/// Environment variables of the harness passed on to worker processes (a container would get
/// them from its image); the container's own `env` wins.
const PASSED_THROUGH: &[&str] = &["PATH", "HOME", "RUST_LOG", "RUST_BACKTRACE"];
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Everything a runner needs, fixed when the pod is admitted.
pub struct RunnerConfig {
    pub client: Client,
    pub pod: Pod,
    pub container: Container,
    pub ip: Ipv4Addr,
    pub start_time: Timestamp,
    pub pod_dir: PathBuf,
    pub program: PathBuf,
    pub probe_interval: Duration,
    /// Secret and configMap volumes are re-synced this often while the process runs; zero: never.
    pub volume_sync_interval: Duration,
    pub reaper: Arc<Reaper>,
}

/// Controls a running [`run`] task.
pub struct RunnerHandle {
    stop: Option<oneshot::Sender<Duration>>,
    task: JoinHandle<()>,
    pid: Arc<Mutex<Option<u32>>>,
}

impl RunnerHandle {
    pub fn spawn(config: RunnerConfig) -> Self {
        let (stop, stop_rx) = oneshot::channel();
        let pid = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run(config, stop_rx, pid.clone()));
        Self { stop: Some(stop), task, pid }
    }

    /// The current process's PID, if one is running.
    pub fn pid(&self) -> Option<u32> {
        *self.pid.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the runner to stop its process (SIGTERM, SIGKILL after `grace`); await the handle
    /// to know it is gone.
    pub fn stop(mut self, grace: Duration) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        self.task
    }

    /// Stops at once (the task is dropped, and with it the child, which is SIGKILLed).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// The program, argv and environment derived from the pod.
#[derive(Debug, Clone)]
struct Launch {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

async fn run(config: RunnerConfig, mut stop: oneshot::Receiver<Duration>, pid_slot: Arc<Mutex<Option<u32>>>) {
    let readiness = probe::readiness(&config.container, config.ip);
    let restart_policy = config.pod.spec.as_ref().and_then(|s| s.restart_policy.clone());
    let mut restart_count = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        let child = match prepare(&config).await.and_then(|l| start(&config, &l, restart_count)) {
            Ok(child) => child,
            Err(waiting) => {
                report(&config, restart_count, waiting, true).await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let started_at = Timestamp::now();
        let outcome = supervise(&config, child, &readiness, restart_count, started_at, &mut stop, &pid_slot).await;
        let Some(status) = outcome else { return };
        let exit_code = exit_code(status);
        let restarts = match restart_policy.as_deref() {
            Some("Never") => false,
            Some("OnFailure") => exit_code != 0,
            _ => true,
        };
        let finished_at = Timestamp::now();
        let state = ContainerState::Terminated { exit_code, started_at, finished_at };
        report(&config, restart_count, state, restarts).await;
        if !restarts {
            let _ = stop.await;
            return;
        }
        if finished_at.duration_since(started_at).as_secs() > 10 {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut stop => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        restart_count += 1;
    }
}

/// Runs the process until it exits (`Some(status)`) or the runner is told to stop (`None`).
async fn supervise(
    config: &RunnerConfig,
    mut child: Child,
    readiness: &Option<Readiness>,
    restart_count: i32,
    started_at: Timestamp,
    stop: &mut oneshot::Receiver<Duration>,
    pid_slot: &Mutex<Option<u32>>,
) -> Option<ExitStatus> {
    let pid = child.id();
    set_pid(pid_slot, pid);
    if let Some(pid) = pid {
        config.reaper.track(pid);
    }
    let sync = VolumeSync::start(config);
    let mut ready = readiness.is_none();
    report(config, restart_count, ContainerState::Running { started_at, ready }, true).await;
    let (mut successes, mut failures) = (0, 0);
    let mut tick = tokio::time::interval(config.probe_interval);
    let outcome = loop {
        tokio::select! {
            grace = &mut *stop => {
                terminate(&mut child, grace.unwrap_or_default()).await;
                break None;
            }
            status = child.wait() => break status.ok(),
            _ = tick.tick(), if readiness.is_some() => {
                let Some(r) = readiness else { continue };
                if probe::run(&r.check, r.timeout).await {
                    (successes, failures) = (successes + 1, 0);
                } else {
                    (successes, failures) = (0, failures + 1);
                }
                let now_ready = if ready { failures < r.failure_threshold } else { successes >= r.success_threshold };
                if now_ready != ready {
                    ready = now_ready;
                    report(config, restart_count, ContainerState::Running { started_at, ready }, true).await;
                }
            }
        }
    };
    sync.stop().await;
    set_pid(pid_slot, None);
    if let Some(pid) = pid {
        config.reaper.untrack(pid);
    }
    outcome
}

/// The task that re-syncs the pod's secret/configMap volumes while its process runs.
///
/// A task of its own, so a slow API server never delays noticing a stop or an exit. Dropping it
/// aborts it, so a runner that is itself aborted leaves nothing behind.
struct VolumeSync(Option<JoinHandle<()>>);

impl VolumeSync {
    fn start(config: &RunnerConfig) -> Self {
        let (secrets, config_maps) = volumes::volume_sources(&config.pod);
        if config.volume_sync_interval.is_zero() || (secrets.is_empty() && config_maps.is_empty()) {
            return Self(None);
        }
        let task = sync_volumes(
            config.client.clone(),
            config.pod.clone(),
            config.pod_dir.join("volumes"),
            config.volume_sync_interval,
            (secrets, config_maps),
        );
        Self(Some(tokio::spawn(task)))
    }

    /// Aborts the task and waits until it is gone: the next start's `prepare` writes the same
    /// volumes and must not race a sync still writing.
    async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for VolumeSync {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Every `interval`, fetches the Secrets and ConfigMaps the pod's volumes use and rewrites the
/// volumes whose content changed. Failures are logged (each once, until it changes or clears)
/// and the volume keeps its last content, as kubelet does; they never end the task.
async fn sync_volumes(
    client: Client,
    pod: Pod,
    root: PathBuf,
    interval: Duration,
    (secrets, config_maps): (BTreeSet<String>, BTreeSet<String>),
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    // Last problem logged per volume ("" for the fetch), so a lasting one is not logged each tick.
    let mut problems: BTreeMap<String, String> = BTreeMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once, and `prepare` has just written the volumes.
    tick.tick().await;
    loop {
        tick.tick().await;
        let outcomes = match fetch_sources(&client, &ns, &secrets, &config_maps).await {
            Ok(sources) => {
                problems.remove("");
                let synced = volumes::sync(&pod, &sources, &root);
                synced
                    .into_iter()
                    .map(|(volume, result)| (volume, result.map_err(|e| tiepdan_telemetry::error_chain(&e))))
                    .collect()
            }
            Err(message) => vec![(String::new(), Err(message))],
        };
        for (volume, result) in outcomes {
            match result {
                Ok(changed) => {
                    if changed {
                        tracing::debug!(pod = %name, namespace = %ns, volume = %volume, "volume updated");
                    }
                    if problems.remove(&volume).is_some() {
                        tracing::info!(pod = %name, namespace = %ns, volume = %volume, "volume in sync again");
                    }
                }
                Err(message) => {
                    if problems.get(&volume) != Some(&message) {
                        tracing::warn!(
                            pod = %name, namespace = %ns, volume = %volume, error = %message,
                            "volume sync failed; keeping its last content"
                        );
                        problems.insert(volume, message);
                    }
                }
            }
        }
    }
}

fn set_pid(slot: &Mutex<Option<u32>>, pid: Option<u32>) {
    *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = pid;
}

/// SIGTERM, then SIGKILL once `grace` has passed; reaps the child.
async fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        signal(pid, Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

/// Fetches what the container refers to, writes its volumes and derives argv and env.
async fn prepare(config: &RunnerConfig) -> Result<Launch, ContainerState> {
    let failed =
        |reason: &str, message: String| ContainerState::Waiting { reason: reason.into(), message: Some(message) };
    let ns = config.pod.metadata.namespace.as_deref().unwrap_or("default");
    let (secrets, config_maps) = volumes::referenced(&config.pod, &config.container);
    let sources = fetch_sources(&config.client, ns, &secrets, &config_maps)
        .await
        .map_err(|m| failed("CreateContainerConfigError", m))?;
    let dirs = volumes::materialize(&config.pod, &sources, &config.pod_dir.join("volumes"))
        .map_err(|e| failed("CreateContainerConfigError", e.to_string()))?;
    let mounts = volumes::mounts(&config.container, &dirs);
    let env = env::resolve(&config.container, &config.pod, config.ip, &sources)
        .map_err(|e| failed("CreateContainerConfigError", e.to_string()))?;
    let expand = |s: &String| {
        let expanded = env::expand(s, |name| env::lookup(&env, name));
        volumes::rewrite(&expanded, &mounts)
    };
    // The image's entrypoint is the worker binary: `command[0]` maps to it.
    let command = config.container.command.iter().flatten().skip(1);
    let args = command.chain(config.container.args.iter().flatten()).map(expand).collect();
    let env = env.iter().map(|(k, v)| (k.clone(), volumes::rewrite(v, &mounts))).collect();
    Ok(Launch { args, env })
}

/// The named Secrets and ConfigMaps of `ns`; one that does not exist is absent from the result.
async fn fetch_sources(
    client: &Client,
    ns: &str,
    secret_names: &BTreeSet<String>,
    config_map_names: &BTreeSet<String>,
) -> Result<Sources, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut sources = Sources::default();
    for name in secret_names {
        match secrets.get_opt(name).await {
            Ok(Some(s)) => drop(sources.secrets.insert(name.clone(), s)),
            Ok(None) => {}
            Err(e) => return Err(format!("failed to get Secret {name}: {e}")),
        }
    }
    for name in config_map_names {
        match config_maps.get_opt(name).await {
            Ok(Some(c)) => drop(sources.config_maps.insert(name.clone(), c)),
            Ok(None) => {}
            Err(e) => return Err(format!("failed to get ConfigMap {name}: {e}")),
        }
    }
    Ok(sources)
}

fn start(config: &RunnerConfig, launch: &Launch, restart_count: i32) -> Result<Child, ContainerState> {
    let failed = |e: std::io::Error| ContainerState::Waiting {
        reason: "RunContainerError".into(),
        message: Some(format!("failed to start {}: {e}", config.program.display())),
    };
    std::fs::create_dir_all(&config.pod_dir).map_err(failed)?;
    let log_path = log_path(&config.pod_dir, &config.container.name);
    let mut log = append_log(&log_path).map_err(failed)?;
    {
        use std::io::Write;
        let _ =
            writeln!(log, "--- tiepdan-node: start #{restart_count}: {} {:?}", config.program.display(), launch.args);
    }
    let err = log.try_clone().map_err(failed)?;
    let mut command = Command::new(&config.program);
    command
        .args(&launch.args)
        .env_clear()
        .current_dir(&config.pod_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .kill_on_drop(true);
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(launch.env.iter().map(|(k, v)| (k, v)));
    command.spawn().map_err(failed)
}

/// Where a container's output goes.
pub fn log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.log"))
}

/// Patches the pod's status: this container in `state`, the pod's other containers running.
async fn report(config: &RunnerConfig, restart_count: i32, state: ContainerState, restarts: bool) {
    let mut views =
        ContainerView::all(&config.pod, &ContainerState::Running { started_at: config.start_time, ready: true });
    for view in views.iter_mut().filter(|v| v.name == config.container.name) {
        view.state = state.clone();
        view.restart_count = restart_count;
    }
    let patch = status_patch(config.ip, config.start_time, &views, restarts, None);
    let ns = config.pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = config.pod.metadata.name.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(config.client.clone(), ns);
    if let Err(e) = pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::debug!(pod = %name, namespace = %ns, error = %e, "status update not applied");
    }
}
