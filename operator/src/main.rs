//! `tiepdan-operator`: wiring only; the logic lives in the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tiepdan_operator::clock::SystemClock;
use tiepdan_operator::controller::{self, OperatorConfig};

#[derive(Parser)]
#[command(name = "tiepdan-operator", version, about = "Runs online citizen reception sessions on Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG or the in-cluster config (default).
    Run {
        /// Minutes before the rehearsal at which the worker, Service and tokens are provisioned.
        #[arg(long, env = "TIEPDAN_PROVISIONING_LEAD_MINUTES", default_value_t = 30)]
        provisioning_lead_minutes: i64,
        /// Minutes a session stays Live after its end before it completes.
        #[arg(long, env = "TIEPDAN_GRACE_MINUTES", default_value_t = 15)]
        grace_minutes: i64,
        /// Seconds between reads of an active session's worker status.
        #[arg(long, env = "TIEPDAN_STATUS_POLL_SECONDS", default_value_t = 10)]
        status_poll_seconds: u64,
        /// Watch only this namespace instead of all namespaces.
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Log format.
        #[arg(long, env = "TIEPDAN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
    /// Write the CustomResourceDefinitions as YAML files.
    Crd {
        /// The directory to write into.
        #[arg(long, default_value = "crds")]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run {
        provisioning_lead_minutes: 30,
        grace_minutes: 15,
        status_poll_seconds: 10,
        namespace: std::env::var("WATCH_NAMESPACE").ok(),
        log_format: "text".into(),
    }) {
        Command::Crd { out } => {
            for f in tiepdan_operator::crdgen::write(&out)? {
                println!("{}", out.join(f).display());
            }
        }
        Command::Run { provisioning_lead_minutes, grace_minutes, status_poll_seconds, namespace, log_format } => {
            init_tracing(&log_format);
            let client = kube::Client::try_default().await.context("failed to build a Kubernetes client")?;
            let mut config = OperatorConfig::default();
            config.timeline.provisioning_lead = jiff::SignedDuration::from_mins(provisioning_lead_minutes);
            config.timeline.grace = jiff::SignedDuration::from_mins(grace_minutes);
            config.status_poll = std::time::Duration::from_secs(status_poll_seconds);
            config.instance = std::env::var("POD_NAME").ok();
            config.namespace = namespace;
            tracing::info!("tiepdan-operator starting");
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            controller::run(client, Arc::new(SystemClock), config, shutdown).await;
        }
    }
    Ok(())
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
