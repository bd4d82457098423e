//! Each pool has a PodDisruptionBudget over its allocated workers: the Eviction API (what
//! `kubectl drain` calls) refuses to evict a worker serving a session and evicts an idle one.

use std::time::Duration;

use kube::api::{Api, DynamicObject, EvictParams};
use kube::ResourceExt;
use tiepdan_harness::wait_for;
use tiepdan_operator::api::MediaWorkerPool;
use tiepdan_operator::build::pod_disruption_budget;

use crate::pool_rollout::{mark_allocated, pool_with_ready_workers, workers, POOL};

#[tokio::test]
async fn evicting_an_allocated_worker_is_refused_and_an_idle_one_is_evicted() {
    let (pods, ns, _op) = pool_with_ready_workers("pdb", 2, 45200).await;
    let client = cluster_client().await;
    let pdbs = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &pod_disruption_budget::api_resource());
    let pdb = pdbs.get(&pod_disruption_budget::name(POOL)).await.unwrap();
    assert_eq!(pdb.data["spec"]["maxUnavailable"], 0);
    let selected: std::collections::BTreeMap<String, String> =
        serde_json::from_value(pdb.data["spec"]["selector"]["matchLabels"].clone()).unwrap();
    assert_eq!(selected, pod_disruption_budget::selector(POOL));
    let pool = Api::<MediaWorkerPool>::namespaced(client.clone(), &ns).get(POOL).await.unwrap();
    assert_eq!(pdb.owner_references()[0].uid, pool.uid().unwrap());

    let (idle, _) = workers(&pods).await.unwrap();
    let serving = mark_allocated(&pods, &idle[0].name_any()).await.name_any();
    let no_retry = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns);
    match no_retry.evict(&serving, &EvictParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 429 => {}
        other => panic!("evicting an allocated worker: {other:?}"),
    }

    let spare = idle[1].name_any();
    no_retry.evict(&spare, &EvictParams::default()).await.expect("an idle worker is evicted");
    wait_for(Duration::from_secs(30), format!("{spare} deleted"), || async {
        match pods.get_opt(&spare).await.map_err(|e| e.to_string())? {
            Some(p) if p.metadata.deletion_timestamp.is_none() => Err("not deleted".to_owned()),
            _ => Ok(()),
        }
    })
    .await
    .unwrap();
    let still = pods.get(&serving).await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_none(), "the allocated worker is being deleted");
}

/// A client that hands a 429 back at once: kube's default retry policy retries it 15 times with
/// exponential backoff (about 5.5 minutes), and a refused eviction *is* a 429.
async fn cluster_client() -> kube::Client {
    let mut config = crate::common::cluster().await.config().await.unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}
