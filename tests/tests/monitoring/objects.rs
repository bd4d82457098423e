//! With the prometheus-operator CRDs installed, a provisioned session gets a PodMonitor for its
//! worker, a PrometheusRule with its alerts and a dashboard ConfigMap, all labelled for it, and
//! they are deleted with the rest of its objects when it completes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::Client;
use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::api::{ReceptionSession, SessionPhase};
use tiepdan_operator::build::pod_monitor::PodMonitor;
use tiepdan_operator::build::prometheus_rule::PrometheusRule;
use tiepdan_operator::build::{labels, pod_monitor, prometheus_rule};
use tiepdan_operator::clock::SimClock;

use crate::common::{kubectl_ok, start_operator};
use crate::support::cluster_with_prometheus_operator;

const SESSION: &str = "tiep-dan-dinh-ky-thang-3";

async fn monitoring_objects(client: &Client, ns: &str) -> (usize, usize, usize) {
    let lp = ListParams::default().labels(&labels::session_selector(SESSION));
    let count = |n: Result<usize, kube::Error>| n.unwrap();
    let pm = count(Api::<PodMonitor>::namespaced(client.clone(), ns).list(&lp).await.map(|l| l.items.len()));
    let pr = count(Api::<PrometheusRule>::namespaced(client.clone(), ns).list(&lp).await.map(|l| l.items.len()));
    let cm = count(Api::<ConfigMap>::namespaced(client.clone(), ns).list(&lp).await.map(|l| l.items.len()));
    (pm, pr, cm)
}

#[tokio::test]
async fn a_session_gets_a_pod_monitor_rules_and_a_dashboard_that_go_when_it_completes() {
    let cp = cluster_with_prometheus_operator().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("mon");
    create_namespace(&client, &ns).await.unwrap();
    // Inside the rehearsal: everything is provisioned.
    let clock = SimClock::new("2027-03-14T07:10:00Z".parse().unwrap());
    let _op = start_operator(client.clone(), &ns, Arc::new(clock.clone()));
    kubectl_ok(cp, &["apply", "-n", &ns, "-f", "examples/my-hao/"]);
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);

    wait_for(Duration::from_secs(30), "MonitoringReady True", || {
        let sessions = sessions.clone();
        async move {
            let s = sessions.get(SESSION).await.map_err(|e| e.to_string())?;
            let c = s.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "MonitoringReady");
            match c {
                Some(c) if c.status == "True" && c.reason == "MonitoringApplied" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(monitoring_objects(&client, &ns).await, (1, 1, 1));

    let pm = Api::<PodMonitor>::namespaced(client.clone(), &ns).get(&pod_monitor::name(SESSION)).await.unwrap();
    let selector = pm.spec.selector.match_labels.unwrap_or_default();
    assert_eq!(selector.get(labels::SESSION).map(String::as_str), Some(SESSION));
    assert_eq!(pm.spec.pod_metrics_endpoints[0].path, "/metrics");
    let rule =
        Api::<PrometheusRule>::namespaced(client.clone(), &ns).get(&prometheus_rule::name(SESSION)).await.unwrap();
    let alerts: Vec<&str> = rule.spec.groups.iter().flat_map(|g| &g.rules).map(|r| r.alert.as_str()).collect();
    assert_eq!(
        alerts,
        [
            prometheus_rule::POINTS_UNVERIFIED_AFTER_DEADLINE,
            prometheus_rule::POINT_DISCONNECTED_WHILE_LIVE,
            prometheus_rule::PACKET_LOSS_HIGH,
            prometheus_rule::RTT_HIGH,
            prometheus_rule::WORKER_DOWN,
        ]
    );
    // What the operator stored is what the promtool-tested builder makes for this session.
    assert_eq!(rule.spec.groups, vec![prometheus_rule::session_group(&ns, SESSION)]);

    // 15 minutes after the end the session completes and its monitoring goes with its worker.
    clock.set("2027-03-15T04:15:00Z".parse().unwrap());
    wait_for(Duration::from_secs(30), "phase Completed with no monitoring objects left", || {
        let (sessions, client, ns) = (sessions.clone(), client.clone(), ns.clone());
        async move {
            let phase = sessions.get(SESSION).await.map_err(|e| e.to_string())?.status.and_then(|s| s.phase);
            let left = monitoring_objects(&client, &ns).await;
            if phase == Some(SessionPhase::Completed) && left == (0, 0, 0) {
                Ok(())
            } else {
                Err(format!("phase {phase:?}, (PodMonitors, PrometheusRules, ConfigMaps) left {left:?}"))
            }
        }
    })
    .await
    .unwrap();
}
