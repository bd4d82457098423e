//! The command line (every flag has an environment variable, for the chart).

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The stable entry for offices: serves the console and routes each signaling connection to the
/// current worker of its token's session.
#[derive(Debug, Parser)]
#[command(name = "tiepdan-entry", version)]
pub struct Cli {
    /// Log lines as JSON (the cluster) or text (people).
    #[arg(long, env = "TIEPDAN_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Address to serve on: HTTPS with --tls-dir, else plain HTTP (behind an Ingress that
    /// terminates TLS).
    #[arg(long, env = "TIEPDAN_ENTRY_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,

    /// Directory with tls.crt (PEM chain, leaf first) and tls.key, e.g. a kubernetes.io/tls
    /// Secret volume: the certificate offices' browsers see. Re-read every
    /// --tls-reload-interval-ms.
    #[arg(long, env = "TIEPDAN_ENTRY_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,

    /// How often --tls-dir is checked for a new certificate (at least 100).
    #[arg(long, env = "TIEPDAN_ENTRY_TLS_RELOAD_INTERVAL_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub tls_reload_interval_ms: u64,

    /// PEM bundle of the CAs that sign workers' certificates (the operator's trust bundle
    /// ConfigMap `tiepdan-trust-bundle`, key ca.crt). Re-read for every connection.
    #[arg(long, env = "TIEPDAN_ENTRY_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: PathBuf,

    /// Route from this JSON file instead of the Kubernetes API (a host without Kubernetes;
    /// tests). See `static_routes`.
    #[arg(long, env = "TIEPDAN_ENTRY_ROUTES_FILE")]
    pub routes_file: Option<PathBuf>,
}
