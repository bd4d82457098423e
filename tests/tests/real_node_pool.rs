//! Warm workers on the real node: pods of the worker image, hostNetwork on 127.0.0.1 with ports
//! from the pool's `hostPorts`, scheduled by kube-scheduler and made Ready by kubelet's probes.
//! These are the cases the node emulation (Ready at once) could not show.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane, RealNode};
use tiepdan_operator::api::{MediaWorkerPool, ReceptionSession};
use tiepdan_operator::build::{labels, token_keys, worker_pod, worker_ports};
use tiepdan_operator::clock::SimClock;
use tiepdan_operator::controller::allocation::{self, Allocation};
use tiepdan_operator::controller::pods::pod_ready;
use tiepdan_operator::controller::{self as op, OperatorConfig};
use tokio::sync::OnceCell;

const TIMEOUT: Duration = Duration::from_secs(60);

/// One control plane with the CRDs and one real node per test binary.
async fn cluster() -> &'static ControlPlane {
    let (cp, _node) = RealNode::shared().await.expect("node Ready");
    CRDS.get_or_init(|| async {
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(cp.kubeconfig())
            .args(["apply", "-f", crds])
            .output()
            .expect("kubectl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    })
    .await;
    cp
}

static CRDS: OnceCell<()> = OnceCell::const_new();

/// A hostNetwork pool of the project's worker image whose ports (a block of 40 below the
/// ephemeral range) no other test uses: 10 host ports, then 30 RTC ports, 10 for each worker.
fn pool_json(replicas: i32) -> serde_json::Value {
    let base = tiepdan_harness::process::free_port_block(40).expect("a free block of 40 ports");
    json!({
        "apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
        "metadata": {"name": "default"},
        "spec": {
            "replicas": replicas,
            "image": tiepdan_operator::api::media_worker_pool::DEFAULT_IMAGE,
            "hostNetwork": true,
            "hostPorts": {"min": base, "max": base + 9},
            "rtcPorts": {"min": base + 10, "max": base + 39, "perWorker": 10}
        }
    })
}

async fn namespace(client: &Client, prefix: &str) -> String {
    let ns = unique_name(prefix);
    create_namespace(client, &ns).await.expect("namespace");
    ns
}

async fn idle_pods(pods: &Api<Pod>) -> Result<Vec<Pod>, String> {
    let sel = format!("{},{}={}", labels::pool_selector("default"), labels::WORKER_STATE, labels::STATE_IDLE);
    let list = pods.list(&ListParams::default().labels(&sel)).await.map_err(|e| e.to_string())?;
    Ok(list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect())
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(ResourceExt::name_any).collect()
}

fn operator(client: &Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let config = OperatorConfig {
        namespace: Some(ns.to_owned()),
        status_poll: Duration::from_millis(500),
        error_backoff: Duration::from_millis(500),
        ca_namespace: ns.to_owned(),
        ..Default::default()
    };
    let clock = Arc::new(SimClock::new("2027-01-01T00:00:00Z".parse().expect("time")));
    tokio::spawn(op::run(client.clone(), clock, config, std::future::pending()))
}

#[tokio::test]
async fn scale_down_keeps_the_ready_warm_workers() {
    let cp = cluster().await;
    let client = cp.client().await.expect("client");
    let ns = namespace(&client, "scale-down").await;
    let _op = operator(&client, &ns);
    let pools: Api<MediaWorkerPool> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pools.create(&PostParams::default(), &serde_json::from_value(pool_json(2)).expect("pool")).await.expect("pool");

    let ready = wait_for(TIMEOUT, "two Ready warm workers on the node", || async {
        let idle = idle_pods(&pods).await?;
        let n = idle.iter().filter(|p| pod_ready(p)).count();
        if n == 2 && idle.len() == 2 {
            Ok(names(&idle))
        } else {
            Err(format!("{} idle, {n} Ready", idle.len()))
        }
    })
    .await
    .expect("warm");
    // Each has its own pair of host ports on 127.0.0.1 and a node.
    let idle = idle_pods(&pods).await.expect("list");
    let ports: BTreeSet<_> = idle.iter().map(|p| worker_ports::of_pod(p).admin).collect();
    assert_eq!(ports.len(), 2, "distinct admin ports");
    assert!(idle.iter().all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("127.0.0.1")));

    // A third worker starts; while it is still warming up, scale back to two.
    let scale = |n: i32| {
        let pools = pools.clone();
        async move {
            let patch = json!({"spec": {"replicas": n}});
            pools.patch("default", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await
        }
    };
    scale(3).await.expect("scale up");
    let warming = wait_for(TIMEOUT, "the third worker pod", || async {
        let idle = idle_pods(&pods).await?;
        idle.into_iter().find(|p| !ready.contains(&p.name_any())).ok_or_else(|| "not created yet".to_owned())
    })
    .await
    .expect("third pod");
    assert!(!pod_ready(&warming), "the precondition: the new worker is not Ready yet");
    scale(2).await.expect("scale down");

    let kept = wait_for(TIMEOUT, "two idle workers again", || async {
        let idle = idle_pods(&pods).await?;
        if idle.len() == 2 {
            Ok(names(&idle))
        } else {
            Err(format!("{:?}", names(&idle)))
        }
    })
    .await
    .expect("scaled down");
    assert_eq!(kept, ready, "scale-down removed a Ready warm worker instead of the one still warming up");
}

#[tokio::test]
async fn a_worker_that_is_not_ready_is_never_allocated() {
    let cp = cluster().await;
    let client = cp.client().await.expect("client");
    let ns = namespace(&client, "not-ready").await;
    let pools: Api<MediaWorkerPool> = Api::namespaced(client.clone(), &ns);
    let pool =
        pools.create(&PostParams::default(), &serde_json::from_value(pool_json(0)).expect("pool")).await.expect("pool");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    // What the pool controller would make (no operator runs here): the private keys and the
    // public keys the worker pods mount.
    let signing = tiepdan_operator::tokens::SigningKeys::generate();
    let keys = token_keys::private_secret(&pool, &signing).expect("keys");
    secrets.create(&PostParams::default(), &keys).await.expect("keys");
    let public = token_keys::public_config_map(&pool, &signing).expect("public keys");
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &public)
        .await
        .expect("public keys");
    let session: ReceptionSession = serde_json::from_value(json!({
        "apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionSession",
        "metadata": {"name": "s"},
        "spec": {"title": "Chạy thử", "host": "tinh", "points": ["tinh"],
                 "schedule": {"start": "2027-01-02T01:00:00Z", "durationMinutes": 60}}
    }))
    .expect("session");
    let session = Api::<ReceptionSession>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &session)
        .await
        .expect("session");

    // A warm pod that has just been created: scheduled, starting, not Ready.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut held = worker_ports::Held::default();
    let ports = worker_ports::allocate(&pool.spec, &mut held).expect("ports");
    let warm = worker_pod::build(&pool, "default-warm", None, ports);
    pods.create(&PostParams::default(), &warm).await.expect("warm pod");

    // Allocation reads the operator's pod cache: start one, and wait until it has the warm pod.
    let config = OperatorConfig { namespace: Some(ns.clone()), ..Default::default() };
    let ctx = op::Context::new(client.clone(), Arc::new(tiepdan_operator::clock::SystemClock), config);
    let (_triggers, watches) = ctx.start_caches().expect("the caches start once");
    wait_for(TIMEOUT, "the warm pod in the operator's pod cache", || async {
        match ctx.pods_labelled(&ns, labels::POOL, "default").len() {
            1 => Ok(()),
            n => Err(format!("{n} pods")),
        }
    })
    .await
    .expect("cached");
    let (got, _) = allocation::allocate(&ctx, &session, &pool, 0, jiff::Timestamp::now()).await.expect("allocation");
    for w in watches {
        w.abort();
    }
    let pod = got.pod().clone();
    assert!(
        matches!(got, Allocation::Created(_)),
        "a not-Ready warm pod was taken ({}); the session must get a pod of its own",
        pod.name_any()
    );
    assert_ne!(pod.name_any(), "default-warm");
    assert_ne!(worker_ports::of_pod(&pod), ports, "the new pod got its own host ports");
    // Both run side by side on the one node.
    wait_for(TIMEOUT, "both pods Ready", || async {
        let list = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let ready = list.items.iter().filter(|p| pod_ready(p)).count();
        if ready == 2 {
            Ok(())
        } else {
            Err(format!("{ready} Ready"))
        }
    })
    .await
    .expect("both Ready");
}
