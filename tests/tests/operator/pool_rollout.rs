//! Editing a pool's template (here `rtcPorts`) replaces its idle warm workers with ones built
//! from the new template, worker containers on the real node, one at a time and never leaving
//! the pool without a Ready idle worker; a worker allocated to a session is left alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane};
use tiepdan_operator::build::{labels, worker_pod};
use tiepdan_operator::clock::SimClock;
use tiepdan_operator::controller::pods::pod_ready;

use crate::common::{cluster, kubectl_apply_yaml, kubectl_ok, start_operator, Operator};

pub const POOL: &str = "default";

/// A hostNetwork pool of the worker image with `replicas` idle workers, host ports from a free
/// block of 10 and 100 RTC ports from `rtc_min`, 20 for each worker.
pub fn apply_pool(cp: &ControlPlane, ns: &str, replicas: u32, rtc_min: u16) {
    let host_min = tiepdan_harness::process::free_port_block(10).unwrap();
    let yaml = format!(
        "apiVersion: tiepdan.io/v1alpha1\nkind: MediaWorkerPool\nmetadata: {{name: {POOL}}}\nspec:\n  \
         replicas: {replicas}\n  hostNetwork: true\n  hostPorts: {{min: {host_min}, max: {}}}\n  \
         rtcPorts: {{min: {rtc_min}, max: {}, perWorker: 20}}\n",
        host_min + 9,
        rtc_min + 99,
    );
    let out = kubectl_apply_yaml(cp, ns, &yaml);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The pool's worker pods that are not being deleted, idle ones and allocated ones.
pub async fn workers(pods: &Api<Pod>) -> Result<(Vec<Pod>, Vec<Pod>), String> {
    let list =
        pods.list(&ListParams::default().labels(&labels::pool_selector(POOL))).await.map_err(|e| e.to_string())?;
    let live = list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none());
    Ok(live.partition(|p| p.labels().get(labels::WORKER_STATE).map(String::as_str) == Some(labels::STATE_IDLE)))
}

/// Waits until the pool has `want` idle workers, all Ready; returns them.
pub async fn wait_ready_idle(pods: &Api<Pod>, want: usize) -> Vec<Pod> {
    wait_for(Duration::from_secs(60), format!("{want} Ready idle workers"), || async {
        let (idle, _) = workers(pods).await?;
        let ready = idle.iter().filter(|p| pod_ready(p)).count();
        if idle.len() == want && ready == want {
            Ok(idle)
        } else {
            Err(format!("{} idle, {ready} Ready", idle.len()))
        }
    })
    .await
    .unwrap()
}

/// Labels idle worker `name` as allocated, as allocation does (without a session: the pool
/// controller goes by the label).
pub async fn mark_allocated(pods: &Api<Pod>, name: &str) -> Pod {
    let patch = serde_json::json!({"metadata": {"labels": {labels::WORKER_STATE: labels::STATE_ALLOCATED}}});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap()
}

/// A namespace with the operator and a pool of `replicas` Ready idle workers.
pub async fn pool_with_ready_workers(prefix: &str, replicas: u32, rtc_min: u16) -> (Api<Pod>, String, Operator) {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name(prefix);
    create_namespace(&client, &ns).await.unwrap();
    let op = start_operator(client.clone(), &ns, Arc::new(SimClock::new("2027-01-01T00:00:00Z".parse().unwrap())));
    apply_pool(cp, &ns, replicas, rtc_min);
    let pods = Api::<Pod>::namespaced(client, &ns);
    wait_ready_idle(&pods, replicas as usize).await;
    (pods, ns, op)
}

/// Whether `pod` binds RTC ports within `min..=max` only.
fn rtc_within(pod: &Pod, min: i32, max: i32) -> bool {
    tiepdan_operator::build::worker_ports::of_pod(pod).rtc.is_some_and(|r| min <= r.min && r.max <= max)
}

#[tokio::test]
async fn editing_rtc_ports_replaces_idle_workers_and_leaves_allocated_ones() {
    let (pods, ns, _op) = pool_with_ready_workers("rollout", 2, 45000).await;
    let cp = cluster().await;
    let (idle, _) = workers(&pods).await.unwrap();
    let old_hash = worker_pod::hash_of(&idle[0]).expect("a template hash").to_owned();
    let taken = mark_allocated(&pods, &idle[0].name_any()).await;
    let old_idle = wait_ready_idle(&pods, 2).await;

    kubectl_ok(
        cp,
        &["patch", "-n", &ns, "mwp", POOL, "--type=merge", "-p", r#"{"spec":{"rtcPorts":{"min":45100,"max":45199}}}"#],
    );
    let fewest = AtomicUsize::new(usize::MAX);
    let fewest_ready = &fewest;
    let new_idle = wait_for(Duration::from_secs(120), "2 Ready idle workers on the new rtcPorts", || {
        let pods = pods.clone();
        async move {
            let (idle, _) = workers(&pods).await?;
            let ready = idle.iter().filter(|p| pod_ready(p)).count();
            fewest_ready.fetch_min(ready, Ordering::SeqCst);
            let on_new = idle.iter().filter(|p| rtc_within(p, 45100, 45199)).count();
            if idle.len() == 2 && ready == 2 && on_new == 2 {
                Ok(idle)
            } else {
                Err(format!("{} idle, {ready} Ready, {on_new} on the new ports", idle.len()))
            }
        }
    })
    .await
    .unwrap();
    assert!(fewest.into_inner() >= 1, "the pool was left without a Ready idle worker");
    for p in &new_idle {
        let hash = worker_pod::hash_of(p).expect("a template hash");
        assert_ne!(hash, old_hash, "{}", p.name_any());
        assert!(!old_idle.iter().any(|o| o.uid() == p.uid()), "{} is an old pod", p.name_any());
    }

    // The allocated worker is the same pod, still on the old template.
    let (_, allocated) = workers(&pods).await.unwrap();
    assert_eq!(allocated.len(), 1);
    assert_eq!(allocated[0].uid(), taken.uid());
    assert_eq!(worker_pod::hash_of(&allocated[0]), Some(old_hash.as_str()));
    assert!(rtc_within(&allocated[0], 45000, 45099));
}
