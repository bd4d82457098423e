//! Worker failover beyond a deleted pod: a worker that stops answering (its real process
//! stopped) and a worker whose node is lost are replaced, with the same links and the
//! verification kept.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tiepdan_harness::process::{signal, Signal};
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane, RealNode};
use tiepdan_operator::api::{MediaWorkerPool, ReceptionSession};
use tiepdan_operator::build::{labels, worker_pod, worker_ports::WorkerPorts};
use tiepdan_operator::clock::SimClock;

use super::common::{kubectl, kubectl_apply_yaml, start_operator_config, test_config, wait_condition};
use super::lifecycle::{joins, session, tokens, verified_session, worker_of, Verified};
use super::{cluster, host_ports, topology, SESSION};

/// A process stopped with SIGSTOP until this is dropped (SIGCONT), so a failing test does not
/// leave it frozen: once continued, it handles the SIGTERM of its pod's deletion.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Self {
        signal(pid, Signal::SIGSTOP);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, Signal::SIGCONT);
    }
}

fn condition(s: &ReceptionSession, type_: &str) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Waits until a worker other than `old` serves the session (WorkerReady=True for it).
async fn another_worker_serving(sessions: &Api<ReceptionSession>, old: &str, within: Duration) -> ReceptionSession {
    wait_for(within, "another worker serving the session", || async {
        let s = session(sessions).await;
        let ready = condition(&s, "WorkerReady").is_some_and(|c| c.status == "True");
        match worker_of(&s) {
            Some(p) if p != old && ready => Ok(s),
            other => Err(format!("worker {other:?}, ready {ready}")),
        }
    })
    .await
    .unwrap()
}

/// Waits for the WorkerReplaced event naming `why` (Degraded is True only until the next
/// reconcile sees the new worker serve, too briefly to poll for). The WorkerRestored that
/// follows is not waited for: a reconcile that reads the session from the cache before its own
/// Degraded=True write arrived skips it.
async fn replaced_because(client: &Client, ns: &str, why: &str) {
    let events = Api::<Event>::namespaced(client.clone(), ns);
    wait_for(Duration::from_secs(30), format!("a WorkerReplaced ({why}) event"), || async {
        let notes: Vec<(String, String)> = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(SESSION))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .filter(|(r, _)| r.starts_with("WorkerRe"))
            .collect();
        let replaced = notes.iter().any(|(r, n)| r == "WorkerReplaced" && n.contains(&format!("({why})")));
        replaced.then_some(()).ok_or(format!("{notes:?}"))
    })
    .await
    .unwrap();
}

/// The replacement kept what the officers have: the events name why, both
/// points stay verified, the links are the same and one of them joins the new worker.
async fn kept_links_and_verification(client: &Client, v: &Verified, s: &ReceptionSession, why: &str) {
    replaced_because(client, &v.live.ns, why).await;
    let st = s.status.clone().unwrap();
    assert_eq!(st.verified.as_deref(), Some("2/2"), "verification survives the worker");
    assert_eq!(tokens(client, &v.live.ns).await, v.links, "the same links");
    joins(client, &v.live.ns, &worker_of(s).unwrap(), &v.links["di-su"]).await;
}

/// Waits until the pool has a Ready idle worker, so the failover measured is the warm one.
///
/// Works around a race outside failover: when the session's first worker is created while the
/// pool warms one, both controllers can pick the same free host ports, and the scheduler leaves
/// the second pod Pending for good ("didn't have free ports"). Such an idle pod is deleted here
/// so the pool creates another.
async fn warm_worker_ready(client: &Client, ns: &str) {
    let sel = format!("{},{}={}", labels::pool_selector("default"), labels::WORKER_STATE, labels::STATE_IDLE);
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    wait_for(Duration::from_secs(60), "a Ready warm worker", || async {
        let idle = pods.list(&ListParams::default().labels(&sel)).await.map_err(|e| e.to_string())?.items;
        if idle.iter().any(tiepdan_operator::controller::pods::pod_ready) {
            return Ok(());
        }
        for p in idle.iter().filter(|p| unschedulable(p)) {
            let name = p.metadata.name.clone().unwrap_or_default();
            eprintln!("deleting idle worker {name}: unschedulable (host ports taken by the session's own worker)");
            let _ = pods.delete(&name, &Default::default()).await;
        }
        Err(format!("{:?}", idle.iter().map(|p| (&p.metadata.name, &p.status)).collect::<Vec<_>>()))
    })
    .await
    .unwrap();
}

fn unschedulable(p: &Pod) -> bool {
    let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| {
        cs.iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    })
}

/// SIGSTOP on the worker's real process: alive, its ports open, but no answer to anything. The
/// kubelet's readiness probe sees it unready; after 5 s unready the session takes another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stays_unready_is_replaced_with_the_same_links_and_verification_kept() {
    let cp = cluster().await;
    let (_, node) = RealNode::shared().await.unwrap();
    let client = cp.client().await.unwrap();
    let v = verified_session(cp, &client, "rn-unready").await;
    let ns = v.live.ns.clone();
    warm_worker_ready(&client, &ns).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let old = pods.get(&v.pod).await.unwrap();
    let id = old.status.unwrap().container_statuses.unwrap()[0].container_id.clone().unwrap();
    let pid = node.container_pid(&id).unwrap();

    let begun = Instant::now();
    let stopped = Stopped::new(pid);
    wait_for(Duration::from_secs(20), "the kubelet sees the stopped worker unready", || async {
        let p = pods.get(&v.pod).await.map_err(|e| e.to_string())?;
        (!tiepdan_operator::controller::pods::pod_ready(&p)).then_some(()).ok_or("still Ready".to_owned())
    })
    .await
    .unwrap();
    let unready = begun.elapsed();
    // While it may still recover, the session says what is wrong rather than "starting".
    let c = wait_condition(&v.sessions, SESSION, "WorkerReady", "WorkerReady=False WorkerUnready", |c| {
        c.reason == "WorkerUnready" || c.status == "True" && !c.message.contains(&v.pod)
    })
    .await;
    let c = condition(&c, "WorkerReady").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "WorkerUnready"), "{c:?}");
    assert!(c.message.contains(&v.pod), "{}", c.message);
    let s = another_worker_serving(&v.sessions, &v.pod, Duration::from_secs(30)).await;
    let failover = begun.elapsed();
    drop(stopped);
    eprintln!(
        "unready failover: the kubelet saw the stopped worker unready after {unready:.1?}; another worker served \
         the session {failover:.1?} after the stop"
    );
    kept_links_and_verification(&client, &v, &s, "Unready").await;
    // Not before it had been unready for 5 s (the kubelet needs two probes to see it).
    assert!(failover >= Duration::from_secs(5), "replaced after {failover:?}");
    assert!(failover <= Duration::from_secs(10), "a new worker served after {failover:?}");
}

/// Deletes the stand-in node and force-deletes its pod (no kubelet will ever confirm the
/// deletion), also when the test fails.
struct LostNode {
    cp: &'static ControlPlane,
    node: String,
    ns: String,
    pod: String,
}

impl Drop for LostNode {
    fn drop(&mut self) {
        let _ = kubectl(self.cp, &["delete", "pod", "-n", &self.ns, &self.pod, "--grace-period=0", "--force"]);
        let _ = kubectl(self.cp, &["delete", "node", &self.node, "--wait=false"]);
    }
}

/// The node a worker runs on is lost. The harness has one real node, which must stay up to run
/// the replacement, so the lost node is a stand-in Node object (unschedulable) holding the
/// session's worker pod, and the test plays its kubelet (the pod Running and Ready) and then the
/// node lifecycle controller's pass over a silent node: the Node's Ready goes Unknown and its
/// pods' Ready goes False. A worker on the real node then serves the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_node_is_lost_is_replaced_with_the_same_links_and_verification_kept() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("rn-node-lost");
    create_namespace(&client, &ns).await.unwrap();
    let now = Timestamp::now();
    let (deadline, start) = (now + SignedDuration::from_mins(59), now + SignedDuration::from_mins(120));
    let base = host_ports();
    let yaml = topology(base, 1, "{}", start, deadline);
    let (pool_yaml, rest) = yaml.split_once("---").unwrap();

    // The session and its points first: without its pool it waits (PoolNotFound), so the worker
    // pod below, once it exists, is the one it takes.
    let _operator = start_operator_config(client.clone(), std::sync::Arc::new(SimClock::new(now)), test_config(&ns));
    let out = kubectl_apply_yaml(cp, &ns, rest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    let session_obj = sessions.get(SESSION).await.unwrap();

    let node_name = unique_name("tiepdan-lost-node");
    let nodes = Api::<Node>::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": node_name},
        "spec": {"unschedulable": true, "taints": [{"key": "tiepdan.io/stand-in", "effect": "NoSchedule"}]},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pod_name = format!("{SESSION}-worker-lost");
    let _cleanup = LostNode { cp, node: node_name.clone(), ns: ns.clone(), pod: pod_name.clone() };
    let heartbeat = |status: &str, reason: &str| {
        let t = Timestamp::now().to_string();
        // An address too: the operator tells a hostNetwork worker its node's.
        json!({"status": {"conditions": [{"type": "Ready", "status": status, "reason": reason,
            "lastHeartbeatTime": t, "lastTransitionTime": t}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})
    };
    let params = PatchParams::default();
    nodes.patch_status(&node_name, &params, &Patch::Merge(heartbeat("True", "KubeletReady"))).await.unwrap();

    // The session's worker, as the operator would build it, bound to the stand-in node. It
    // tolerates the unreachable taint for 300 s, as the DefaultTolerationSeconds admission
    // plugin gives every pod, so it is not evicted (Terminating is another, older rule).
    let pool_obj: MediaWorkerPool = serde_yaml::from_str(pool_yaml).unwrap();
    let mut pod = worker_pod::build(
        &pool_obj,
        &pod_name,
        Some(&session_obj),
        WorkerPorts { admin: i32::from(base + 8), signaling: i32::from(base + 9), rtc: None },
    );
    pod.metadata.namespace = Some(ns.clone());
    let spec = pod.spec.as_mut().unwrap();
    spec.node_name = Some(node_name.clone());
    spec.tolerations = Some(
        ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]
            .map(|key| k8s_openapi::api::core::v1::Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some("NoExecute".to_owned()),
                toleration_seconds: Some(300),
                ..Default::default()
            })
            .to_vec(),
    );
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let started = (Timestamp::now() - SignedDuration::from_mins(2)).to_string();
    let ready_since = (Timestamp::now() - SignedDuration::from_mins(1)).to_string();
    let running = json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": started,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready_since}],
        "containerStatuses": [{"name": worker_pod::CONTAINER, "ready": true, "restartCount": 0, "image": "worker",
            "imageID": "", "started": true, "state": {"running": {"startedAt": started}}}],
    }});
    pods.patch_status(&pod_name, &params, &Patch::Merge(&running)).await.unwrap();

    // Now the pool: the session takes the pod on the stand-in node, and the pool warms a worker
    // on the real node.
    let out = kubectl_apply_yaml(cp, &ns, pool_yaml);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(Duration::from_secs(30), "the session served by the pod on the stand-in node", || async {
        let s = session(&sessions).await;
        let ready = condition(&s, "WorkerReady").is_some_and(|c| c.status == "True");
        (worker_of(&s).as_deref() == Some(pod_name.as_str()) && ready)
            .then_some(())
            .ok_or(format!("worker {:?}, ready {ready}", worker_of(&s)))
    })
    .await
    .unwrap();
    // No point verified through the stand-in (it runs no worker): the unready and deleted-pod
    // tests show verification surviving; here the points are checked unchanged.
    warm_worker_ready(&client, &ns).await;
    let points_before = session(&sessions).await.status.unwrap().points;
    let links = tokens(&client, &ns).await;

    // The node lifecycle controller's pass over a node whose kubelet went silent.
    let lost = Instant::now();
    nodes.patch_status(&node_name, &params, &Patch::Merge(heartbeat("Unknown", "NodeStatusUnknown"))).await.unwrap();
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
        "lastTransitionTime": Timestamp::now().to_string()}]}});
    pods.patch_status(&pod_name, &params, &Patch::Merge(&not_ready)).await.unwrap();
    let s = another_worker_serving(&sessions, &pod_name, Duration::from_secs(30)).await;
    let failover = lost.elapsed();
    eprintln!("node-lost failover: another worker served the session {failover:.1?} after the node was marked lost");
    replaced_because(&client, &ns, "NodeLost").await;
    assert_eq!(tokens(&client, &ns).await, links, "the same links");
    let points_after = s.status.clone().unwrap().points;
    assert_eq!(
        points_after.iter().map(|p| (&p.name, p.verified)).collect::<Vec<_>>(),
        points_before.iter().map(|p| (&p.name, p.verified)).collect::<Vec<_>>()
    );
    joins(&client, &ns, &worker_of(&s).unwrap(), &links["di-su"]).await;
    assert!(failover <= Duration::from_secs(10), "a new worker served after {failover:?}");
}
