//! tiepdan operator: runs online citizen reception sessions on Kubernetes.
#![forbid(unsafe_code)]

pub mod api;
pub mod apply;
pub mod build;
pub mod clock;
pub mod controller;
pub mod crdgen;
pub mod http;
pub mod leader;
pub mod links;
pub mod metrics;
pub mod monitoring_gen;
pub mod pki;
pub mod rbac;
pub mod telemetry;
pub mod timeline;
pub mod tokens;
pub mod topology;
pub mod validate;
pub mod webhook;
pub mod worker_client;
