//! What every reconciler shares.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use crate::clock::Clock;
use crate::timeline::TimelineConfig;
use crate::worker_client::WorkerClient;

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub timeline: TimelineConfig,
    /// How often an active session's worker is asked for per-point status.
    pub status_poll: Duration,
    /// How long to wait before retrying after an error.
    pub error_backoff: Duration,
    /// The name under which events are reported.
    pub instance: Option<String>,
    /// Watch only this namespace (a namespace-scoped install); all namespaces when `None`.
    pub namespace: Option<String>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            timeline: TimelineConfig::default(),
            status_poll: Duration::from_secs(10),
            error_backoff: Duration::from_secs(15),
            instance: None,
            namespace: None,
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub config: OperatorConfig,
    pub recorder: Recorder,
    pub workers: WorkerClient,
}

impl Context {
    /// An Api over the namespaces this operator watches.
    pub fn watched<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match &self.config.namespace {
            Some(ns) => kube::Api::namespaced(self.client.clone(), ns),
            None => kube::Api::all(self.client.clone()),
        }
    }

    pub fn new(client: Client, clock: Arc<dyn Clock>, config: OperatorConfig) -> Self {
        let reporter = Reporter { controller: "tiepdan-operator".into(), instance: config.instance.clone() };
        Self { recorder: Recorder::new(client.clone(), reporter), client, clock, config, workers: WorkerClient::new() }
    }
}
