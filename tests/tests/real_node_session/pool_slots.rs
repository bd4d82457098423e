//! A pool spans media nodes: three sessions live at once on the one real node, each worker a
//! hostNetwork pod with its own RTC sub-range of the pool's `rtcPorts` (declared as host ports,
//! so kube-scheduler placed them), announcing the address the node's annotation names.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use mediasoup::rtp_parameters::MediaKind;
use tiepdan_harness::control_plane::NODE_NAME;
use tiepdan_harness::{wait_for, ControlPlane};
use tiepdan_media_worker::probe::peer::PlainPeer;
use tiepdan_operator::api::ReceptionSession;
use tiepdan_operator::build::worker_ports::{self, PortRange};
use tiepdan_operator::node_address::PUBLIC_ADDRESS_ANNOTATION;

use super::common::PROVINCE_AND_TOWN;
use super::common::{kubectl, session_trust};
use super::lifecycle::worker_url;
use super::{cluster, host_ports, live};

const SESSIONS: [&str; 3] = ["sang", "chieu", "toi"];

/// The node's public-address annotation, removed again when dropped (also when the test fails).
/// Other tests on the node meanwhile announce `localhost` too, the same 127.0.0.1.
struct Annotated(&'static ControlPlane);

impl Annotated {
    fn new(cp: &'static ControlPlane, address: &str) -> Self {
        let set = format!("{PUBLIC_ADDRESS_ANNOTATION}={address}");
        let out = kubectl(cp, &["annotate", "node", NODE_NAME, "--overwrite", &set]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Annotated(cp)
    }
}

impl Drop for Annotated {
    fn drop(&mut self) {
        let _ = kubectl(self.0, &["annotate", "node", NODE_NAME, &format!("{PUBLIC_ADDRESS_ANNOTATION}-")]);
    }
}

/// A hostNetwork pool with no warm worker (each session gets a pod of its own, started bound to
/// it), 10 host ports and 30 RTC ports cut into three sub-ranges of 10; three points; and three
/// sessions in their rehearsal, one per point, hosted by the town.
fn three_sessions(base: u16, start: Timestamp, deadline: Timestamp) -> String {
    let mut yaml = format!(
        r#"
apiVersion: tiepdan.io/v1alpha1
kind: MediaWorkerPool
metadata: {{name: default}}
spec:
  replicas: 0
  hostNetwork: true
  hostPorts: {{min: {base}, max: {host_max}}}
  rtcPorts: {{min: {rtc_min}, max: {rtc_max}, perWorker: 10}}
{PROVINCE_AND_TOWN}"#,
        host_max = base + 9,
        rtc_min = base + 10,
        rtc_max = base + 39,
    );
    for (session, point) in SESSIONS.iter().zip(["di-su", "phung-chi-kien", "ban-yen-nhan"]) {
        yaml.push_str(&format!(
            r#"---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionPoint
metadata: {{name: {point}}}
spec: {{displayName: "UBND phường {point}", level: Commune, parent: thi-xa-my-hao}}
---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionSession
metadata: {{name: {session}}}
spec:
  title: "Phiên {session}"
  host: thi-xa-my-hao
  points: [{point}]
  schedule: {{start: "{start}", durationMinutes: 60}}
  readiness: {{deadline: "{deadline}", rehearsalMinutes: 60}}
"#
        ));
    }
    yaml
}

/// Plain RTP through the worker of `session`: joins with a probe link, then sends until its own
/// audio and video come back. Returns the worker's announced RTC addresses.
async fn media_through(client: &kube::Client, ns: &str, session: &str, pod: &str) -> [std::net::SocketAddr; 2] {
    let url = worker_url(client, ns, pod).await;
    let trust = session_trust(client, ns, session).await;
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // The certificate reaches the pod through the kubelet's Secret sync: retry the join.
    let mut peer = wait_for(Duration::from_secs(60), format!("a probe joined to {session}"), || async {
        let probe = tiepdan_operator::links::probe(client, ns, session, "probe-ops", Timestamp::now())
            .await
            .map_err(|e| e.to_string())?;
        PlainPeer::join_with(&url, &probe.token, localhost, Some(&trust)).await.map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    let addresses = peer.worker_addresses();
    let published = peer.publish().await.unwrap();
    peer.consume(published.audio).await.unwrap();
    peer.consume(published.video).await.unwrap();
    let origin = peer.origin;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        peer.send_once(50).await.unwrap();
        let back = |a: &tiepdan_media_worker::probe::measure::Arrivals| {
            a.received(origin, MediaKind::Audio) > 0 && a.received(origin, MediaKind::Video) > 0
        };
        if peer.inbox().wait_until(Duration::from_millis(20), back).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no media came back through {session}'s worker");
    }
    peer.leave().await.unwrap();
    addresses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_live_sessions_on_one_node_each_use_their_own_rtc_ports_and_the_nodes_address() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let _annotated = Annotated::new(cp, "localhost");
    let base = host_ports();
    let live = live(cp, &client, "rn-slots", |s, d| three_sessions(base, s, d)).await;
    let ns = live.ns.clone();
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);

    let mut workers = Vec::new();
    for session in SESSIONS {
        let s = wait_for(Duration::from_secs(90), format!("{session}'s own worker serving it"), || async {
            let s = sessions.get(session).await.map_err(|e| e.to_string())?;
            let st = s.status.clone().unwrap_or_default();
            let c = st.conditions.iter().find(|c| c.type_ == "WorkerReady");
            if c.is_some_and(|c| c.status == "True" && c.message.contains("serving the session")) {
                return Ok(s);
            }
            // Why the pod is not serving yet, in the scheduler's and the kubelet's words.
            let pod = match st.worker.and_then(|w| w.pod) {
                Some(name) => pods.get(&name).await.ok().and_then(|p| p.status).map(|ps| {
                    let conditions: Vec<_> =
                        ps.conditions.unwrap_or_default().into_iter().map(|c| (c.type_, c.reason, c.message)).collect();
                    let waiting: Vec<_> = ps
                        .container_statuses
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| (c.restart_count, c.state, c.last_state))
                        .collect();
                    format!("{conditions:?} {waiting:?}")
                }),
                None => None,
            };
            Err(format!("{c:?}; pod {pod:?}"))
        })
        .await
        .unwrap();
        let worker = s.status.and_then(|st| st.worker).unwrap();
        let pod = pods.get(worker.pod.as_deref().unwrap()).await.unwrap();
        let rtc = worker_ports::of_pod(&pod).rtc.expect("a sub-range");
        // What the session says each worker got.
        assert_eq!(worker.node.as_deref(), Some(NODE_NAME), "{session}");
        assert_eq!(worker.announced_address.as_deref(), Some("localhost"), "{session}: {worker:?}");
        assert_eq!(worker.announced_from.as_deref(), Some(PUBLIC_ADDRESS_ANNOTATION), "{session}");
        assert_eq!(worker.rtc_ports, Some(rtc.to_string()), "{session}");
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(NODE_NAME), "scheduled on the one node");
        workers.push((session, pod, rtc));
    }
    let ranges: Vec<PortRange> = workers.iter().map(|w| w.2).collect();
    for (i, a) in ranges.iter().enumerate() {
        assert_eq!(a.max - a.min + 1, 10, "perWorker ports each");
        assert!(i32::from(base) + 10 <= a.min && a.max <= i32::from(base) + 39, "{a} within the pool's rtcPorts");
        for b in &ranges[i + 1..] {
            assert!(a.max < b.min || b.max < a.min, "{a} and {b} overlap");
        }
    }

    // All three live at once: media through each worker, on its own sub-range, announced as the
    // annotation's host name resolved (127.0.0.1).
    let flows = workers.iter().map(|(session, pod, _)| {
        let (client, ns) = (client.clone(), ns.clone());
        let pod = pod.metadata.name.clone().unwrap();
        async move { media_through(&client, &ns, session, &pod).await }
    });
    let started = std::time::Instant::now();
    let addresses = futures::future::join_all(flows).await;
    eprintln!("media through all three workers {:.1} s after they served", started.elapsed().as_secs_f64());
    for ((session, _, rtc), addresses) in workers.iter().zip(&addresses) {
        for a in addresses {
            assert_eq!(a.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{session}");
            let port = i32::from(a.port());
            assert!(rtc.min <= port && port <= rtc.max, "{session}: media on {a}, outside its sub-range {rtc}");
        }
    }
    // No worker restarted: none failed to bind an RTC port another held.
    for (session, pod, _) in &workers {
        let pod = pods.get(pod.metadata.name.as_deref().unwrap()).await.unwrap();
        let restarts: i32 =
            pod.status.unwrap().container_statuses.unwrap_or_default().iter().map(|c| c.restart_count).sum();
        assert_eq!(restarts, 0, "{session}'s worker restarted");
    }
}
