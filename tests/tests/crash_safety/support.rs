//! What the crash-safety tests share: the operator binary as a child process (killed and
//! restarted by PID), a seeded random source, the fixtures (a pool no worker ever runs from,
//! three points, sessions in their rehearsal) and a census of every session's children.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use tiepdan_harness::process::{free_ports, log_tail, make_temp_dir, Reaper, Supervised};
use tiepdan_harness::{wait_for, ControlPlane};
use tiepdan_operator::api::{MediaWorkerPool, ReceptionPoint, ReceptionSession};
use tiepdan_operator::build::{dashboard, join_tokens, labels, network_policy, signaling_service, tls};
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `tiepdan-operator` binary: `TIEPDAN_OPERATOR_BIN`, else the debug build in Cargo's target
/// dir (`cargo build --workspace --all-targets`, which `scripts/test` runs, builds it).
pub fn operator_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TIEPDAN_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join("target"));
    let bin = target.join("debug/tiepdan-operator");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p operator --bin tiepdan-operator` first (scripts/test builds it)",
        bin.display()
    );
    bin
}

/// The shared control plane (no node: worker pods are never scheduled, which is all these tests
/// need), running in full even if an earlier test of this binary failed halfway through an
/// outage, with the CRDs established; and a client on this test's runtime.
pub async fn cluster() -> (&'static ControlPlane, Client) {
    static CRDS: OnceCell<()> = OnceCell::const_new();
    let cp = ControlPlane::shared().await.expect("the control plane starts");
    if ["etcd", "kube-apiserver", "kube-controller-manager"].iter().any(|c| cp.pid(c).is_none()) {
        cp.restart_stopped(Duration::from_secs(60)).await.expect("the control plane comes back");
    }
    let client = cp.client().await.expect("client");
    CRDS.get_or_init(|| async {
        let crds = Api::<CustomResourceDefinition>::all(client.clone());
        for crd in [ReceptionPoint::crd(), ReceptionSession::crd(), MediaWorkerPool::crd()] {
            let name = crd.name_any();
            crds.patch(&name, &PatchParams::apply("tiepdan-tests").force(), &Patch::Apply(&crd)).await.unwrap();
            wait_for(Duration::from_secs(30), format!("CRD {name} Established"), || async {
                let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
                let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                    Ok(())
                } else {
                    Err(format!("{conditions:?}"))
                }
            })
            .await
            .unwrap();
        }
    })
    .await;
    (cp, client)
}

/// A seeded pseudo-random source (SplitMix64): a failing run is replayed with its seed.
pub struct Rng(u64);

impl Rng {
    /// From `TIEPDAN_CRASH_SEED` if set, else from the kernel; prints the seed and how to replay.
    pub fn seeded(test: &str) -> Self {
        let seed = match std::env::var("TIEPDAN_CRASH_SEED") {
            Ok(s) => s.parse().expect("TIEPDAN_CRASH_SEED is a u64"),
            Err(_) => u64::from_str_radix(&tiepdan_harness::random::random_hex(8).unwrap(), 16).unwrap(),
        };
        eprintln!("{test}: seed {seed} (replay with TIEPDAN_CRASH_SEED={seed})");
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `k` distinct items of `from`, in a random order.
    pub fn choose<T: Clone>(&mut self, from: &[T], k: usize) -> Vec<T> {
        let mut pool = from.to_vec();
        let mut out = Vec::with_capacity(k);
        while out.len() < k && !pool.is_empty() {
            let i = usize::try_from(self.next_u64() % pool.len() as u64).unwrap();
            out.push(pool.swap_remove(i));
        }
        out
    }
}

/// The `tiepdan-operator run` binary as a child process watching one namespace, with its own
/// metrics port and a log per run (`operator-<run>.log` in a temp dir, kept when the test fails
/// or `TIEPDAN_KEEP_CLUSTER` is set). Killed by PID; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct OperatorProcess {
    dir: PathBuf,
    reaper: Reaper,
    process: Option<Supervised>,
    namespace: String,
    kubeconfig: PathBuf,
    /// For one of several replicas: its identity (`POD_NAME`) and leader election flags.
    replica: Option<(String, Vec<String>)>,
    metrics_port: u16,
    runs: u32,
    run_started: Instant,
    http: reqwest::Client,
}

impl OperatorProcess {
    /// Starts the first run.
    pub fn start(cp: &ControlPlane, namespace: &str) -> Self {
        Self::start_with(cp.kubeconfig(), namespace)
    }

    /// Starts the first run with `kubeconfig`.
    pub fn start_with(kubeconfig: &Path, namespace: &str) -> Self {
        Self::start_first(kubeconfig, namespace, None)
    }

    /// Starts the first run of one of several replicas: `--leader-elect` on a Lease (in
    /// `namespace`) of `lease_seconds` renewed every `retry`, as `identity` (its `POD_NAME`, the
    /// Lease's holder while it leads).
    pub fn start_replica(
        cp: &ControlPlane,
        namespace: &str,
        identity: &str,
        lease_seconds: u64,
        retry: Duration,
    ) -> Self {
        let flags = vec![
            "--leader-elect".to_owned(),
            format!("--leader-lease-seconds={lease_seconds}"),
            format!("--leader-retry-millis={}", retry.as_millis()),
        ];
        Self::start_first(cp.kubeconfig(), namespace, Some((identity.to_owned(), flags)))
    }

    fn start_first(kubeconfig: &Path, namespace: &str, replica: Option<(String, Vec<String>)>) -> Self {
        let dir = make_temp_dir("tiepdan-crash-safety").unwrap();
        let reaper = Reaper::arm(&dir, std::env::var_os("TIEPDAN_KEEP_CLUSTER").is_none()).unwrap();
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap();
        let mut op = Self {
            dir,
            reaper,
            process: None,
            namespace: namespace.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            replica,
            metrics_port: 0,
            runs: 0,
            run_started: Instant::now(),
            http,
        };
        op.restart();
        op
    }

    /// Starts a new run (the previous one must have been killed).
    pub fn restart(&mut self) {
        assert!(self.process.as_mut().is_none_or(Supervised::exited), "the previous run still runs");
        self.runs += 1;
        self.metrics_port = free_ports(1).unwrap()[0];
        let mut args = vec![
            "run".to_owned(),
            format!("--namespace={}", self.namespace),
            format!("--operator-namespace={}", self.namespace),
            format!("--metrics-addr=127.0.0.1:{}", self.metrics_port),
            "--log-format=text".to_owned(),
        ];
        // `TIEPDAN_OPERATOR_RUST_LOG` to see more, e.g. `info,kube_runtime=debug` for its watches.
        let filter = std::env::var("TIEPDAN_OPERATOR_RUST_LOG").unwrap_or_else(|_| "info,kube=warn".to_owned());
        let mut env = vec![("KUBECONFIG", self.kubeconfig.as_os_str()), ("RUST_LOG", filter.as_ref())];
        if let Some((identity, flags)) = &self.replica {
            args.extend(flags.iter().cloned());
            env.push(("POD_NAME", identity.as_ref()));
        }
        let log = self.dir.join(format!("operator-{}.log", self.runs));
        let p = Supervised::spawn_env("tiepdan-operator", &operator_bin(), args, env, &log, &self.reaper).unwrap();
        self.process = Some(p);
        self.run_started = Instant::now();
    }

    /// The current run's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Supervised::pid)
    }

    /// How many runs were started.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    /// How long the current run has been going.
    pub fn run_elapsed(&self) -> Duration {
        self.run_started.elapsed()
    }

    /// Panics, with the tail of its log, if the current run has exited.
    pub fn assert_running(&mut self) {
        let process = self.process.as_mut().expect("a run was started");
        if let Err(e) = process.check_running() {
            panic!("the operator exited on its own (run {}): {e}", self.runs);
        }
    }

    /// `SIGKILL` to the running operator's PID, as a crash or an OOM kill would; returns the PID.
    pub fn sigkill(&mut self) -> u32 {
        self.assert_running();
        let pid = self.pid().expect("a run was started");
        let process = self.process.as_mut().expect("a run was started");
        let status = process.kill(&self.reaper);
        let killed = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
        assert_eq!(killed, Some(9), "run {} ended by SIGKILL (status {status:?})", self.runs);
        pid
    }

    /// The log of the current run.
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("operator-{}.log", self.runs))
    }

    /// The status code of `GET <path>` on the current run's metrics port (`None`: no answer).
    pub async fn http_status(&self, path: &str) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}{path}", self.metrics_port);
        Some(self.http.get(url).send().await.ok()?.status().as_u16())
    }

    /// Sends `SIGTERM` to the running operator and waits up to `within` for it to exit, as the
    /// kubelet does before its SIGKILL; returns how it ended and how long that took (`None` if it
    /// still runs, in which case it is killed).
    pub async fn terminate(&mut self, within: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        self.assert_running();
        let process = self.process.as_mut().expect("a run was started");
        let sent = Instant::now();
        tiepdan_harness::process::signal(process.pid(), tiepdan_harness::process::Signal::SIGTERM);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while sent.elapsed() < within {
            tick.tick().await;
            if process.exited() {
                let status = process.kill(&self.reaper)?;
                return Some((status, sent.elapsed()));
            }
        }
        process.kill(&self.reaper);
        None
    }

    /// The current run's `/metrics` text (`None` until it serves it).
    pub async fn scrape(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        self.http.get(url).send().await.ok()?.text().await.ok()
    }

    /// The session reconciles of the current run that failed.
    pub async fn failed_reconciles(&self) -> Option<u64> {
        let text = self.scrape().await?;
        Some(sum(&text, "tiepdan_operator_reconcile_errors_total", &[("kind", &["ReceptionSession"])]).unwrap_or(0))
    }

    /// How far the current run has got: the API writes (create, update, patch, delete) it has
    /// sent, counted by its `tiepdan_operator_api_requests_total`; or, from a build without that
    /// counter, its reconciles times four (about as many writes as a session's first reconciles
    /// make). `None` until it serves its metrics.
    pub async fn progress(&self) -> Option<Progress> {
        let text = self.scrape().await?;
        let writes = ("verb", &["create", "update", "patch", "delete"][..]);
        Some(match sum(&text, REQUESTS, &[]) {
            Some(_) => Progress::Writes(sum(&text, REQUESTS, &[writes]).unwrap_or(0)),
            None => Progress::Reconciles(sum(&text, "tiepdan_operator_reconciles_total", &[]).unwrap_or(0)),
        })
    }

    /// Waits until the current run has made `writes` of [`OperatorProcess::progress`], or has made
    /// none for `idle` (it has nothing left to do), at most `timeout`; returns its progress then.
    /// Polls its metrics every 50 ms, and fails as soon as it exits on its own.
    pub async fn until_progress(&mut self, writes: u64, idle: Duration, timeout: Duration) -> Progress {
        let deadline = Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let (mut last, mut since) = (Progress::Writes(0), Instant::now());
        loop {
            tick.tick().await;
            self.assert_running();
            let now = self.progress().await.unwrap_or(Progress::Writes(0));
            if now != last {
                (last, since) = (now, Instant::now());
            }
            let moved = now.writes() > 0;
            if now.writes() >= writes || (moved && since.elapsed() >= idle) || Instant::now() >= deadline {
                return now;
            }
        }
    }
}

/// The operator's counter of its requests to the API server.
const REQUESTS: &str = "tiepdan_operator_api_requests_total";

/// How far a run has got (see [`OperatorProcess::progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Writes(u64),
    Reconciles(u64),
}

impl Progress {
    /// In writes, or as many writes as the reconciles stand for.
    pub fn writes(self) -> u64 {
        match self {
            Progress::Writes(n) => n,
            Progress::Reconciles(n) => 4 * n,
        }
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Writes(n) => write!(f, "{n} writes"),
            Progress::Reconciles(n) => write!(f, "{n} reconciles (this operator build counts no writes)"),
        }
    }
}

/// The metric `name` in the Prometheus text `text`, summed over the series whose labels have, for
/// each `(label, values)` of `labels`, one of `values` (`None`: no such series).
fn sum(text: &str, name: &str, labels: &[(&str, &[&str])]) -> Option<u64> {
    let mut found = None;
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Some(series_labels) = series.strip_prefix(name) else { continue };
        if !(series_labels.is_empty() || series_labels.starts_with('{')) {
            continue; // another metric whose name starts with this one
        }
        let matches = labels
            .iter()
            .all(|(label, values)| values.iter().any(|v| series_labels.contains(&format!("{label}=\"{v}\""))));
        if matches {
            *found.get_or_insert(0) += value.parse::<f64>().unwrap_or(0.0) as u64;
        }
    }
    found
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            // A graceful stop takes under a second; a heap-profiling build (`dhat-heap`) writes
            // its profile on the way out, which can take longer.
            p.stop(Duration::from_secs(60), &self.reaper);
        }
        if std::thread::panicking() || std::env::var_os("TIEPDAN_KEEP_CLUSTER").is_some() {
            // The dir stays: its reaper, disarmed as this is dropped, no longer removes it.
            eprintln!(
                "operator logs kept in {}; the last run's tail:\n{}",
                self.dir.display(),
                log_tail(&self.log(), 30)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The rehearsal is on now: it began a minute ago (provisioning 31 minutes ago), the readiness
/// deadline is in 59 minutes, the session starts in two hours. The operator binary runs on the
/// real clock, so the schedule is anchored to it.
pub fn schedule_now() -> (jiff::Timestamp, jiff::Timestamp) {
    let now = jiff::Timestamp::now();
    (now + jiff::SignedDuration::from_mins(120), now + jiff::SignedDuration::from_mins(59))
}

/// A pool that keeps no warm workers (`replicas: 0`), so every session gets a worker pod of its
/// own, which stays Pending (this binary runs no node); and three points: the province, the
/// town that hosts every session, and a ward that joins it.
pub async fn topology(client: &Client, ns: &str) {
    let pool: MediaWorkerPool = serde_json::from_value(json!({
        "apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
        "metadata": {"name": "default"},
        "spec": {"replicas": 0}
    }))
    .unwrap();
    Api::<MediaWorkerPool>::namespaced(client.clone(), ns).create(&PostParams::default(), &pool).await.unwrap();
    let points = [
        ("tinh-hung-yen", "Ban Tiếp công dân tỉnh Hưng Yên", "Province", None),
        ("thi-xa-my-hao", "Ban Tiếp công dân thị xã Mỹ Hào", "Town", Some("tinh-hung-yen")),
        ("di-su", "UBND phường Dị Sử", "Commune", Some("thi-xa-my-hao")),
    ];
    let api = Api::<ReceptionPoint>::namespaced(client.clone(), ns);
    for (name, display, level, parent) in points {
        let mut spec = json!({"displayName": display, "level": level});
        if let Some(p) = parent {
            spec["parent"] = json!(p);
        }
        let point: ReceptionPoint = serde_json::from_value(json!({
            "apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionPoint",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        api.create(&PostParams::default(), &point).await.unwrap();
    }
}

/// Creates sessions `names`, hosted by the town with the ward, in their rehearsal now.
pub async fn create_sessions(client: &Client, ns: &str, names: &[String]) {
    let (start, deadline) = schedule_now();
    let api = Api::<ReceptionSession>::namespaced(client.clone(), ns);
    for name in names {
        let session: ReceptionSession = serde_json::from_value(json!({
            "apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionSession",
            "metadata": {"name": name},
            "spec": {
                "title": format!("Tiếp công dân định kỳ {name}"),
                "host": "thi-xa-my-hao",
                "points": ["di-su"],
                "schedule": {"start": start.to_string(), "durationMinutes": 60},
                "readiness": {"deadline": deadline.to_string(), "rehearsalMinutes": 60},
            }
        }))
        .unwrap();
        api.create(&PostParams::default(), &session).await.unwrap();
    }
}

/// Deletes sessions `names` (their finalizer holds them until the operator has cleaned up).
pub async fn delete_sessions(client: &Client, ns: &str, names: &[String]) {
    let api = Api::<ReceptionSession>::namespaced(client.clone(), ns);
    for name in names {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
}

/// `s-000`, `s-001`, …
pub fn session_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s-{i:03}")).collect()
}

/// One kind of object the operator makes per session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Child {
    Pod,
    Service,
    Secret,
    NetworkPolicy,
    ConfigMap,
}

/// A session as the census saw it.
#[derive(Debug)]
pub struct SessionState {
    pub provisioned: bool,
    /// The operator has acted on it: it carries the operator's finalizer.
    pub seen: bool,
    pub deleting: bool,
    pub worker: Option<String>,
}

/// Every session of a namespace and every object labelled `tiepdan.io/session` in it (objects
/// already being deleted left out), at one moment.
#[derive(Debug, Default)]
pub struct Census {
    pub sessions: BTreeMap<String, SessionState>,
    /// `(kind, session label)` → object names.
    pub children: BTreeMap<(Child, String), BTreeSet<String>>,
}

impl Census {
    pub async fn take(client: &Client, ns: &str) -> Result<Self, String> {
        let lp = ListParams::default().labels(labels::SESSION);
        let sessions = Api::<ReceptionSession>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list sessions: {e}"))?;
        let mut census = Census::default();
        for s in sessions.items {
            let status = s.status.as_ref();
            let provisioned = tiepdan_operator::controller::session::condition_true(&s, "Provisioned");
            let worker = status.and_then(|st| st.worker.as_ref()).and_then(|w| w.pod.clone());
            let deleting = s.metadata.deletion_timestamp.is_some();
            let seen = s.finalizers().iter().any(|f| f == tiepdan_operator::controller::session::FINALIZER);
            census.sessions.insert(s.name_any(), SessionState { provisioned, seen, deleting, worker });
        }
        let c = client.clone();
        census.add(Child::Pod, metas(Api::<Pod>::namespaced(c.clone(), ns), &lp).await)?;
        census.add(Child::Service, metas(Api::<Service>::namespaced(c.clone(), ns), &lp).await)?;
        census.add(Child::Secret, metas(Api::<Secret>::namespaced(c.clone(), ns), &lp).await)?;
        census.add(Child::NetworkPolicy, metas(Api::<NetworkPolicy>::namespaced(c.clone(), ns), &lp).await)?;
        census.add(Child::ConfigMap, metas(Api::<ConfigMap>::namespaced(c, ns), &lp).await)?;
        Ok(census)
    }

    fn add(&mut self, kind: Child, list: kube::Result<Vec<ObjectMeta>>) -> Result<(), String> {
        let list = list.map_err(|e| format!("list {kind:?}s: {e}"))?;
        for meta in list.into_iter().filter(|m| m.deletion_timestamp.is_none()) {
            let session = meta.labels.as_ref().and_then(|l| l.get(labels::SESSION)).cloned().unwrap_or_default();
            self.children.entry((kind, session)).or_default().insert(meta.name.unwrap_or_default());
        }
        Ok(())
    }

    fn of(&self, kind: Child, session: &str) -> BTreeSet<String> {
        self.children.get(&(kind, session.to_owned())).cloned().unwrap_or_default()
    }

    /// Sessions with condition `Provisioned=True`.
    pub fn provisioned(&self) -> usize {
        self.sessions.values().filter(|s| s.provisioned).count()
    }

    /// Worker pods, all sessions together.
    pub fn pods(&self) -> usize {
        self.children.iter().filter(|((k, _), _)| *k == Child::Pod).map(|(_, v)| v.len()).sum()
    }

    /// Judges the census against the sessions that must be there (`expected`) and those that
    /// were deleted (`deleted`).
    pub fn report(&self, expected: &BTreeSet<String>, deleted: &BTreeSet<String>) -> Report {
        let mut r = Report { expected: expected.len(), ..Report::default() };
        for name in expected {
            let Some(s) = self.sessions.get(name) else {
                r.lost.push(name.clone());
                continue;
            };
            if s.provisioned {
                r.provisioned += 1;
            } else {
                r.unprovisioned.push(name.clone());
            }
            if !s.seen {
                r.unseen.push(name.clone());
            }
            if s.deleting {
                r.lost.push(format!("{name} (being deleted)"));
            }
            // Exactly one of each: a worker pod (the one the status names), a signaling Service,
            // a join-token Secret, the session's certificate and its worker's copy, a
            // NetworkPolicy and a dashboard ConfigMap.
            let pods = self.of(Child::Pod, name);
            if pods.len() > 1 {
                r.duplicates.push(format!("{name}: {} worker pods {pods:?}", pods.len()));
            }
            let want_pod = s.worker.clone();
            match &want_pod {
                Some(p) if !pods.contains(p) => r.missing.push(format!("{name}: its worker pod {p} does not exist")),
                None => r.missing.push(format!("{name}: no worker in its status")),
                _ => {}
            }
            let services = self.of(Child::Service, name);
            let secrets = self.of(Child::Secret, name);
            let want_secrets: BTreeSet<String> = [join_tokens::name(name), tls::secret_name(name)]
                .into_iter()
                .chain(want_pod.as_deref().map(tls::pod_secret_name))
                .collect();
            let wanted: [(Child, BTreeSet<String>, BTreeSet<String>); 4] = [
                (Child::Service, services, [signaling_service::name(name)].into()),
                (Child::Secret, secrets, want_secrets),
                (Child::NetworkPolicy, self.of(Child::NetworkPolicy, name), [network_policy::name(name)].into()),
                (Child::ConfigMap, self.of(Child::ConfigMap, name), [dashboard::name(name)].into()),
            ];
            for (kind, have, want) in wanted {
                for m in want.difference(&have) {
                    r.missing.push(format!("{name}: no {kind:?} {m}"));
                }
                for extra in have.difference(&want) {
                    if matches!(kind, Child::Service) || extra == &join_tokens::name(name) {
                        r.duplicates.push(format!("{name}: extra {kind:?} {extra}"));
                    } else {
                        r.orphans.push(format!("{kind:?} {extra} (session {name} does not use it)"));
                    }
                }
            }
        }
        for name in deleted {
            if self.sessions.contains_key(name) {
                r.lingering.push(name.clone());
            }
        }
        for ((kind, session), names) in &self.children {
            if !self.sessions.contains_key(session) {
                for n in names {
                    r.orphans.push(format!("{kind:?} {n} (session {session:?} does not exist)"));
                }
            }
        }
        for name in self.sessions.keys() {
            if !expected.contains(name) && !deleted.contains(name) {
                r.lost.push(format!("{name} (unexpected session)"));
            }
        }
        r
    }
}

/// The metadata of the objects `lp` selects.
async fn metas<K>(api: Api<K>, lp: &ListParams) -> kube::Result<Vec<ObjectMeta>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    Ok(api.list_metadata(lp).await?.items.into_iter().map(|o| o.metadata).collect())
}

/// What a census says about convergence.
#[derive(Debug, Default)]
pub struct Report {
    pub expected: usize,
    pub provisioned: usize,
    pub unprovisioned: Vec<String>,
    /// Expected sessions the operator has not acted on at all (no finalizer).
    pub unseen: Vec<String>,
    /// Expected sessions that are gone (or going).
    pub lost: Vec<String>,
    /// Deleted sessions still there (their clean-up did not finish).
    pub lingering: Vec<String>,
    /// A second worker pod, signaling Service or join-token Secret for one session.
    pub duplicates: Vec<String>,
    /// Children of a session that does not exist, or that their session does not use.
    pub orphans: Vec<String>,
    /// Children a provisioned session lacks.
    pub missing: Vec<String>,
}

impl Report {
    /// "N Provisioned, N worker pods, N duplicates, N orphans, N lost", for the tests' figures.
    pub fn counts(&self, census: &Census) -> String {
        format!(
            "{} Provisioned, {} worker pods, {} duplicates, {} orphans, {} lost",
            self.provisioned,
            census.pods(),
            self.duplicates.len(),
            self.orphans.len(),
            self.lost.len()
        )
    }

    pub fn converged(&self) -> bool {
        self.provisioned == self.expected
            && self.lost.is_empty()
            && self.lingering.is_empty()
            && self.duplicates.is_empty()
            && self.orphans.is_empty()
            && self.missing.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let few = |v: &[String]| {
            let shown: Vec<_> = v.iter().take(5).cloned().collect();
            if v.len() > 5 {
                format!("{shown:?} and {} more", v.len() - 5)
            } else {
                format!("{shown:?}")
            }
        };
        write!(
            f,
            "{}/{} Provisioned (not yet: {}; never acted on, without the operator's finalizer: {}); {} duplicates {}; \
             {} orphans {}; {} lost {}; {} deleted but present {}; {} missing children {}",
            self.provisioned,
            self.expected,
            few(&self.unprovisioned),
            few(&self.unseen),
            self.duplicates.len(),
            few(&self.duplicates),
            self.orphans.len(),
            few(&self.orphans),
            self.lost.len(),
            few(&self.lost),
            self.lingering.len(),
            few(&self.lingering),
            self.missing.len(),
            few(&self.missing),
        )
    }
}

/// Waits up to `timeout` until the namespace converges (see [`Report::converged`]), failing at
/// once if the operator exits; returns the converged census and how long it took.
pub async fn converge(
    client: &Client,
    ns: &str,
    op: &mut OperatorProcess,
    expected: &BTreeSet<String>,
    deleted: &BTreeSet<String>,
    timeout: Duration,
) -> (Census, Report, Duration) {
    let begun = Instant::now();
    let op = std::sync::Mutex::new(op);
    let (census, report) = wait_for(timeout, "every session Provisioned, no duplicates, orphans or losses", || async {
        op.lock().unwrap().assert_running();
        let census = Census::take(client, ns).await?;
        let report = census.report(expected, deleted);
        if report.converged() {
            Ok((census, report))
        } else {
            Err(report.to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; operator log {}", op.lock().unwrap().log().display()));
    (census, report, begun.elapsed())
}
