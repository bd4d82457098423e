//! `tiepdan-media-worker`: see `tiepdan_media_worker` for the parts; this only dispatches.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser as _;
use tiepdan_media_worker::config::{Cli, Command, ServeConfig, TokenArgs};
use tiepdan_media_worker::probe::tls::ClientTls;
use tiepdan_media_worker::probe::{run_probe, ProbeOptions};
use tiepdan_media_worker::tokens::{unix_now, JoinClaims, TokenKey};
use tiepdan_media_worker::{logging, server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = logging::init(cli.log_format).context("failed to set up logging")?;
    let result = dispatch(cli).await;
    if let Err(e) = &result {
        write_termination_message(&format!("{e:#}"));
    }
    // Stopping the exporter flushes the last spans; it blocks, so not on a runtime thread.
    tokio::task::spawn_blocking(move || drop(telemetry)).await.context("failed to stop telemetry")?;
    result
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig::from_args(*args).await.context("invalid configuration")?;
            server::serve(config).await.context("the worker failed")?;
        }
        Command::Probe(args) => {
            let mut options = ProbeOptions::new(args.url, args.token);
            options.duration = std::time::Duration::from_secs(args.seconds);
            options.rate_pps = args.rate_pps;
            options.local_ip = args.local_ip;
            if let Some(ca_file) = &args.ca_file {
                options.tls = Some(ClientTls::from_pem_file(ca_file, args.server_name).context("invalid --ca-file")?);
            }
            let report = run_probe(&options).await.context("the probe failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Token(args) => println!("{}", mint(&args)?),
        Command::AdminToken(args) => {
            let key = TokenKey::from_file(&args.key_file)?;
            println!("{}", key.mint_admin(unix_now(), args.ttl_seconds, args.pod.as_deref())?);
        }
    }
    Ok(())
}

/// In a container the kubelet mounts this file and copies its content into the pod status
/// (`lastState.terminated.message`), which the operator quotes in the session's WorkerReady
/// condition: "a port already in use" reaches the admin without reading logs. Outside a
/// container the file does not exist and nothing is written.
fn write_termination_message(message: &str) {
    const PATH: &str = "/dev/termination-log";
    if std::path::Path::new(PATH).exists() {
        let _ = std::fs::write(PATH, message);
    }
}

fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    let key = TokenKey::from_file(&args.key_file)?;
    let mut claims = JoinClaims::for_point(
        &args.session,
        &args.point,
        args.name.as_deref().unwrap_or(args.point.as_str()),
        args.role.into(),
        &args.title,
        unix_now(),
        args.ttl_minutes.saturating_mul(60),
    );
    claims.epoch = args.epoch;
    Ok(key.mint_join(&claims)?)
}
