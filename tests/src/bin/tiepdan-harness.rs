//! `tiepdan-harness up`: a control plane plus the real node in the foreground, for humans and
//! the README demo. Ctrl-C (or SIGTERM) stops everything and undoes what the node changed.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tiepdan_harness::{ControlPlane, ControlPlaneOptions, RealNode, RealNodeOptions};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "A local single-node Kubernetes cluster on 127.0.0.1 (kubelet, containerd, runc)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start etcd, kube-apiserver, kube-controller-manager, then the node: containerd + runc,
    /// kube-scheduler and kubelet on 127.0.0.1 with the images of scripts/images.sh imported.
    Up {
        /// Keep the cluster's files (kubeconfig, logs, the node's dir) here; default: a temp dir
        /// removed on exit.
        #[arg(long)]
        dir: Option<PathBuf>,
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
        Command::Up { dir } => up(dir).await,
    }
}

async fn up(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("failed to handle SIGTERM")?;

    let options = ControlPlaneOptions { dir: dir.clone(), ..ControlPlaneOptions::default() };
    let started = std::time::Instant::now();
    let cp = ControlPlane::start(options).await.context("failed to start the control plane")?;
    let options = RealNodeOptions { dir: dir.map(|d| d.join("node")), ..RealNodeOptions::with_project_images() };
    let node = RealNode::start(&cp, options).await.context("failed to start the real node")?;
    let node_dir = node.dir();
    eprintln!("control plane and node ready in {:.1?} at {}", started.elapsed(), cp.server());
    eprintln!("logs: {}  node: {}", cp.dir().display(), node_dir.display());
    println!("export KUBECONFIG={}", cp.kubeconfig().display());

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping");
    drop(node);
    drop(cp);
    Ok(())
}
