//! tiepdan operator: runs online citizen reception sessions on Kubernetes.
#![forbid(unsafe_code)]

pub mod api;
pub mod api_requests;
pub mod apply;
pub mod build;
pub mod clock;
pub mod controller;
pub mod crdgen;
pub mod http;
pub mod leader;
pub mod link_generations;
pub mod links;
pub mod metrics;
pub mod monitoring_gen;
pub mod node_address;
pub mod pki;
pub mod rbac;
pub mod request_timeout;
pub mod timeline;
pub mod tokens;
pub mod topology;
pub mod validate;
pub mod webhook;
pub mod worker_client;
pub mod write_gate;

pub use tiepdan_telemetry as telemetry;

/// How the operator appears in logs and traces.
pub const TELEMETRY: telemetry::Service =
    telemetry::Service { name: "tiepdan-operator", default_filter: "info,kube=warn" };
