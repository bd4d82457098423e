//! What every reconciler shares.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use super::crds::Detector;
use super::{certificate, monitoring};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::timeline::TimelineConfig;
use crate::worker_client::WorkerClient;

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub timeline: TimelineConfig,
    /// How often an active session's worker is asked for per-point status.
    pub status_poll: Duration,
    /// How many sessions are reconciled at once (`--max-concurrent-reconciles`). Unbounded, a
    /// provisioning wave of 1,000 sessions had 1,000 reconciles in flight, each holding its own
    /// copies of what it read (peak RSS 555 MiB); the API server bounds how fast they go anyway
    /// (docs/BENCHMARKS.md, "Operator at scale").
    pub max_concurrent_reconciles: u16,
    /// How long to wait before retrying after an error.
    pub error_backoff: Duration,
    /// The name under which events are reported.
    pub instance: Option<String>,
    /// Watch only this namespace (a namespace-scoped install); all namespaces when `None`.
    pub namespace: Option<String>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; nowhere when `None`.
    pub metrics_addr: Option<SocketAddr>,
    /// Extra labels on each PodMonitor and PrometheusRule, e.g. the `release` label a
    /// Prometheus' podMonitorSelector and ruleSelector match.
    pub monitoring_labels: BTreeMap<String, String>,
    /// How long the answer to "are the prometheus-operator (cert-manager) CRDs installed?" is reused.
    pub monitoring_check_interval: Duration,
    /// The namespace of the operator's CA Secret (`tiepdan-ca`) and trust bundle ConfigMap.
    pub ca_namespace: String,
    /// The names the operator's CA is constrained to (`--ca-permitted-name` and the service domains).
    pub ca_names: crate::pki::NamePolicy,
    /// The CA's validity and when its successor is prepared (`--ca-validity-days`,
    /// `--ca-rotation-lead-days`).
    pub ca_rotation: crate::pki::rotation::RotationPolicy,
    /// How often (real time) the CA rotation is re-checked; at once on a clock jump too.
    pub ca_check_interval: Duration,
    /// How long a session's signaling certificate is valid; it is renewed in its last third.
    pub session_cert_validity: jiff::SignedDuration,
    /// The counter the client's write requests go to (see [`crate::api_requests`]); exported on
    /// `/metrics` when set.
    pub api_requests: Option<crate::api_requests::ApiRequests>,
    /// `--turn-secret-name`: the chart's coturn shared secret, made once in `ca_namespace`.
    pub turn_secret: Option<String>,
    /// `--entry-url`: the stable entry (`tiepdan-entry`) offices' links name, published in every
    /// session's `status.entryUrl` for `tiepdan-operator links`.
    pub entry_url: Option<String>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            timeline: TimelineConfig::default(),
            status_poll: Duration::from_secs(10),
            max_concurrent_reconciles: 64,
            error_backoff: Duration::from_secs(15),
            instance: None,
            namespace: None,
            metrics_addr: None,
            monitoring_labels: BTreeMap::new(),
            monitoring_check_interval: Duration::from_secs(60),
            ca_namespace: "tiepdan-system".to_owned(),
            ca_names: crate::pki::NamePolicy::new([]),
            ca_rotation: crate::pki::rotation::RotationPolicy::default(),
            ca_check_interval: Duration::from_secs(300),
            // A week covers provisioning the day before, rehearsal, the session and its grace,
            // with renewal well before expiry for long-lived or rescheduled sessions.
            session_cert_validity: jiff::SignedDuration::from_hours(24 * 7),
            api_requests: None,
            turn_secret: None,
            entry_url: None,
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
    pub metrics: Arc<Metrics>,
    /// Whether the prometheus-operator CRDs are installed (cached).
    pub monitoring: Detector,
    /// Whether cert-manager's Certificate CRD is installed (cached).
    pub cert_manager: Detector,
    /// Set once the API server answered for every watched kind (`/readyz`).
    pub ready: Arc<AtomicBool>,
    /// The API server's minor version, read once (features such as NetworkPolicy `endPort`).
    pub server_minor: tokio::sync::OnceCell<u32>,
    /// The operator's CAs as the last rotation pass left them (see [`super::ca_rotation`]).
    pub ca: tokio::sync::Mutex<Option<crate::pki::rotation::CaSet>>,
    /// Held from reading which ports a pool's pods hold until the new pod that takes some is
    /// created. Sessions are reconciled concurrently (and the pool controller beside them): each
    /// read the same pods and took the same lowest free ports, so on one node all but one of
    /// those pods stayed Pending. Only the leader creates pods, so a lock in its process is enough.
    pub pod_ports: tokio::sync::Mutex<()>,
    /// What the reconcilers read instead of listing (see [`super::caches`]).
    pub caches: super::caches::Caches,
    /// The stores' write side, taken when the controllers start.
    pub cache_writers: std::sync::Mutex<Option<super::caches::Writers>>,
    /// Pods this process wrote that its pod cache may not show yet (see [`super::pod_view`]).
    pub written_pods: super::pod_view::Written,
    /// Builds this process applied that its caches may not show yet (see [`crate::apply::Ledger`]).
    pub applied: crate::apply::Ledger,
    /// Secrets read whole, by resourceVersion (see [`super::secret_memo`]).
    pub secrets: super::secret_memo::SecretMemo,
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
        let metrics = match &config.api_requests {
            Some(r) => Metrics::new().with_api_requests(r),
            None => Metrics::new(),
        };
        let (caches, writers) = super::caches::new();
        Self {
            caches,
            cache_writers: std::sync::Mutex::new(Some(writers)),
            written_pods: super::pod_view::Written::default(),
            applied: crate::apply::Ledger::default(),
            secrets: super::secret_memo::SecretMemo::default(),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clock,
            monitoring: Detector::new(&monitoring::PROMETHEUS_OPERATOR_CRDS, config.monitoring_check_interval),
            cert_manager: Detector::new(&certificate::CERT_MANAGER_CRDS, config.monitoring_check_interval),
            config,
            workers: WorkerClient::new(),
            metrics: Arc::new(metrics),
            ready: Arc::new(AtomicBool::new(false)),
            server_minor: tokio::sync::OnceCell::new(),
            ca: tokio::sync::Mutex::new(None),
            pod_ports: tokio::sync::Mutex::new(()),
        }
    }

    /// Starts the watches that fill [`Self::caches`] (once per process: `None` after the first
    /// call). The tasks stop when aborted.
    pub fn start_caches(&self) -> Option<(super::caches::Triggers, Vec<tokio::task::JoinHandle<()>>)> {
        let writers = self.cache_writers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()?;
        Some(super::caches::start(&self.client, self.config.namespace.as_deref(), writers))
    }

    /// The worker pods in `ns` with label `key` = `value`, as this process last wrote or saw them.
    pub fn pods_labelled(&self, ns: &str, key: &str, value: &str) -> Vec<Arc<k8s_openapi::api::core::v1::Pod>> {
        self.written_pods.view(&self.caches.pods, |p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && p.metadata.labels.as_ref().and_then(|l| l.get(key)).is_some_and(|v| v == value)
        })
    }

    /// The API server's minor version (`20` for 1.20), cached after the first answer.
    pub async fn server_minor(&self) -> Result<u32, kube::Error> {
        self.server_minor
            .get_or_try_init(|| async {
                let v = self.client.apiserver_version().await?;
                // Minor versions may carry a suffix, e.g. "20+" on some distributions.
                Ok(v.minor.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(0))
            })
            .await
            .copied()
    }
}
