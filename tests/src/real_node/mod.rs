//! A real node: containerd + runc, kube-scheduler and kubelet 1.20.2 on 127.0.0.1, joined to a
//! [`ControlPlane`].
//!
//! ```text
//!  ControlPlane (etcd, apiserver, controller-manager)
//!       ▲ kubelet.kubeconfig (system:node:127.0.0.1)        ▲ admin kubeconfig
//!  kubelet ──CRI v1alpha2──► containerd ──► shim ──► runc   kube-scheduler
//!       │ --hostname-override=127.0.0.1                      │
//!       └ pods: hostNetwork on 127.0.0.1, or a netns behind the bridge in netns `tiepdan-<pid>-<n>`
//! ```
//!
//! Network rule: the root namespace gets `unreachable` routes for the pod and Service CIDRs, so
//! no pod or Service address can leave the machine; pod-to-pod traffic stays inside the harness's
//! network namespace. Only one node runs on a machine at a time (kubelet's cgroups and
//! `/var/log/pods` are machine-wide), enforced by a lock file.
//!
//! Stopping (drop, or the reaper if the test binary dies) runs one script, [`cleanup`], that
//! leaves no container, shim, mount, netns, route or changed sysctl behind.

pub mod cleanup;
pub mod config;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

use crate::control_plane::{ControlPlane, NODE_NAME, SERVICE_CIDR};
use crate::process::{make_temp_dir, poll_startup, ProcessError, Reaper, StartupError, Supervised};
use config::{Layout, SyncSettings};

/// The pod network's CIDR (inside the harness's namespace; unreachable from the root one).
pub const POD_CIDR: &str = "10.244.0.0/24";
/// Kubernetes' pause container, built from its source (`build/pause/linux/pause.c`).
pub const PAUSE_IMAGE: &str = "localhost/tiepdan/pause:1.20.2";
/// kubelet rewrites these on start (1.20 has no switch); they are restored on stop.
const SYSCTLS: [&str; 3] = ["vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"];
const LOCK: &str = "/run/lock/tiepdan-node.lock";
const INSTALL_HINT: &str = "run scripts/install-control-plane.sh";

#[derive(Debug, thiserror::Error)]
pub enum RealNodeError {
    #[error("{what} not found at {}; {INSTALL_HINT}", path.display())]
    MissingBinary { what: &'static str, path: PathBuf },
    #[error("image archive {} not found; run scripts/images.sh", path.display())]
    MissingImage { path: PathBuf },
    #[error("importing {} into containerd failed: {stderr}", path.display())]
    Import { path: PathBuf, stderr: String },
    #[error("stale containerd socket {}: it exists but nothing listens; remove it or use a fresh directory", path.display())]
    StaleSocket { path: PathBuf },
    #[error("a containerd already listens on {}; stop it or use a fresh directory", path.display())]
    SocketInUse { path: PathBuf },
    #[error("another tiepdan node holds {LOCK} (one node per machine: kubelet's cgroups are machine-wide); waited {waited:?}")]
    Locked { waited: Duration },
    #[error("failed to prepare {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("failed to build a client for the control plane")]
    Client(#[from] Box<crate::ControlPlaneError>),
    #[error("the shared control plane did not start")]
    ControlPlane(#[source] Box<crate::ControlPlaneError>),
    #[error(transparent)]
    Startup(#[from] StartupError),
}

#[derive(Debug, Clone)]
pub struct RealNodeOptions {
    /// `None`: a fresh temp dir, removed on stop unless `TIEPDAN_KEEP_CLUSTER` is set.
    pub dir: Option<PathBuf>,
    /// OCI archives imported into containerd's `k8s.io` namespace before the kubelet starts; the
    /// pause image must be among them.
    pub images: Vec<PathBuf>,
    pub sync: SyncSettings,
    /// Bound on each step: containerd's socket, the node's first fresh Ready heartbeat.
    pub start_timeout: Duration,
    /// Kubernetes binaries; `None`: the control plane's default (`$TIEPDAN_K8S_BIN` or the cache).
    pub k8s_bin_dir: Option<PathBuf>,
}

impl RealNodeOptions {
    /// The images `scripts/images.sh` built (pause, operator, media worker, entry) from
    /// `$TIEPDAN_IMAGES_DIR`.
    pub fn with_project_images() -> Self {
        let dir = images_dir();
        let images = ["pause", "tiepdan-operator", "tiepdan-media-worker", "tiepdan-entry"]
            .iter()
            .map(|name| dir.join(format!("{name}.oci.tar")))
            .collect();
        Self { images, ..Self::default() }
    }
}

impl Default for RealNodeOptions {
    fn default() -> Self {
        Self {
            dir: None,
            images: Vec::new(),
            sync: SyncSettings::default(),
            start_timeout: Duration::from_secs(60),
            k8s_bin_dir: None,
        }
    }
}

/// Where `scripts/images.sh` writes its archives: `$TIEPDAN_IMAGES_DIR`, else
/// `$CARGO_TARGET_DIR/images`.
pub fn images_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TIEPDAN_IMAGES_DIR") {
        return dir.into();
    }
    // scripts/env.sh's default.
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from).join("images")
}

struct Binaries {
    containerd: PathBuf,
    ctr: PathBuf,
    kubelet: PathBuf,
    scheduler: PathBuf,
    cni_plugins: PathBuf,
}

impl Binaries {
    fn locate(k8s: &Path) -> Result<Self, RealNodeError> {
        let found = |what, path: PathBuf| {
            if path.exists() {
                Ok(path)
            } else {
                Err(RealNodeError::MissingBinary { what, path })
            }
        };
        found("runc", PathBuf::from("/usr/sbin/runc"))?;
        found("nsenter", PathBuf::from("/usr/bin/nsenter"))?;
        Ok(Self {
            containerd: found("containerd", PathBuf::from("/usr/bin/containerd"))?,
            ctr: found("ctr", PathBuf::from("/usr/bin/ctr"))?,
            kubelet: found("kubelet", k8s.join("kubelet"))?,
            scheduler: found("kube-scheduler", k8s.join("kube-scheduler"))?,
            cni_plugins: found("the CNI plugins", PathBuf::from("/usr/lib/cni"))?,
        })
    }
}

/// A running node. Dropping it stops everything and undoes every change (see [`cleanup`]).
pub struct RealNode {
    layout: Layout,
    remove_dir: bool,
    ctr: PathBuf,
    processes: Mutex<Vec<Supervised>>,
    reaper: Reaper,
    _lock: File,
    ready_after: Duration,
}

static SHARED: tokio::sync::OnceCell<RealNode> = tokio::sync::OnceCell::const_new();

impl RealNode {
    /// One node per test binary, on [`ControlPlane::shared`], started with the project's images on
    /// first use. Like the control plane it is never dropped: the reaper undoes everything when
    /// the binary exits. Test binaries run one after another, so the machine-wide lock is free.
    pub async fn shared() -> Result<(&'static ControlPlane, &'static RealNode), RealNodeError> {
        let cp = ControlPlane::shared().await.map_err(|e| RealNodeError::ControlPlane(Box::new(e)))?;
        let node = SHARED.get_or_try_init(|| RealNode::start(cp, RealNodeOptions::with_project_images())).await?;
        Ok((cp, node))
    }

    /// Starts containerd, imports the images, starts kube-scheduler and kubelet, and waits for
    /// the node's first Ready heartbeat newer than this start (an old Ready in etcd is stale).
    pub async fn start(cp: &ControlPlane, options: RealNodeOptions) -> Result<RealNode, RealNodeError> {
        let begun = Instant::now();
        let k8s = options.k8s_bin_dir.clone().unwrap_or_else(crate::control_plane::default_k8s_bin_dir);
        let bins = Binaries::locate(&k8s)?;
        for image in &options.images {
            if !image.is_file() {
                return Err(RealNodeError::MissingImage { path: image.clone() });
            }
        }
        let lock = take_lock(options.start_timeout).await?;
        let keep = std::env::var_os("TIEPDAN_KEEP_CLUSTER").is_some();
        let (dir, remove_dir) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                (dir.clone(), false)
            }
            None => (make_temp_dir("tiepdan-node")?, !keep),
        };
        let layout = Layout { dir };
        check_socket(&layout.containerd_socket())?;
        let reaper = Reaper::arm(&layout.dir, remove_dir)?;
        let node = RealNode {
            layout,
            remove_dir,
            ctr: bins.ctr.clone(),
            processes: Mutex::new(Vec::new()),
            reaper,
            _lock: lock,
            ready_after: Duration::ZERO,
        };
        // From here on an error drops `node`, which runs the cleanup script; its dir (with the
        // logs the error names) is kept.
        let mut node = node;
        match node.boot(cp, &bins, &options).await {
            Ok(()) => {
                node.ready_after = begun.elapsed();
                tracing::info!(elapsed = ?node.ready_after, "real node Ready");
                Ok(node)
            }
            Err(e) => {
                node.remove_dir = false;
                Err(e)
            }
        }
    }

    async fn boot(&self, cp: &ControlPlane, bins: &Binaries, options: &RealNodeOptions) -> Result<(), RealNodeError> {
        let node = self;
        let netns =
            format!("tiepdan-{}-{}", std::process::id(), crate::random::random_hex(2).map_err(io(&node.layout.dir))?);
        let routes = vec![POD_CIDR.to_owned(), SERVICE_CIDR.to_owned()];
        node.write_cleanup(&netns, &routes)?;
        node.write_files(cp, bins, &netns, options)?;
        run("ip", &["netns", "add", &netns])?;
        for route in &routes {
            run("ip", &["route", "replace", "unreachable", route])?;
        }

        let sock = node.layout.containerd_socket();
        node.spawn(
            "containerd",
            &bins.containerd,
            vec![format!("--config={}", node.layout.containerd_config().display())],
        )?;
        node.poll("containerd", options.start_timeout, || async {
            std::os::unix::net::UnixStream::connect(&sock).map(drop).map_err(|e| e.to_string())
        })
        .await?;
        for image in &options.images {
            node.import(image)?;
        }

        let kubelet_started = k8s_openapi::jiff::Timestamp::now();
        node.spawn(
            "kube-scheduler",
            &bins.scheduler,
            vec![
                format!("--kubeconfig={}", cp.kubeconfig().display()),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--port=0".into(),
                "--secure-port=0".into(),
            ],
        )?;
        node.spawn("kubelet", &bins.kubelet, node.kubelet_args(cp))?;
        let client = cp.client().await.map_err(Box::new)?;
        node.wait_ready(&client, kubelet_started, options.start_timeout).await
    }

    /// How long [`RealNode::start`] took until the node was Ready.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    pub fn containerd_socket(&self) -> PathBuf {
        self.layout.containerd_socket()
    }

    /// The log file of `containerd`, `kubelet` or `kube-scheduler`.
    pub fn log(&self, component: &str) -> PathBuf {
        self.layout.log(component)
    }

    /// `ctr --address <socket> -n k8s.io <args>`.
    pub fn ctr(&self, args: &[&str]) -> Result<String, RealNodeError> {
        let sock = self.layout.containerd_socket();
        let mut all = vec!["--address", sock.to_str().unwrap_or_default(), "-n", "k8s.io"];
        all.extend_from_slice(args);
        run(self.ctr.to_str().unwrap_or("ctr"), &all)
    }

    /// The host PID of a running container, from its `containerd://<id>` status ID.
    pub fn container_pid(&self, container_id: &str) -> Result<u32, RealNodeError> {
        let id = container_id.trim_start_matches("containerd://");
        let out = self.ctr(&["tasks", "ls"])?;
        out.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?, f.next()?.parse::<u32>().ok()?))
            })
            .find(|(task, _)| *task == id)
            .map(|(_, pid)| pid)
            .ok_or_else(|| RealNodeError::Command { command: format!("ctr tasks ls ({id})"), stderr: out })
    }

    fn import(&self, image: &Path) -> Result<(), RealNodeError> {
        self.ctr(&["images", "import", "--snapshotter", "overlayfs", image.to_str().unwrap_or_default()])
            .map(drop)
            .map_err(|e| RealNodeError::Import { path: image.to_owned(), stderr: e.to_string() })
    }

    fn processes(&self) -> MutexGuard<'_, Vec<Supervised>> {
        self.processes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self, name: &str, program: &Path, args: Vec<String>) -> Result<(), RealNodeError> {
        let process = Supervised::spawn(name, program, args, &self.layout.log(name), &self.reaper)?;
        self.processes().push(process);
        Ok(())
    }

    fn write_cleanup(&self, netns: &str, routes: &[String]) -> Result<(), RealNodeError> {
        let sysctls = SYSCTLS
            .iter()
            .map(|s| {
                let path = format!("/proc/sys/{s}");
                let value = std::fs::read_to_string(&path).map_err(io(Path::new(&path)))?;
                Ok((path, value.trim().to_owned()))
            })
            .collect::<Result<Vec<_>, RealNodeError>>()?;
        let undo = cleanup::Undo {
            dir: self.layout.dir.display().to_string(),
            containerd_socket: self.layout.containerd_socket().display().to_string(),
            netns: netns.to_owned(),
            routes: routes.to_vec(),
            sysctls,
            netns_before: cleanup::entries(Path::new("/run/netns")),
            pod_logs_before: cleanup::entries(Path::new("/var/log/pods")),
            container_logs_before: cleanup::entries(Path::new("/var/log/containers")),
            netns_dir_was_mount: cleanup::is_mount_point("/run/netns"),
            containerd_run_existed: Path::new(cleanup::CONTAINERD_RUN).exists(),
            runtime_dirs: cleanup::RUNTIME_DIRS
                .iter()
                .map(|d| ((*d).to_owned(), cleanup::entries(Path::new(d))))
                .collect(),
        };
        let path = self.layout.cleanup_script();
        std::fs::write(&path, cleanup::script(&undo)).map_err(io(&path))
    }

    fn write_files(
        &self,
        cp: &ControlPlane,
        bins: &Binaries,
        netns: &str,
        options: &RealNodeOptions,
    ) -> Result<(), RealNodeError> {
        let l = &self.layout;
        for d in [l.cni_bin(), l.cni_conf(), l.cni_ipam(), l.kubelet_root(), l.containerd_root(), l.containerd_state()]
        {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        let write = |path: PathBuf, text: String| std::fs::write(&path, text).map_err(io(&path));
        write(l.containerd_config(), config::containerd_toml(l, PAUSE_IMAGE))?;
        let port = crate::process::free_port_below_ephemeral().map_err(io(&l.dir))?;
        write(l.kubelet_config(), config::kubelet_yaml(l, &cp.ca_cert(), port, options.sync))?;
        // Pods resolve nothing: no name may leave the machine.
        write(l.resolv_conf(), "nameserver 127.0.0.1\n".into())?;
        write(l.cni_conf().join("10-tiepdan.conflist"), config::cni_conflist(l, POD_CIDR))?;
        let wrapper = l.cni_bin().join(config::WRAPPED_BRIDGE);
        write(wrapper.clone(), config::bridge_wrapper(&bins.cni_plugins, netns))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).map_err(io(&wrapper))?;
        for plugin in ["loopback", "host-local"] {
            let link = l.cni_bin().join(plugin);
            if !link.exists() {
                std::os::unix::fs::symlink(bins.cni_plugins.join(plugin), &link).map_err(io(&link))?;
            }
        }
        Ok(())
    }

    fn kubelet_args(&self, cp: &ControlPlane) -> Vec<String> {
        let l = &self.layout;
        let endpoint = format!("unix://{}", l.containerd_socket().display());
        vec![
            format!("--config={}", l.kubelet_config().display()),
            format!("--kubeconfig={}", cp.node_kubeconfig().display()),
            "--container-runtime=remote".into(),
            format!("--container-runtime-endpoint={endpoint}"),
            format!("--image-service-endpoint={endpoint}"),
            format!("--root-dir={}", l.kubelet_root().display()),
            format!("--cert-dir={}", l.kubelet_root().join("pki").display()),
            format!("--volume-plugin-dir={}", l.dir.join("volume-plugins").display()),
            format!("--hostname-override={NODE_NAME}"),
            "--v=1".into(),
        ]
    }

    async fn wait_ready(
        &self,
        client: &Client,
        since: k8s_openapi::jiff::Timestamp,
        timeout: Duration,
    ) -> Result<(), RealNodeError> {
        let nodes: Api<Node> = Api::all(client.clone());
        self.poll("kubelet", timeout, || async {
            let node = nodes.get_opt(NODE_NAME).await.map_err(|e| e.to_string())?.ok_or("node not registered yet")?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .ok_or("no Ready condition yet")?;
            let fresh = ready.last_heartbeat_time.is_some_and(|t| t.0 >= since);
            match (ready.status.as_str(), fresh) {
                ("True", true) => Ok(()),
                ("True", false) => Err("Ready, but only from before this start".to_owned()),
                (s, _) => Err(format!("Ready={s}: {}", ready.message.unwrap_or_default())),
            }
        })
        .await
    }

    async fn poll<F, Fut>(&self, component: &'static str, timeout: Duration, check: F) -> Result<(), RealNodeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        Ok(poll_startup(&self.processes, component, &self.layout.log(component), timeout, check).await?)
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        // kubelet first, so nothing restarts the containers the script kills.
        let mut processes = std::mem::take(&mut *self.processes());
        for process in processes.iter_mut().rev() {
            process.stop(Duration::from_secs(5), &self.reaper);
        }
        let script = self.layout.cleanup_script();
        if script.exists() {
            if let Err(e) = std::process::Command::new("/bin/sh").arg(&script).status() {
                tracing::error!(error = %e, "the node's cleanup script did not run");
            }
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.layout.dir);
        }
    }
}

async fn take_lock(timeout: Duration) -> Result<File, RealNodeError> {
    let path = Path::new(LOCK);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let file = File::options().create(true).truncate(false).write(true).open(path).map_err(io(path))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(RealNodeError::Locked { waited: started.elapsed() }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(path)(e)),
        }
    }
}

/// A socket left by a containerd that died would make the new one fail later with an unclear
/// message; refuse early and say which file.
fn check_socket(path: &Path) -> Result<(), RealNodeError> {
    if !path.exists() {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(RealNodeError::SocketInUse { path: path.to_owned() }),
        Err(_) => Err(RealNodeError::StaleSocket { path: path.to_owned() }),
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, RealNodeError> {
    let command = format!("{program} {}", args.join(" "));
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| RealNodeError::Command { command: command.clone(), stderr: e.to_string() })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RealNodeError::Command { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RealNodeError + '_ {
    move |source| RealNodeError::Io { path: path.to_owned(), source }
}
