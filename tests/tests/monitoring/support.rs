//! What the monitoring tests share: the cluster with the prometheus-operator CRDs and a Prometheus
//! process on 127.0.0.1.

use std::path::PathBuf;
use std::time::Duration;

use tiepdan_harness::process::{make_temp_dir, Reaper, Supervised};
use tiepdan_harness::{wait_for, ControlPlane};
use tiepdan_operator::controller::monitoring;
use tokio::sync::OnceCell;

use crate::common::{cluster, kubectl_apply_yaml, wait_crds_established};

/// Just enough of prometheus-operator's CRDs for the API server to store the objects.
fn crd(plural: &str, kind: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.monitoring.coreos.com}}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {singular}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
",
        singular = plural.trim_end_matches('s')
    )
}

static MONITORING_CRDS: OnceCell<()> = OnceCell::const_new();

/// The shared control plane with `crds/` and the prometheus-operator CRDs, established.
pub async fn cluster_with_prometheus_operator() -> &'static ControlPlane {
    let cp = cluster().await;
    MONITORING_CRDS
        .get_or_init(|| async {
            let yaml = format!("{}---\n{}", crd("podmonitors", "PodMonitor"), crd("prometheusrules", "PrometheusRule"));
            let out = kubectl_apply_yaml(cp, "default", &yaml);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            wait_crds_established(&cp.client().await.unwrap(), &monitoring::PROMETHEUS_OPERATOR_CRDS).await;
        })
        .await;
    cp
}

/// A Prometheus server (Debian's `prometheus`) on 127.0.0.1, stopped by PID on drop.
pub struct Prometheus {
    pub url: String,
    dir: PathBuf,
    process: Supervised,
    reaper: Reaper,
    http: reqwest::Client,
}

/// `prometheus` on PATH; `scripts/install-deps.sh` installs it.
fn prometheus_bin() -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("prometheus is not installed: run scripts/install-deps.sh (Debian package `prometheus`)")
    })
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML; `rules.json` in its directory holds `rules`) and
    /// waits until it is ready.
    pub async fn start(config: &str, rules: &str) -> Prometheus {
        let bin = prometheus_bin();
        let dir = make_temp_dir("tiepdan-prometheus").unwrap();
        let remove = std::env::var_os("TIEPDAN_KEEP_CLUSTER").is_none();
        let reaper = Reaper::arm(&dir, remove).unwrap();
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        std::fs::write(dir.join("rules.json"), rules).unwrap();
        let port = tiepdan_harness::process::free_ports(1).unwrap()[0];
        let args = vec![
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_owned(),
        ];
        let process = Supervised::spawn("prometheus", &bin, args, &dir.join("prometheus.log"), &reaper).unwrap();
        let p =
            Prometheus { url: format!("http://127.0.0.1:{port}"), dir, process, reaper, http: reqwest::Client::new() };
        wait_for(Duration::from_secs(60), "Prometheus to be ready", || async {
            match p.http.get(format!("{}/-/ready", p.url)).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(r.status().to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log_tail()));
        p
    }

    pub fn log_tail(&self) -> String {
        tiepdan_harness::process::log_tail(self.process.log(), 30)
    }

    /// GETs `/api/v1/<path>` with `params`; `Err` with Prometheus' error when it fails.
    pub async fn api(&self, path: &str, params: &[(&str, String)]) -> Result<serde_json::Value, String> {
        let r = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(params)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("{}: {}", v["errorType"], v["error"]))
        }
    }

    /// The series `expr` returns over `[start, end]` (Unix seconds) at a 1 s step, as a dashboard
    /// panel evaluates it.
    pub async fn query_range(&self, expr: &str, start: f64, end: f64) -> Result<Vec<serde_json::Value>, String> {
        let params = [
            ("query", expr.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", "1".to_owned()),
        ];
        let data = self.api("query_range", &params).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The series `expr` returns now.
    pub async fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("query", &[("query", expr.to_owned())]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(5), &self.reaper);
        if std::env::var_os("TIEPDAN_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
