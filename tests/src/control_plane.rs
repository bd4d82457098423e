//! A real control plane on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager.
//!
//! ```text
//!  temp dir ─ ca.crt apiserver.{crt,key} sa.{key,pub} tokens.csv kubeconfig *.log etcd/
//!  etcd :p1 ◄── kube-apiserver :p3 (token auth, RBAC) ◄── kube-controller-manager
//!                     ▲                                    (serviceaccount(-token), namespace,
//!                kubeconfig (admin token)                   garbagecollector, deployment, replicaset)
//! ```
//!
//! No kubelet, scheduler or endpoints controller: pods are played by [`crate::Node`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use crate::certs::{write_pki, CertError, Pki};
use crate::process::{free_ports, make_temp_dir, poll_startup, ProcessError, Reaper, StartupError, Supervised};

pub const K8S_VERSION: &str = "1.20.2";
/// The node's name and InternalIP: kubelet refuses `--node-ip=127.0.0.1` but takes it as
/// `--hostname-override`, so hostNetwork pods get podIP 127.0.0.1 and the apiserver reaches the
/// kubelet on loopback.
pub const NODE_NAME: &str = "127.0.0.1";
/// The Service CIDR (kept unreachable from the root network namespace while a node runs). Every
/// session has a signaling Service, so the operator benchmark's 1,000 sessions need more than a
/// /24's 253 cluster IPs: with one, the API server refused the 254th with a 500.
pub const SERVICE_CIDR: &str = "10.0.0.0/20";
const INSTALL_HINT: &str = "run scripts/install-control-plane.sh";

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("{what} not found at {}; {INSTALL_HINT}", path.display())]
    MissingBinary { what: &'static str, path: PathBuf },
    #[error("failed to prepare {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("failed to generate certificates")]
    Certs(#[from] CertError),
    #[error("failed to load the kubeconfig")]
    Kubeconfig(#[from] KubeconfigError),
    #[error("failed to build a client")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("no control-plane component named {0:?} (etcd, kube-apiserver, kube-controller-manager)")]
    UnknownComponent(String),
    #[error(
        "kube-controller-manager did not catch up after the restart (a new namespace got no default ServiceAccount)"
    )]
    ControllersBehind(#[source] crate::namespace::NamespaceError),
}

/// Where the binaries come from and where the cluster's files go.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// `None`: a fresh temp dir, removed on drop unless `TIEPDAN_KEEP_CLUSTER` is set. `Some`: that
    /// directory, created if needed, never removed (its `etcd/` data is wiped at start).
    pub dir: Option<PathBuf>,
    /// kube-apiserver and kube-controller-manager; `None`: `$TIEPDAN_K8S_BIN`, else
    /// `~/.cache/tiepdan/kubernetes-1.20.2/bin`.
    pub k8s_bin_dir: Option<PathBuf>,
    /// `None`: `etcd` on `PATH`.
    pub etcd: Option<PathBuf>,
    /// Bound on each startup step (apiserver ready, controller-manager working).
    pub start_timeout: Duration,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self { dir: None, k8s_bin_dir: None, etcd: None, start_timeout: Duration::from_secs(60) }
    }
}

/// A running control plane. Dropping it stops the processes (by PID) and removes its dir.
pub struct ControlPlane {
    dir: PathBuf,
    remove_dir: bool,
    kubeconfig: PathBuf,
    server: String,
    /// etcd, kube-apiserver, kube-controller-manager, in start order.
    processes: Mutex<Vec<Supervised>>,
    reaper: Reaper,
}

/// Paths of the three binaries.
struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
}

impl Binaries {
    fn locate(options: &ControlPlaneOptions) -> Result<Self, ControlPlaneError> {
        let k8s = options.k8s_bin_dir.clone().unwrap_or_else(default_k8s_bin_dir);
        let etcd = options.etcd.clone().or_else(|| find_on_path("etcd")).unwrap_or_else(|| "etcd".into());
        let found = |what, path: PathBuf| {
            if path.is_file() {
                Ok(path)
            } else {
                Err(ControlPlaneError::MissingBinary { what, path })
            }
        };
        Ok(Self {
            etcd: found("etcd", etcd)?,
            apiserver: found("kube-apiserver", k8s.join("kube-apiserver"))?,
            controller_manager: found("kube-controller-manager", k8s.join("kube-controller-manager"))?,
        })
    }
}

pub(crate) fn default_k8s_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TIEPDAN_K8S_BIN") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/tiepdan").join(format!("kubernetes-{K8S_VERSION}")).join("bin")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

impl ControlPlane {
    /// One control plane per process, started on first use and shared by every test of the
    /// binary; give each test its own namespace ([`crate::create_namespace`]) and its own
    /// client ([`ControlPlane::client`], built on the test's runtime). Its processes and dir are
    /// cleaned up by the reaper when the test binary exits (statics are never dropped).
    pub async fn shared() -> Result<&'static ControlPlane, ControlPlaneError> {
        SHARED.get_or_try_init(|| ControlPlane::start(ControlPlaneOptions::default())).await
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the apiserver is
    /// ready and the controller-manager has created the `default` namespace's service account.
    pub async fn start(options: ControlPlaneOptions) -> Result<ControlPlane, ControlPlaneError> {
        let bins = Binaries::locate(&options)?;
        let keep = std::env::var_os("TIEPDAN_KEEP_CLUSTER").is_some();
        let (dir, remove_dir) = match &options.dir {
            Some(dir) => {
                let etcd_data = dir.join("etcd");
                if etcd_data.exists() {
                    std::fs::remove_dir_all(&etcd_data).map_err(io(&etcd_data))?;
                }
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                (dir.clone(), false)
            }
            None => (make_temp_dir("tiepdan-cluster")?, !keep),
        };
        let reaper = Reaper::arm(&dir, remove_dir)?;
        let ports = free_ports(3).map_err(io(&dir))?;
        let (etcd_port, peer_port, api_port) = (ports[0], ports[1], ports[2]);
        let mut cp = ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            server: format!("https://127.0.0.1:{api_port}"),
            dir,
            remove_dir,
            processes: Mutex::new(Vec::new()),
            reaper,
        };
        // From here on, an early return drops `cp`, which stops whatever was started.
        let pki = write_pki(&cp.dir)?;
        let token = crate::random::random_hex(16).map_err(io(&cp.dir))?;
        let tokens = cp.dir.join("tokens.csv");
        // The node's kubelet authenticates as system:node:<name> in system:nodes, which the Node
        // authorizer limits to its own node and the objects of its pods.
        let node_token = crate::random::random_hex(16).map_err(io(&cp.dir))?;
        std::fs::write(
            &tokens,
            format!(
                "{token},admin,admin,\"system:masters\"\n{node_token},system:node:{NODE_NAME},system:node:{NODE_NAME},\"system:nodes\"\n"
            ),
        )
        .map_err(io(&tokens))?;
        std::fs::write(&cp.kubeconfig, kubeconfig_yaml(&cp.server, &pki.ca_cert, &token))
            .map_err(io(&cp.kubeconfig))?;
        let node_kubeconfig = cp.node_kubeconfig();
        std::fs::write(&node_kubeconfig, kubeconfig_yaml(&cp.server, &pki.ca_cert, &node_token))
            .map_err(io(&node_kubeconfig))?;

        let begun = Instant::now();
        cp.spawn("etcd", &bins.etcd, etcd_args(&cp.dir, etcd_port, peer_port))?;
        cp.spawn("kube-apiserver", &bins.apiserver, apiserver_args(&cp.dir, &pki, etcd_port, api_port, &tokens))?;
        let client = cp.client().await?;
        cp.wait_apiserver_ready(&client, options.start_timeout).await?;
        tracing::info!(elapsed = ?begun.elapsed(), server = %cp.server, "kube-apiserver ready");

        cp.spawn("kube-controller-manager", &bins.controller_manager, controller_manager_args(&cp.kubeconfig, &pki))?;
        cp.wait_controller_manager_working(&client, options.start_timeout).await?;
        tracing::info!(elapsed = ?begun.elapsed(), "control plane ready");
        Ok(cp)
    }

    /// The kubeconfig (admin token, `system:masters`) for kube clients and `/usr/bin/kubectl`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubelet's kubeconfig (user `system:node:127.0.0.1`, group `system:nodes`).
    pub fn node_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubelet.kubeconfig")
    }

    /// The CA that signed the apiserver's certificate and that kubelets trust for client certs.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The API server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(443)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The directory with the certificates, kubeconfig, data and `<component>.log` files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file of `etcd`, `kube-apiserver` or `kube-controller-manager`.
    pub fn log(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{component}.log"))
    }

    /// The client configuration of [`ControlPlane::kubeconfig`], for tests that change it (a
    /// proxy in front of the API server, no retries, a counting client).
    pub async fn config(&self) -> Result<Config, ControlPlaneError> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
    }

    /// A new client, built from [`ControlPlane::kubeconfig`] on the caller's tokio runtime.
    pub async fn client(&self) -> Result<Client, ControlPlaneError> {
        Client::try_from(self.config().await?).map_err(ControlPlaneError::Client)
    }

    /// The PID of `component` (`etcd`, `kube-apiserver` or `kube-controller-manager`) while it
    /// runs.
    pub fn pid(&self, component: &str) -> Option<u32> {
        let mut processes = self.processes();
        let process = processes.iter_mut().find(|p| p.name() == component)?;
        (!process.exited()).then(|| process.pid())
    }

    /// Kills `component` at once (`SIGKILL` by its PID, as a crash or an OOM kill would) and reaps
    /// it. Its flags, data dir and log stay, so [`ControlPlane::restart_stopped`] starts it again
    /// as it was. Returns the PID it had.
    pub fn kill(&self, component: &str) -> Result<u32, ControlPlaneError> {
        let mut processes = self.processes();
        let process = processes
            .iter_mut()
            .find(|p| p.name() == component)
            .ok_or_else(|| ControlPlaneError::UnknownComponent(component.to_owned()))?;
        let pid = process.pid();
        process.kill(&self.reaper);
        tracing::info!(component, pid, "killed");
        Ok(pid)
    }

    /// Starts again, in start order (etcd first), every component that was killed or has exited,
    /// with the same flags, ports and data dir (etcd keeps its data), and waits up to `timeout`
    /// until the API server is ready again. Returns each restarted component with its new PID.
    pub async fn restart_stopped(&self, timeout: Duration) -> Result<Vec<(String, u32)>, ControlPlaneError> {
        let begun = Instant::now();
        let restarted = {
            let mut processes = self.processes();
            let mut restarted = Vec::new();
            for process in processes.iter_mut() {
                if !process.exited() {
                    continue;
                }
                let pid = process.respawn(&self.reaper)?;
                tracing::info!(component = process.name(), pid, "restarted");
                restarted.push((process.name().to_owned(), pid));
            }
            restarted
        };
        let client = self.client().await?;
        self.wait_apiserver_ready(&client, timeout).await?;
        tracing::info!(elapsed = ?begun.elapsed(), "kube-apiserver ready again");
        // The controller-manager survives the outage but its informers back off; tests that
        // create namespaces next need it caught up (it gives each namespace its ServiceAccount).
        let probe = crate::random::unique_name("restart-probe");
        crate::namespace::create_namespace_within(&client, &probe, timeout)
            .await
            .map_err(ControlPlaneError::ControllersBehind)?;
        tracing::info!(elapsed = ?begun.elapsed(), "kube-controller-manager caught up");
        Ok(restarted)
    }

    fn processes(&self) -> MutexGuard<'_, Vec<Supervised>> {
        self.processes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&mut self, name: &str, program: &Path, args: Vec<String>) -> Result<(), ControlPlaneError> {
        let log = self.log(name);
        let process = Supervised::spawn(name, program, args, &log, &self.reaper)?;
        self.processes().push(process);
        Ok(())
    }

    async fn wait_apiserver_ready(&self, client: &Client, timeout: Duration) -> Result<(), ControlPlaneError> {
        self.poll("kube-apiserver", timeout, || async {
            let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
            client.request_text(request).await.map(drop).map_err(|e| e.to_string())
        })
        .await
    }

    async fn wait_controller_manager_working(
        &self,
        client: &Client,
        timeout: Duration,
    ) -> Result<(), ControlPlaneError> {
        self.poll("kube-controller-manager", timeout, || async {
            crate::namespace::default_service_account_ready(client, "default").await
        })
        .await
    }

    async fn poll<F, Fut>(&self, component: &'static str, timeout: Duration, check: F) -> Result<(), ControlPlaneError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        Ok(poll_startup(&self.processes, component, &self.log(component), timeout, check).await?)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut processes = std::mem::take(&mut *self.processes());
        for process in processes.iter_mut().rev() {
            process.stop(Duration::from_secs(5), &self.reaper);
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ControlPlaneError + '_ {
    move |source| ControlPlaneError::Io { path: path.to_owned(), source }
}

fn kubeconfig_yaml(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: tiepdan
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: tiepdan
  context:
    cluster: tiepdan
    user: admin
    namespace: default
current-context: tiepdan
",
        ca = ca.display()
    )
}

fn etcd_args(dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=tiepdan".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=tiepdan={peer}"),
        "--initial-cluster-state=new".into(),
        "--logger=zap".into(),
        "--log-outputs=stderr".into(),
    ]
}

fn apiserver_args(dir: &Path, pki: &Pki, etcd_port: u16, port: u16, tokens: &Path) -> Vec<String> {
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        "--insecure-port=0".into(),
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        format!("--token-auth-file={}", tokens.display()),
        "--authorization-mode=Node,RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", pki.sa_public_key.display()),
        format!("--service-account-signing-key-file={}", pki.sa_key.display()),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--kubelet-client-certificate={}", pki.kubelet_client_cert.display()),
        format!("--kubelet-client-key={}", pki.kubelet_client_key.display()),
        // Prefer the node's InternalIP (127.0.0.1) for logs and exec.
        "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
        // The default reconciler would publish 127.0.0.1 as the `kubernetes` Service's endpoint,
        // which endpoint validation rejects (loopback), logging an error every 10 s.
        "--endpoint-reconciler-type=none".into(),
        "--profiling=false".into(),
    ]
}

fn controller_manager_args(kubeconfig: &Path, pki: &Pki) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        // nodelifecycle marks a node whose kubelet stopped heartbeating NotReady; podgc removes the pods
        // of a deleted node; endpointslice serves hostNetwork pods (Endpoints refuse 127.0.0.1).
        "--controllers=serviceaccount,serviceaccount-token,namespace,garbagecollector,deployment,replicaset,nodelifecycle,podgc,endpointslice".into(),
        format!("--service-account-private-key-file={}", pki.sa_key.display()),
        format!("--root-ca-file={}", pki.ca_cert.display()),
        "--use-service-account-credentials=false".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        "--port=0".into(),
    ]
}
