//! Shared helpers for the operator's integration tests: kubectl against the harness control
//! plane, the CRDs installed once, and an in-process operator on an injectable clock.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::Client;
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane, RealNode};
use tiepdan_media_worker::probe::tls::ClientTls;
use tiepdan_operator::api::ReceptionSession;
use tiepdan_operator::clock::{Clock, SimClock};
use tiepdan_operator::controller::{self, OperatorConfig};
use tokio::sync::OnceCell;

/// Headless Chromium over WebDriver with a fake camera and microphone: the console tests' driver.
#[path = "../../../../media-worker/tests/common/browser.rs"]
pub mod browser;

/// Upper bound for one browser wait (the browser driver's `until`).
pub const WAIT: Duration = Duration::from_secs(30);

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `/usr/bin/kubectl` against `cp`.
pub fn kubectl(cp: &ControlPlane, args: &[&str]) -> Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run kubectl")
}

/// `kubectl apply -n ns -f -` with `yaml` on stdin.
pub fn kubectl_apply_yaml(cp: &ControlPlane, ns: &str, yaml: &str) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["apply", "-n", ns, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write yaml");
    child.wait_with_output().expect("kubectl output")
}

/// Runs kubectl and returns stdout, failing the test with stderr when it fails.
pub fn kubectl_ok(cp: &ControlPlane, args: &[&str]) -> String {
    let out = kubectl(cp, args);
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static CRDS: OnceCell<()> = OnceCell::const_new();

/// The shared control plane with `crds/` applied (once per test binary) and established, and the
/// binary's real node.
pub async fn cluster() -> &'static ControlPlane {
    let (cp, _node) = RealNode::shared().await.expect("control plane and real node start");
    CRDS.get_or_init(|| async {
        kubectl_ok(cp, &["apply", "-f", "crds/"]);
        let client = cp.client().await.expect("client");
        wait_crds_established(
            &client,
            &["receptionpoints.tiepdan.io", "receptionsessions.tiepdan.io", "mediaworkerpools.tiepdan.io"],
        )
        .await;
    })
    .await;
    cp
}

/// A running in-process operator; stops when dropped.
pub struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

/// Starts the operator watching only `namespace`, on `clock`.
pub fn start_operator(client: Client, namespace: &str, clock: Arc<dyn Clock>) -> Operator {
    start_operator_config(client, clock, test_config(namespace))
}

/// The operator's settings for tests: only `namespace` watched, its CA kept there, fast polls.
pub fn test_config(namespace: &str) -> OperatorConfig {
    OperatorConfig {
        namespace: Some(namespace.to_owned()),
        status_poll: Duration::from_millis(500),
        error_backoff: Duration::from_millis(500),
        ca_namespace: namespace.to_owned(),
        ca_check_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

/// Starts the operator with `config`, on `clock`.
pub fn start_operator_config(client: Client, clock: Arc<dyn Clock>, config: OperatorConfig) -> Operator {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller::run(client, clock, config, async move {
        let _ = rx.await;
    }));
    Operator { stop: Some(tx), task }
}

/// A session served by a worker container on the binary's real node ([`RealNode::shared`]) and
/// an in-process operator on a simulated clock. The schedule is anchored to the real clock,
/// because workers check token times on it: the rehearsal began a minute ago, the deadline is in
/// 59 minutes, the start in two hours. Dropping it stops the operator; the node stays for the
/// binary's other tests.
pub struct LiveSession {
    pub ns: String,
    pub clock: SimClock,
    pub now: Timestamp,
    pub deadline: Timestamp,
    pub start: Timestamp,
    _operator: Operator,
}

/// Starts a [`LiveSession`] in a new namespace named after `prefix`: the node (once per binary),
/// the operator with [`test_config`] adjusted by `tune`, then `topology(start, deadline)` applied
/// with kubectl.
pub async fn live_session(
    cp: &ControlPlane,
    client: &Client,
    prefix: &str,
    tune: impl FnOnce(OperatorConfig) -> OperatorConfig,
    topology: impl FnOnce(Timestamp, Timestamp) -> String,
) -> LiveSession {
    RealNode::shared().await.expect("the real node is Ready");
    let ns = unique_name(prefix);
    create_namespace(client, &ns).await.unwrap();
    let now = Timestamp::now();
    let (deadline, start) = (now + SignedDuration::from_mins(59), now + SignedDuration::from_mins(120));
    let clock = SimClock::new(now);
    let operator = start_operator_config(client.clone(), Arc::new(clock.clone()), tune(test_config(&ns)));
    let out = kubectl_apply_yaml(cp, &ns, &topology(start, deadline));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    LiveSession { ns, clock, now, deadline, start, _operator: operator }
}

/// Waits up to a minute until session `name` has a condition `type_` that `accept`s; returns
/// the session as it was then.
pub async fn wait_condition(
    sessions: &Api<ReceptionSession>,
    name: &str,
    type_: &str,
    what: &str,
    accept: impl Fn(&Condition) -> bool,
) -> ReceptionSession {
    wait_for(Duration::from_secs(60), what, || async {
        let s = sessions.get(name).await.map_err(|e| e.to_string())?;
        let c = s.status.as_ref().and_then(|st| st.conditions.iter().find(|c| c.type_ == type_));
        match c {
            Some(c) if accept(c) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap()
}

/// Waits until every CRD in `names` is Established.
pub async fn wait_crds_established(client: &Client, names: &[&str]) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for name in names {
        wait_for(Duration::from_secs(30), format!("CRD {name} Established"), || {
            let crds = crds.clone();
            async move {
                let conditions = crds.get(name).await.map_err(|e| e.to_string())?.status.and_then(|s| s.conditions);
                let established =
                    conditions.unwrap_or_default().iter().any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    Ok(())
                } else {
                    Err("not established".to_owned())
                }
            }
        })
        .await
        .unwrap();
    }
}

/// Two points, each in the console in headless Chromium (fake camera and microphone) opened
/// from its link on the worker behind `ws_url`, joined: they publish audio and video and consume
/// each other's over WebRTC (DTLS/SRTP), as the officers' browsers do, until the returned guard is
/// dropped or aborted. Only a browser can verify a point: plain RTP is for probe tokens, and a
/// probe never counts toward a point's verification.
///
/// Chromium reaches the signaling Service's name (`tls.server_name`) at `ws_url`'s address
/// through a host-resolver rule and trusts the served certificate by its key's pin, never with
/// a blanket ignore.
pub async fn exchange_media(
    ws_url: &str,
    tls: Option<&ClientTls>,
    first_token: &str,
    second_token: &str,
) -> BrowserPoints {
    use base64::Engine as _;
    use sha2::Digest as _;
    use tiepdan_media_worker::probe::client::SignalingClient;
    let started = std::time::Instant::now();
    let tls = tls.expect("the console is served over HTTPS only: pass the session's trust");
    let name = tls.server_name.clone().expect("the trust names the signaling Service");
    let addr: std::net::SocketAddr = ws_url
        .trim_start_matches("wss://")
        .trim_end_matches("/v1/ws")
        .parse()
        .unwrap_or_else(|e| panic!("{ws_url} is not wss://ip:port/v1/ws: {e}"));
    // The certificate arrives through the kubelet's Secret sync: wait for a verified handshake.
    let leaf = wait_for(Duration::from_secs(60), "the worker's certificate", || async {
        let c = SignalingClient::connect_with(ws_url, Some(tls)).await.map_err(|e| e.to_string())?;
        let leaf = c.peer_certificate().map(|d| d.to_vec()).ok_or("no certificate".to_owned());
        c.close().await;
        leaf
    })
    .await
    .unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).expect("the served certificate parses");
    let pin =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(parsed.tbs_certificate.subject_pki.raw));
    let args = [
        format!("--ignore-certificate-errors-spki-list={pin}"),
        format!("--host-resolver-rules=MAP {name} {}", addr.ip()),
    ];
    let origin = format!("https://{name}:{}", addr.port());
    let tokens = [first_token.to_owned(), second_token.to_owned()];
    let turn = BROWSERS.clone().acquire_owned().await.expect("the browser semaphore is never closed");
    // The WebDriver client blocks; keep it off the runtime's threads.
    let certificate = started.elapsed();
    tokio::task::spawn_blocking(move || {
        let driver = browser::Driver::start();
        let pages: Vec<browser::Browser> = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let page = driver.browser_with_args(&format!("point-{i}"), browser::Camera::Allowed, &args);
                page.goto(&format!("{origin}/join#token={token}"));
                page
            })
            .collect();
        for page in &pages {
            assert_eq!(page.eval("return window.isSecureContext;"), serde_json::Value::Bool(true));
            page.until("the join-check to enable joining", "return !document.getElementById('join').disabled;");
        }
        let opened = started.elapsed();
        for page in &pages {
            page.click("#join");
        }
        for page in &pages {
            page.until("the room", "return window.tiepdan.phase() === 'room';");
        }
        eprintln!(
            "two points in Chromium: certificate {:.1} s, browsers and pages {:.1} s, in the room {:.1} s",
            certificate.as_secs_f64(),
            (opened - certificate).as_secs_f64(),
            (started.elapsed() - opened).as_secs_f64()
        );
        BrowserPoints { pages, _driver: driver, _turn: turn }
    })
    .await
    .expect("browsers")
}

/// One pair of browsers at a time in a test binary. With two pairs beside the other tests' workers
/// on two cores, a host's fake microphone read silence for a minute (its checklist's microphone
/// and sfuAudio items never passed) in full runs, never alone.
static BROWSERS: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(1)));

/// Two points in the console; closing their browsers (on drop or [`Self::abort`]) ends their media.
pub struct BrowserPoints {
    pages: Vec<browser::Browser>,
    _driver: browser::Driver,
    /// Released after the browsers close (fields drop after `Drop::drop` closed the pages).
    _turn: tokio::sync::OwnedSemaphorePermit,
}

impl BrowserPoints {
    /// Closes both browsers: the points leave.
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for BrowserPoints {
    fn drop(&mut self) {
        for page in self.pages.drain(..) {
            page.close();
        }
    }
}

/// What an office's browser trusts for `session`'s signaling: the operator's trust bundle (kept in
/// the test's namespace, see [`test_config`]) and the signaling Service's name.
pub async fn session_trust(client: &Client, namespace: &str, session: &str) -> ClientTls {
    use k8s_openapi::api::core::v1::ConfigMap;
    use tiepdan_operator::webhook::registration::TRUST_BUNDLE;
    let bundle = Api::<ConfigMap>::namespaced(client.clone(), namespace).get(TRUST_BUNDLE).await.unwrap();
    let ca = bundle.data.unwrap()["ca.crt"].clone();
    let name = format!("{}.{namespace}.svc", tiepdan_operator::build::signaling_service::name(session));
    ClientTls::from_pem(ca.as_bytes(), Some(name)).unwrap()
}

/// The `tiepdan-media-worker` binary, for tests that run it as a plain process:
/// `TIEPDAN_MEDIA_WORKER_BIN`, else the debug build in Cargo's target dir. `scripts/test` builds
/// it before the tests run.
pub fn media_worker_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TIEPDAN_MEDIA_WORKER_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join("target"));
    let bin = target.join("debug/tiepdan-media-worker");
    assert!(bin.exists(), "{} is missing: run `cargo build -p media-worker` first (scripts/test does)", bin.display());
    bin
}

/// The province and the town of the Mỹ Hào topology as YAML documents, each after a `---`:
/// the parents of every commune the tests add.
pub const PROVINCE_AND_TOWN: &str = r#"---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionPoint
metadata: {name: tinh-hung-yen}
spec: {displayName: "Ban Tiếp công dân tỉnh Hưng Yên", level: Province}
---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionPoint
metadata: {name: thi-xa-my-hao}
spec: {displayName: "Ban Tiếp công dân thị xã Mỹ Hào", level: Town, parent: tinh-hung-yen}
"#;

/// `examples/my-hao/00-media-worker-pool.yaml` applied to `ns` in the host network, with a free
/// block of 10 host ports and 20 RTC ports for each worker: the kubelet probes pods from the root
/// network namespace, which cannot reach pods behind the node's bridge, so only host-network
/// workers get Ready here.
pub fn apply_example_pool_on_node(cp: &ControlPlane, ns: &str) {
    let host_min = tiepdan_harness::process::free_port_block(10).unwrap();
    let example = std::fs::read_to_string(repo().join("examples/my-hao/00-media-worker-pool.yaml")).unwrap();
    let on_node = example.replacen(
        "\nspec:\n",
        &format!("\nspec:\n  hostNetwork: true\n  hostPorts: {{min: {host_min}, max: {}}}\n", host_min + 9),
        1,
    );
    assert_ne!(on_node, example, "the example pool has a spec");
    // Each worker declares its RTC sub-range as host ports, so pools of tests running side by side
    // on the one node each get a block of their own, not all the example's 40000-40099 (5
    // workers in all, which left later pods Pending).
    let rtc_min = tiepdan_harness::process::free_port_block(100).unwrap();
    let on_node = on_node.replacen(
        "    min: 40000\n    max: 40099\n",
        &format!("    min: {rtc_min}\n    max: {}\n    perWorker: 20\n", rtc_min + 99),
        1,
    );
    assert!(on_node.contains("perWorker: 20"), "the example pool's rtcPorts are 40000-40099");
    let out = kubectl_apply_yaml(cp, ns, &on_node);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A hostNetwork pool of the worker image, three points (the province, the town, a ward) and a
/// session `name` hosted by the town with the ward, whose rehearsal runs from an hour before
/// `deadline`, anchored to the real clock because real workers check token times on it. Host
/// and RTC ports come from blocks this process reserved, so tests running at once do not share
/// ports.
pub fn small_live_topology(name: &str, title: &str, start: jiff::Timestamp, deadline: jiff::Timestamp) -> String {
    let host_min = tiepdan_harness::process::free_port_block(10).unwrap();
    let rtc_min = tiepdan_harness::process::free_port_block(100).unwrap();
    format!(
        r#"
apiVersion: tiepdan.io/v1alpha1
kind: MediaWorkerPool
metadata: {{name: default}}
spec:
  replicas: 1
  hostNetwork: true
  hostPorts: {{min: {host_min}, max: {host_max}}}
  rtcPorts: {{min: {rtc_min}, max: {rtc_max}, perWorker: 20}}
{PROVINCE_AND_TOWN}---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionPoint
metadata: {{name: di-su}}
spec: {{displayName: "UBND phường Dị Sử", level: Commune, parent: thi-xa-my-hao}}
---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionSession
metadata: {{name: {name}}}
spec:
  title: "{title}"
  host: thi-xa-my-hao
  points: [di-su]
  schedule: {{start: "{start}", durationMinutes: 60}}
  readiness: {{deadline: "{deadline}", rehearsalMinutes: 60}}
"#,
        rtc_max = rtc_min + 99,
        host_max = host_min + 9,
    )
}
