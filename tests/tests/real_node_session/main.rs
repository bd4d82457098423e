//! Sessions on the real node: the in-process operator, a hostNetwork pool of the worker image
//! (each worker on 127.0.0.1 with its own pair of host ports), kube-scheduler and kubelet.
//! Media flows through a worker container; and a worker that cannot start (its port already in
//! use) or is OOM-killed shows up in the session as exactly that, and recovers on its own.

// Helpers outside #[test] fns fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod chart_install;
#[path = "../operator/common/mod.rs"]
mod common;
mod entry;
mod failover;
mod lifecycle;
mod pool_slots;
mod session_tls;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::Client;
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane, RealNode};
use tiepdan_operator::api::{ReceptionSession, SessionPhase};
use tiepdan_operator::build::worker_ports;
use tiepdan_operator::clock::SimClock;

use common::{
    exchange_media, kubectl_apply_yaml, session_trust, start_operator_config, test_config, wait_condition,
    PROVINCE_AND_TOWN,
};

const SESSION: &str = "chay-thu";
/// Long enough for the kubelet's first restarts (back-off 10 s, then 20 s).
const RESTART_WAIT: Duration = Duration::from_secs(120);

/// The control plane with the CRDs and the binary's one real node.
async fn cluster() -> &'static ControlPlane {
    let (cp, _node) = RealNode::shared().await.expect("real node Ready");
    common::cluster().await;
    cp
}

/// A block of 40 ports below the ephemeral range that no other test of this binary uses.
fn host_ports() -> u16 {
    tiepdan_harness::process::free_port_block(40).unwrap()
}

/// The province, the town and a ward, a hostNetwork pool of the worker image with `warm` warm
/// workers and `resources`, and a session in its rehearsal (anchored to the real clock: workers
/// check token times on it).
fn topology(base: u16, warm: i32, resources: &str, start: Timestamp, deadline: Timestamp) -> String {
    format!(
        r#"
apiVersion: tiepdan.io/v1alpha1
kind: MediaWorkerPool
metadata: {{name: default}}
spec:
  replicas: {warm}
  hostNetwork: true
  hostPorts: {{min: {base}, max: {host_max}}}
  rtcPorts: {{min: {rtc_min}, max: {rtc_max}, perWorker: 10}}
  resources: {resources}
{PROVINCE_AND_TOWN}---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionPoint
metadata: {{name: di-su}}
spec: {{displayName: "UBND phường Dị Sử", level: Commune, parent: thi-xa-my-hao}}
---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionSession
metadata: {{name: {SESSION}}}
spec:
  title: "Chạy thử kết nối"
  host: thi-xa-my-hao
  points: [di-su]
  schedule: {{start: "{start}", durationMinutes: 60}}
  readiness: {{deadline: "{deadline}", rehearsalMinutes: 60}}
"#,
        // Host ports take the first 10 of the block, RTC ports the other 30 (three workers' 10
        // each); all on 127.0.0.1.
        host_max = base + 9,
        rtc_min = base + 10,
        rtc_max = base + 39,
    )
}

struct Live {
    ns: String,
    clock: SimClock,
    deadline: Timestamp,
    _operator: common::Operator,
}

async fn live(
    cp: &ControlPlane,
    client: &Client,
    prefix: &str,
    yaml: impl FnOnce(Timestamp, Timestamp) -> String,
) -> Live {
    let ns = unique_name(prefix);
    create_namespace(client, &ns).await.unwrap();
    let now = Timestamp::now();
    let (deadline, start) = (now + SignedDuration::from_mins(59), now + SignedDuration::from_mins(120));
    let clock = SimClock::new(now);
    let operator = start_operator_config(client.clone(), Arc::new(clock.clone()), test_config(&ns));
    let out = kubectl_apply_yaml(cp, &ns, &yaml(start, deadline));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Live { ns, clock, deadline, _operator: operator }
}

/// The session's worker pod, once it has one.
async fn worker_pod(client: &Client, ns: &str) -> Pod {
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), ns);
    let name = wait_for(Duration::from_secs(60), "the session's worker pod", || async {
        let s = sessions.get(SESSION).await.map_err(|e| e.to_string())?;
        s.status.and_then(|st| st.worker).and_then(|w| w.pod).ok_or_else(|| "no worker yet".to_owned())
    })
    .await
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns).get(&name).await.unwrap()
}

/// The reasons of the operator's events about the session.
async fn event_reasons(client: &Client, ns: &str) -> Vec<String> {
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
    events
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(SESSION))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_verified_through_a_worker_container_make_the_session_ready_at_the_deadline() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let base = host_ports();
    let live = live(cp, &client, "rn-live", |s, d| topology(base, 1, "{}", s, d)).await;
    let ns = live.ns.clone();
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);

    wait_condition(&sessions, SESSION, "WorkerReady", "the warm worker bound to the session", |c| {
        c.status == "True" && c.message.contains("serving the session")
    })
    .await;
    wait_condition(&sessions, SESSION, "CertificateReady", "CertificateReady=True", |c| c.status == "True").await;
    let pod = worker_pod(&client, &ns).await;
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(tiepdan_harness::control_plane::NODE_NAME), "scheduled on the node");
    assert_eq!(spec.host_network, Some(true));
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert_eq!(ip, "127.0.0.1", "a hostNetwork worker's address is the node's");
    let url = format!("wss://{ip}:{}/v1/ws", worker_ports::of_pod(&pod).signaling);
    let trust = session_trust(&client, &ns, SESSION).await;
    let tokens = Api::<Secret>::namespaced(client.clone(), &ns)
        .get(&format!("{SESSION}-join-tokens"))
        .await
        .unwrap()
        .data
        .unwrap();
    let token = |p: &str| String::from_utf8(tokens[p].0.clone()).unwrap();
    let sender = exchange_media(&url, Some(&trust), &token("thi-xa-my-hao"), &token("di-su")).await;
    let media = std::time::Instant::now();

    wait_for(Duration::from_secs(60), "both points verified in the session status", || async {
        let st = sessions.get(SESSION).await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if st.verified.as_deref() == Some("2/2") {
            Ok(())
        } else {
            Err(format!("{:?}", st.points))
        }
    })
    .await
    .unwrap();
    eprintln!("both points verified in the session status {:.1} s after joining", media.elapsed().as_secs_f64());
    sender.abort();

    live.clock.set(live.deadline);
    let s = wait_for(Duration::from_secs(30), "phase Ready at the deadline", || async {
        let s = sessions.get(SESSION).await.map_err(|e| e.to_string())?;
        match s.status.as_ref().and_then(|st| st.phase) {
            Some(SessionPhase::Ready) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let rbd = s.status.unwrap().conditions.into_iter().find(|c| c.type_ == "ReadyByDeadline").unwrap();
    assert_eq!((rbd.status.as_str(), rbd.reason.as_str()), ("True", "VerifiedBeforeDeadline"));
}

/// A port of the worker's pair is held by another program on the node: the worker exits with a
/// bind error, the kubelet restarts it with a back-off, and the session says so (reason
/// WorkerCrashed, the worker's own error, a Warning event) instead of "starting" until the
/// deadline. Once the port is free the next restart serves the session (WorkerRecovered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_port_is_taken_shows_the_crash_in_the_session_and_recovers() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let base = host_ports();
    // No warm workers: the session's own pod gets the first pair, base and base + 1.
    let squatters =
        [TcpListener::bind(("127.0.0.1", base)).unwrap(), TcpListener::bind(("127.0.0.1", base + 1)).unwrap()];
    let live = live(cp, &client, "rn-port", |s, d| topology(base, 0, "{}", s, d)).await;
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &live.ns);

    let crashed = wait_condition(&sessions, SESSION, "WorkerReady", "WorkerReady=False WorkerCrashed", |c| {
        c.status == "False" && c.reason == "WorkerCrashed"
    })
    .await;
    let crashing = crashed.status.as_ref().and_then(|st| st.worker.as_ref()).and_then(|w| w.pod.clone()).unwrap();
    let c = crashed.status.unwrap().conditions.into_iter().find(|c| c.type_ == "WorkerReady").unwrap();
    assert!(c.message.contains(&format!("127.0.0.1:{base}")), "names the port: {}", c.message);
    assert!(c.message.contains("in use"), "says why: {}", c.message);
    assert!(event_reasons(&client, &live.ns).await.contains(&"WorkerCrashed".to_owned()));

    drop(squatters);
    wait_for(RESTART_WAIT, "the restarted worker serving the session", || async {
        let s = sessions.get(SESSION).await.map_err(|e| e.to_string())?;
        let c = s.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "WorkerReady");
        match c {
            Some(c) if c.status == "True" && c.message.contains("serving the session") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let reasons = event_reasons(&client, &live.ns).await;
    assert!(reasons.contains(&"WorkerRecovered".to_owned()));
    // Never Ready, so never replaced (failover is for a worker that served): the same pod
    // recovered, keeping its diagnosis all along instead of a new pod every few seconds.
    let recovered = worker_pod(&client, &live.ns).await;
    assert_eq!(recovered.metadata.name.as_deref(), Some(crashing.as_str()), "{reasons:?}");
    assert!(!reasons.contains(&"WorkerReplaced".to_owned()), "{reasons:?}");
}

/// A memory limit the worker cannot start under: the kernel kills it, and the session names the
/// OOM kill and the field to raise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_worker_is_named_in_the_session() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let base = host_ports();
    let resources = "{limits: {memory: 5Mi}}";
    let live = live(cp, &client, "rn-oom", |s, d| topology(base, 0, resources, s, d)).await;
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &live.ns);
    let s = wait_condition(&sessions, SESSION, "WorkerReady", "WorkerReady=False WorkerOOMKilled", |c| {
        c.status == "False" && c.reason == "WorkerOOMKilled"
    })
    .await;
    let c = s.status.unwrap().conditions.into_iter().find(|c| c.type_ == "WorkerReady").unwrap();
    assert!(c.message.contains("limit 5Mi"), "{}", c.message);
    assert!(c.message.contains("spec.resources.limits.memory"), "{}", c.message);
    assert!(event_reasons(&client, &live.ns).await.contains(&"WorkerOOMKilled".to_owned()));
}
