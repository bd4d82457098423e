//! End to end: a real Prometheus scrapes the in-process operator's `/metrics` and a live media
//! worker (a real `tiepdan-media-worker` process run by the harness node) while two points
//! exchange media during the rehearsal and then the live session; it evaluates the session's
//! PrometheusRule as the operator created it. Every PromQL expression of both dashboards (the
//! session's, read from its ConfigMap, and the overview) must evaluate without error, and return
//! data unless listed in [`MAY_BE_EMPTY`] with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use kube::ResourceExt;
use tiepdan_harness::wait_for;
use tiepdan_operator::api::{ReceptionSession, SessionPhase};
use tiepdan_operator::build::dashboard;
use tiepdan_operator::build::pod_monitor::{self, PodMonitor};
use tiepdan_operator::build::prometheus_rule::{self, PrometheusRule, RuleFile, OPERATOR_JOB};
use tiepdan_operator::controller::OperatorConfig;
use tiepdan_operator::monitoring_gen;

use crate::common::{exchange_media, live_session, session_trust, small_live_topology};
use crate::support::{cluster_with_prometheus_operator, Prometheus};

const SESSION: &str = "giam-sat";

/// Expressions that may return nothing in this setup, and why. They must still evaluate.
const MAY_BE_EMPTY: &[(&str, &str)] = &[(
    "tiepdan_operator_reconcile_errors_total",
    "no reconcile fails in a healthy run, so the error counter has no series",
)];

fn may_be_empty(expr: &str) -> Option<&'static str> {
    MAY_BE_EMPTY.iter().find(|(needle, _)| expr.contains(needle)).map(|(_, why)| *why)
}

async fn wait_session(
    sessions: &Api<ReceptionSession>,
    what: &str,
    ok: impl Fn(&ReceptionSession) -> bool,
) -> ReceptionSession {
    wait_for(Duration::from_secs(60), what, || async {
        let s = sessions.get(SESSION).await.map_err(|e| e.to_string())?;
        if ok(&s) {
            Ok(s)
        } else {
            Err(format!("{:?}", s.status))
        }
    })
    .await
    .unwrap()
}

fn condition(s: &ReceptionSession, type_: &str) -> Option<(String, String)> {
    let c = s.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_gets_data_for_every_dashboard_expression_from_the_operator_and_a_live_worker() {
    let cp = cluster_with_prometheus_operator().await;
    let client = cp.client().await.unwrap();
    let metrics_port = tiepdan_harness::process::free_ports(1).unwrap()[0];
    let with_metrics = |c| OperatorConfig { metrics_addr: Some(([127, 0, 0, 1], metrics_port).into()), ..c };
    let live = live_session(cp, &client, "e2e", with_metrics, |start, deadline| {
        small_live_topology("giam-sat", "Giám sát phiên tiếp công dân", start, deadline)
    })
    .await;
    let (ns, clock, now, start) = (live.ns.clone(), live.clock.clone(), live.now, live.start);
    let t0 = now.as_millisecond() as f64 / 1000.0;

    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    let s = wait_session(&sessions, "the worker serving the session over TLS and its monitoring applied", |s| {
        let serving =
            condition(s, "WorkerReady").is_some_and(|(st, m)| st == "True" && m.contains("serving the session"));
        let tls = condition(s, "CertificateReady").is_some_and(|(st, _)| st == "True");
        serving && tls && condition(s, "MonitoringReady").is_some_and(|(st, _)| st == "True")
    })
    .await;
    let pod_name = s.status.unwrap().worker.unwrap().pod.unwrap();
    let pod = Api::<Pod>::namespaced(client.clone(), &ns).get(&pod_name).await.unwrap();
    // A hostNetwork worker: the node's address, with the pair of host ports the pool gave it.
    let ports = tiepdan_operator::build::worker_ports::of_pod(&pod);
    let ip = pod.status.unwrap().pod_ip.unwrap();
    let (admin, signaling) = (format!("{ip}:{}", ports.admin), format!("{ip}:{}", ports.signaling));

    // Prometheus scrapes what the PodMonitor describes (with prometheus-operator's job label) and
    // the operator as the chart's job, and evaluates the PrometheusRule the operator created.
    let pm = Api::<PodMonitor>::namespaced(client.clone(), &ns).get(&pod_monitor::name(SESSION)).await.unwrap();
    let endpoint = &pm.spec.pod_metrics_endpoints[0];
    assert_eq!(endpoint.port, "admin");
    let worker_job = pod_monitor::job(&ns, &pm.name_any());
    let rule =
        Api::<PrometheusRule>::namespaced(client.clone(), &ns).get(&prometheus_rule::name(SESSION)).await.unwrap();
    let rules = serde_json::to_string(&RuleFile { groups: rule.spec.groups }).unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
rule_files: [rules.json]
scrape_configs:
- job_name: {OPERATOR_JOB}
  static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]
- job_name: '{worker_job}'
  metrics_path: {path}
  static_configs: [{{targets: ['{admin}'], labels: {{namespace: '{ns}', pod: '{pod_name}'}}}}]
",
        path = endpoint.path
    );
    let prom = Prometheus::start(&config, &rules).await;

    // Two points publish and consume each other, as the officers' consoles do.
    let tokens =
        Api::<Secret>::namespaced(client.clone(), &ns).get("giam-sat-join-tokens").await.unwrap().data.unwrap();
    let token = |p: &str| String::from_utf8(tokens[p].0.clone()).unwrap();
    let url = format!("wss://{signaling}/v1/ws");
    let trust = session_trust(&client, &ns, SESSION).await;
    let sender = exchange_media(&url, Some(&trust), &token("thi-xa-my-hao"), &token("di-su")).await;

    // The rehearsal verifies both points; then the session goes live, media still flowing.
    wait_session(&sessions, "both points verified", |s| {
        s.status.as_ref().and_then(|st| st.verified.as_deref()) == Some("2/2")
    })
    .await;
    clock.set(start);
    wait_session(&sessions, "phase Live", |s| s.status.as_ref().and_then(|st| st.phase) == Some(SessionPhase::Live))
        .await;
    let id = format!("{ns}/{SESSION}");
    wait_for(Duration::from_secs(30), "Prometheus to see the session Live", || async {
        let live =
            prom.query(&format!("tiepdan_operator_session_phase{{session=\"{id}\", phase=\"Live\"}} == 1")).await?;
        if live.is_empty() {
            Err("not yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", prom.log_tail()));

    // Every expression of both dashboards, as Grafana would evaluate them over the run.
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns).get(&dashboard::name(SESSION)).await.unwrap();
    let session_json: serde_json::Value =
        serde_json::from_str(&cm.data.unwrap()[&dashboard::file_name(&ns, SESSION)]).unwrap();
    let overview = monitoring_gen::dashboards().unwrap().into_iter().find(|(n, _)| n == "overview.json").unwrap().1;
    let overview_json: serde_json::Value = serde_json::from_str(&overview).unwrap();
    let mut exprs: Vec<(&str, String)> =
        dashboard::expressions(&session_json).into_iter().map(|e| ("session", e)).collect();
    exprs.extend(dashboard::expressions(&overview_json).into_iter().map(|e| ("overview", e)));
    assert!(exprs.len() >= 30, "{exprs:#?}");

    let results = wait_for(Duration::from_secs(60), "every dashboard expression to return data", || async {
        let end = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        let mut results = BTreeMap::new();
        for (dash, e) in &exprs {
            let series = prom.query_range(e, t0, end).await.map_err(|err| format!("{dash}: {e}: {err}"))?;
            results.insert((*dash, e.clone()), series.len());
        }
        let missing: Vec<String> = results
            .iter()
            .filter(|((_, e), n)| **n == 0 && may_be_empty(e).is_none())
            .map(|((d, e), _)| format!("{d}: {e}"))
            .collect();
        if missing.is_empty() {
            Ok(results)
        } else {
            Err(format!("no data yet for {missing:#?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", prom.log_tail()));
    let with_data = results.values().filter(|n| **n > 0).count();
    println!("e2e: {} dashboard expressions evaluated without error, {with_data} returned data", results.len());
    for ((dash, e), _) in results.iter().filter(|(_, n)| **n == 0) {
        println!("  no data ({dash}): {e} — {}", may_be_empty(e).unwrap_or_default());
    }

    let errors = prom.query("tiepdan_operator_reconcile_errors_total").await.unwrap();
    for e in &errors {
        println!(
            "  reconcile errors during the run: {} {}: {}",
            e["metric"]["kind"], e["metric"]["category"], e["value"][1]
        );
    }

    // The session's alert rules, as the operator created them, evaluate cleanly.
    let rules = wait_for(Duration::from_secs(30), "every rule evaluated", || async {
        let data = prom.api("rules", &[]).await?;
        let rules: Vec<serde_json::Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        if !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok") {
            Ok(rules)
        } else {
            Err(format!("{rules:#?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", prom.log_tail()));
    assert_eq!(rules.len(), 5);
    let readyz = reqwest::get(format!("http://127.0.0.1:{metrics_port}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200, "the operator is ready once it has listed every watched kind");
    sender.abort();
    drop(prom);
}
