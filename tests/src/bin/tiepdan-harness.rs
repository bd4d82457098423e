//! `tiepdan-harness up`: a control plane plus node emulation in the foreground, for humans and
//! the README demo. Ctrl-C (or SIGTERM) stops everything.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tiepdan_harness::{ControlPlane, ControlPlaneOptions, Node, NodeMode, NodeOptions, RealNode, RealNodeOptions};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "A local Kubernetes control plane on 127.0.0.1 with an emulated node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start etcd, kube-apiserver, kube-controller-manager and the node emulation.
    Up {
        /// Keep the cluster's files (kubeconfig, logs, pod dirs) here; default: a temp dir
        /// removed on exit.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Run `media-worker` containers as real processes of this binary; default: simulate
        /// every pod.
        /// Not used with --real-node, whose workers run from the media-worker image.
        #[arg(long, env = "TIEPDAN_MEDIA_WORKER_BIN")]
        media_worker_bin: Option<PathBuf>,
        /// Run a real node instead of the emulation: containerd + runc, kube-scheduler and
        /// kubelet on 127.0.0.1, with the images of scripts/images.sh imported.
        #[arg(long)]
        real_node: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube's client logs every failed request, including the expected 500s of /readyz
            // while the apiserver boots.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up { dir, media_worker_bin, real_node } => up(dir, media_worker_bin, real_node).await,
    }
}

async fn up(dir: Option<PathBuf>, media_worker_bin: Option<PathBuf>, real_node: bool) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("failed to handle SIGTERM")?;

    let options = ControlPlaneOptions { dir: dir.clone(), ..ControlPlaneOptions::default() };
    let started = std::time::Instant::now();
    let cp = ControlPlane::start(options).await.context("failed to start the control plane")?;
    // Either node: both stop everything they started when dropped (the emulation gracefully).
    enum Running {
        Real(RealNode),
        Emulated(Node),
    }
    let node = if real_node {
        let options = RealNodeOptions { dir: dir.map(|d| d.join("node")), ..RealNodeOptions::with_project_images() };
        Running::Real(RealNode::start(&cp, options).await.context("failed to start the real node")?)
    } else {
        let client = cp.client().await.context("failed to build a client")?;
        let mode = match media_worker_bin {
            Some(bin) => NodeMode::Processes { media_worker_bin: std::path::absolute(bin)? },
            None => NodeMode::Simulated,
        };
        let node_options = NodeOptions {
            dir: dir.map(|d| d.join("node")),
            // Keep clear of test binaries' pod IPs (block 0).
            ip_block: 1,
            ..NodeOptions::new(mode)
        };
        Running::Emulated(Node::start(client, node_options).context("failed to start the node emulation")?)
    };
    let node_dir = match &node {
        Running::Real(n) => n.dir(),
        Running::Emulated(n) => n.dir(),
    };
    eprintln!("control plane and node ready in {:.1?} at {}", started.elapsed(), cp.server());
    eprintln!("logs: {}  node: {}", cp.dir().display(), node_dir.display());
    println!("export KUBECONFIG={}", cp.kubeconfig().display());

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping");
    match node {
        Running::Real(n) => drop(n),
        Running::Emulated(n) => n.shutdown().await,
    }
    drop(cp);
    Ok(())
}
