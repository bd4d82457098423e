//! The prometheus-operator `PodMonitor` that scrapes a session's media worker (`/metrics` on its
//! plain `admin` port). prometheus-operator labels the targets `job="<namespace>/<PodMonitor name>"`,
//! which the session's alerts and dashboard use for the worker's `up` and CPU series.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::labels;
use super::session_child_meta;
use crate::api::ReceptionSession;

/// A prometheus-operator `PodMonitor` (only the fields the operator sets).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(group = "monitoring.coreos.com", version = "v1", kind = "PodMonitor", namespaced, schema = "disabled")]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    pub selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

/// Which namespaces a PodMonitor looks in.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    pub match_names: Vec<String>,
}

/// One scraped endpoint of the selected pods.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    pub port: String,
    pub path: String,
    pub interval: String,
}

/// How often a session's worker is scraped: media quality alerts need a few samples a minute.
pub const SCRAPE_INTERVAL: &str = "15s";

/// The PodMonitor's name for a session.
pub fn name(session: &str) -> String {
    format!("{session}-worker")
}

/// The `job` label prometheus-operator gives the targets of PodMonitor `namespace/name`.
pub fn job(namespace: &str, pod_monitor: &str) -> String {
    format!("{namespace}/{pod_monitor}")
}

/// The PodMonitor for `session`'s worker, labelled for it and `extra_labels` (e.g. the `release`
/// label a Prometheus' podMonitorSelector wants).
pub fn build(session: &ReceptionSession, extra_labels: &BTreeMap<String, String>) -> PodMonitor {
    let sname = session.name_any();
    PodMonitor {
        metadata: session_child_meta(session, name(&sname), labels::COMPONENT_MONITORING, extra_labels),
        spec: PodMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (labels::SESSION.to_owned(), sname.clone()),
                    (labels::COMPONENT.to_owned(), labels::COMPONENT_WORKER.to_owned()),
                ])),
                ..Default::default()
            },
            namespace_selector: session.namespace().map(|ns| NamespaceSelector { match_names: vec![ns] }),
            pod_metrics_endpoints: vec![PodMetricsEndpoint {
                port: "admin".to_owned(),
                path: "/metrics".to_owned(),
                interval: SCRAPE_INTERVAL.to_owned(),
            }],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::{self, tests::session};

    #[test]
    fn the_pod_monitor_selects_only_this_sessions_worker_on_its_admin_port() {
        let pm = build(&session(), &BTreeMap::new());
        let sel = pm.spec.selector.match_labels.unwrap();
        assert_eq!(sel[labels::SESSION], "phien-thang-6");
        assert_eq!(sel[labels::COMPONENT], labels::COMPONENT_WORKER);
        assert_eq!(pm.spec.namespace_selector.unwrap().match_names, vec!["my-hao"]);
        let pod =
            worker_pod::build(&worker_pod::tests::pool(), "p", Some(&session()), worker_pod::WorkerPorts::default());
        let ports = pod.spec.unwrap().containers[0].ports.clone().unwrap();
        assert!(ports.iter().any(|p| p.name.as_deref() == Some(pm.spec.pod_metrics_endpoints[0].port.as_str())));
        assert_eq!(pm.metadata.labels.unwrap()[labels::SESSION], "phien-thang-6");
        assert_eq!(job("my-hao", &name("phien-thang-6")), "my-hao/phien-thang-6-worker");
    }

    #[test]
    fn it_serializes_as_prometheus_operator_expects() {
        let v = serde_json::to_value(build(&session(), &BTreeMap::new())).unwrap();
        assert_eq!(v["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(v["kind"], "PodMonitor");
        assert_eq!(v["spec"]["podMetricsEndpoints"][0]["port"], "admin");
        assert_eq!(v["spec"]["namespaceSelector"]["matchNames"][0], "my-hao");
    }
}
