//! Without the prometheus-operator CRDs (this test binary's cluster never installs them), a
//! session says so in its `MonitoringReady` condition, still gets its Grafana dashboard, and the
//! dashboard goes with the session. (`tests/tests/monitoring/` covers the cluster that has them.)

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::api::ReceptionSession;
use tiepdan_operator::build::dashboard;
use tiepdan_operator::clock::SimClock;

use crate::common::{cluster, kubectl_ok, start_operator};

const SESSION: &str = "tiep-dan-dinh-ky-thang-3";

#[tokio::test]
async fn without_prometheus_operator_a_session_says_so_and_still_gets_its_dashboard() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("nomon");
    create_namespace(&client, &ns).await.unwrap();
    // Inside the rehearsal: everything is provisioned.
    let clock = SimClock::new("2027-03-14T07:10:00Z".parse().unwrap());
    let _op = start_operator(client.clone(), &ns, Arc::new(clock));
    kubectl_ok(cp, &["apply", "-n", &ns, "-f", "examples/my-hao/"]);
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);

    let condition = wait_for(Duration::from_secs(30), "MonitoringReady to report the missing CRDs", || {
        let sessions = sessions.clone();
        async move {
            let s = sessions.get(SESSION).await.map_err(|e| e.to_string())?;
            let c = s.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "MonitoringReady");
            match c {
                Some(c) if c.reason == "PrometheusOperatorMissing" => Ok(c),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(condition.status, "False");
    assert!(condition.message.contains("podmonitors.monitoring.coreos.com"), "{}", condition.message);

    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let cm = configmaps.get(&dashboard::name(SESSION)).await.expect("the dashboard ConfigMap exists");
    assert_eq!(cm.metadata.labels.unwrap_or_default().get(dashboard::SIDECAR_LABEL).map(String::as_str), Some("1"));
    let json = &cm.data.unwrap_or_default()[&dashboard::file_name(&ns, SESSION)];
    let v: serde_json::Value = serde_json::from_str(json).expect("the dashboard is JSON");
    let title = v["title"].as_str().unwrap_or_default();
    assert!(title.starts_with("Tiếp công dân định kỳ tháng 3/2027"), "titled after the session: {title}");
    assert!(title.contains(&format!("{ns}/{SESSION}")), "{title}");

    sessions.delete(SESSION, &DeleteParams::default()).await.unwrap();
    wait_for(Duration::from_secs(30), "the dashboard ConfigMap to go with the session", || async {
        match configmaps.get_opt(&dashboard::name(SESSION)).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_owned()),
        }
    })
    .await
    .unwrap();
}
