//! Sessions that get workers at the same moment take different ports. Each session in its
//! rehearsal gets a pod of its own from a hostNetwork pool without warm workers; the operator
//! reconciles the sessions concurrently, and used to read the pool's pods in each reconcile
//! before any of the new pods existed, so several took the same lowest free ports and all but one
//! stayed Pending on the node ("didn't have free ports").

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tiepdan_harness::wait_for;
use tiepdan_operator::build::labels;
use tiepdan_operator::build::worker_ports;

use crate::common::PROVINCE_AND_TOWN;
use crate::common::{cluster, live_session};

const SESSIONS: usize = 6;

/// A hostNetwork pool with room for exactly [`SESSIONS`] workers (a host-port pair and an RTC
/// slot each) that asks for more CPU than any node has: its pods are created with their ports
/// but never run, which is all this test reads. The province, the town hosting, and a commune
/// per session.
fn topology(start: jiff::Timestamp, deadline: jiff::Timestamp) -> String {
    let host = tiepdan_harness::process::free_port_block(2 * SESSIONS as u16).unwrap();
    let rtc = tiepdan_harness::process::free_port_block(10 * SESSIONS as u16).unwrap();
    let mut yaml = format!(
        r#"
apiVersion: tiepdan.io/v1alpha1
kind: MediaWorkerPool
metadata: {{name: default}}
spec:
  replicas: 0
  hostNetwork: true
  hostPorts: {{min: {host}, max: {host_max}}}
  rtcPorts: {{min: {rtc}, max: {rtc_max}, perWorker: 10}}
  resources: {{requests: {{cpu: "1000"}}}}
{PROVINCE_AND_TOWN}"#,
        host_max = host + 2 * SESSIONS as u16 - 1,
        rtc_max = rtc + 10 * SESSIONS as u16 - 1,
    );
    for i in 0..SESSIONS {
        yaml.push_str(&format!(
            r#"---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionPoint
metadata: {{name: xa-{i}}}
spec: {{displayName: "UBND xã số {i}", level: Commune, parent: thi-xa-my-hao}}
---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionSession
metadata: {{name: phien-{i}}}
spec:
  title: "Phiên {i}"
  host: thi-xa-my-hao
  points: [xa-{i}]
  schedule: {{start: "{start}", durationMinutes: 60}}
  readiness: {{deadline: "{deadline}", rehearsalMinutes: 60}}
"#
        ));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_allocated_at_once_get_workers_with_disjoint_ports() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let live = live_session(cp, &client, "pool-ports", |c| c, topology).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &live.ns);
    let selector = ListParams::default().labels(&labels::pool_selector("default"));
    let workers = wait_for(Duration::from_secs(60), "a worker pod for every session", || async {
        let list = pods.list(&selector).await.map_err(|e| e.to_string())?;
        let sessions: BTreeSet<_> =
            list.items.iter().filter_map(|p| p.metadata.labels.as_ref()?.get(labels::SESSION).cloned()).collect();
        if sessions.len() == SESSIONS {
            Ok(list.items)
        } else {
            Err(format!("{} pods for {} sessions", list.items.len(), sessions.len()))
        }
    })
    .await
    .unwrap();
    let mut host_ports = BTreeSet::new();
    let mut rtc = BTreeSet::new();
    for pod in &workers {
        let ports = worker_ports::of_pod(pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        assert!(host_ports.insert(ports.admin), "{name} takes admin port {} another worker took", ports.admin);
        assert!(host_ports.insert(ports.signaling), "{name} takes signaling port {} another took", ports.signaling);
        let range = ports.rtc.expect("a hostNetwork worker has an RTC sub-range");
        assert!(rtc.insert(range), "{name} takes RTC ports {range} another worker took");
    }
    assert_eq!(workers.len(), SESSIONS, "one pod per session, none replaced");
}
