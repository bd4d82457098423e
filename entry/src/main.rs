//! `tiepdan-entry`: see `tiepdan_entry` for the parts; this only wires them.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser as _;
use std::time::Duration;
use tiepdan_entry::config::{Cli, LogFormat};
use tiepdan_entry::kube_routes::KubeRoutes;
use tiepdan_entry::proxy::Proxy;
use tiepdan_entry::routes::Routes;
use tiepdan_entry::server::{self, ServeOptions};
use tiepdan_entry::static_routes::StaticRoutes;
use tiepdan_entry::upstream::Trust;
use tiepdan_telemetry::{Otlp, Service, Telemetry};

const SERVICE: Service = Service { name: "tiepdan-entry", default_filter: "info" };

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormat::Json => tiepdan_telemetry::LogFormat::Json,
        LogFormat::Text => tiepdan_telemetry::LogFormat::Text,
    };
    let telemetry =
        Telemetry::init(SERVICE, format, &Otlp::from_env(), std::io::stderr).context("failed to set up logging")?;
    let result = run(cli).await;
    tokio::task::spawn_blocking(move || drop(telemetry)).await.context("failed to stop telemetry")?;
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let routes = match &cli.routes_file {
        Some(path) => Routes::Static(StaticRoutes::new(path)),
        None => Routes::Kube(KubeRoutes::new(
            kube::Client::try_default().await.context("failed to reach the Kubernetes API")?,
        )),
    };
    let trust = Trust::new(&cli.upstream_ca_file);
    // Checked once at start so a wrong mount fails the pod, not every connection.
    trust.client_config().await.context("--upstream-ca-file")?;
    let options = ServeOptions {
        listen: cli.listen,
        tls_dir: cli.tls_dir,
        tls_reload_interval: Duration::from_millis(cli.tls_reload_interval_ms),
        proxy: Proxy { routes, trust },
    };
    server::serve(options).await.context("the entry failed")
}
