//! `kubectl scale mwp/default` changes the number of idle warm workers: worker containers on the
//! real node, counted once the kubelet reports them Ready.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::api::MediaWorkerPool;
use tiepdan_operator::build::labels;
use tiepdan_operator::clock::SimClock;

use crate::common::{apply_example_pool_on_node, cluster, kubectl_ok, start_operator};

async fn wait_idle(client: &kube::Client, ns: &str, want: usize) {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let pools = Api::<MediaWorkerPool>::namespaced(client.clone(), ns);
    wait_for(Duration::from_secs(30), format!("{want} idle ready workers"), || {
        let (pods, pools) = (pods.clone(), pools.clone());
        async move {
            let sel = format!("{},{}={}", labels::pool_selector("default"), labels::WORKER_STATE, labels::STATE_IDLE);
            let idle = pods.list(&ListParams::default().labels(&sel)).await.map_err(|e| e.to_string())?;
            let live = idle.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).count();
            let st = pools.get("default").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            if live == want && st.available == i32::try_from(want).unwrap() {
                Ok(())
            } else {
                Err(format!("{live} idle pods, status available {}", st.available))
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn scaling_the_pool_changes_the_number_of_idle_workers() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("scale");
    create_namespace(&client, &ns).await.unwrap();
    let _op = start_operator(client.clone(), &ns, Arc::new(SimClock::new("2027-01-01T00:00:00Z".parse().unwrap())));
    apply_example_pool_on_node(cp, &ns);
    wait_idle(&client, &ns, 2).await;

    kubectl_ok(cp, &["scale", "-n", &ns, "mwp/default", "--replicas=4"]);
    wait_idle(&client, &ns, 4).await;

    kubectl_ok(cp, &["scale", "-n", &ns, "mwp/default", "--replicas=1"]);
    wait_idle(&client, &ns, 1).await;

    // The token keys exist once and survive scaling: private ones in a Secret, public ones (all
    // the workers mount) in a ConfigMap.
    let key = kubectl_ok(cp, &["get", "secret", "-n", &ns, "tiepdan-default-token-signing-keys", "-o", "name"]);
    assert!(key.contains("tiepdan-default-token-signing-keys"));
    let public = kubectl_ok(cp, &["get", "configmap", "-n", &ns, "tiepdan-default-token-public-keys", "-o", "name"]);
    assert!(public.contains("tiepdan-default-token-public-keys"));
}
