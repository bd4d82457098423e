//! The operator's monitoring against a real kube-apiserver 1.20 that has the prometheus-operator
//! CRDs (minimal ones: prometheus-operator itself does not run here): the per-session PodMonitor,
//! PrometheusRule and dashboard, and an end-to-end run where a real Prometheus scrapes the
//! operator and a live media worker. A test binary of its own, so the CRDs never reach the
//! `operator` binary's cluster, which covers their absence.

// Helpers outside #[test] fns fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

#[path = "../operator/common/mod.rs"]
mod common;
mod support;

mod e2e;
mod objects;
