//! Leader election on a real Lease: of two replicas exactly one leads, and when the leader stops
//! (releasing its Lease, or simply dying) the other takes over.

use std::time::Duration;

use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::leader::{self, LeaseConfig};
use tokio::sync::watch;

use crate::common::cluster;

fn cfg(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: ns.to_owned(),
        name: "tiepdan-operator".to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(2),
        retry: Duration::from_millis(200),
    }
}

async fn wait_leaders(a: &watch::Receiver<bool>, b: &watch::Receiver<bool>, want: (bool, bool)) {
    wait_for(Duration::from_secs(20), format!("leadership {want:?}"), || async {
        let got = (*a.borrow(), *b.borrow());
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn exactly_one_replica_leads_and_the_other_takes_over() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("lease");
    create_namespace(&client, &ns).await.unwrap();

    let (tx_a, rx_a) = watch::channel(false);
    let a = tokio::spawn(leader::run(client.clone(), cfg(&ns, "replica-a"), tx_a));
    wait_leaders(&rx_a, &rx_a.clone(), (true, true)).await;
    let (tx_b, rx_b) = watch::channel(false);
    let b = tokio::spawn(leader::run(client.clone(), cfg(&ns, "replica-b"), tx_b));
    // b keeps trying for longer than the lease lasts, and still does not lead.
    let api = kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), &ns);
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert!(*rx_a.borrow() && !*rx_b.borrow(), "two leaders or none");
        tokio::task::yield_now().await;
        let _ = api.get("tiepdan-operator").await.unwrap();
    }

    // The leader dies without releasing: b takes over once the lease expires.
    a.abort();
    wait_leaders(&rx_b, &rx_b.clone(), (true, true)).await;
    let lease = api.get("tiepdan-operator").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(lease.lease_transitions, Some(1));

    // A released lease is taken at once by the next candidate.
    b.abort();
    leader::release(&api, &cfg(&ns, "replica-b")).await.unwrap();
    let (tx_c, rx_c) = watch::channel(false);
    let c = tokio::spawn(leader::run(client.clone(), cfg(&ns, "replica-c"), tx_c));
    wait_leaders(&rx_c, &rx_c.clone(), (true, true)).await;
    c.abort();
}

/// A standby replica (its gate, the Lease, not won) is ready once it can read every watched kind,
/// so a rolling update that waits for the new pod to be ready before stopping the leader finishes;
/// it still does not reconcile.
#[tokio::test]
async fn a_standby_replica_is_ready_but_does_not_reconcile() {
    use std::sync::Arc;

    use kube::api::Api;
    use tiepdan_operator::api::MediaWorkerPool;
    use tiepdan_operator::controller::{self, OperatorConfig};

    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("standby");
    create_namespace(&client, &ns).await.unwrap();
    let port = tiepdan_harness::process::free_ports(1).unwrap()[0];
    let config =
        OperatorConfig { metrics_addr: Some(([127, 0, 0, 1], port).into()), ..crate::common::test_config(&ns) };
    let clock = Arc::new(tiepdan_operator::clock::SystemClock);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let standby = tokio::spawn(controller::run_gated(client.clone(), clock, config, std::future::pending(), async {
        let _ = stop_rx.await;
    }));

    let url = format!("http://127.0.0.1:{port}/readyz");
    wait_for(Duration::from_secs(20), "the standby's /readyz to answer 200", || async {
        match reqwest::get(&url).await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
    // Not leading: a pool gets no status from it.
    let out = crate::common::kubectl_apply_yaml(
        cp,
        &ns,
        "apiVersion: tiepdan.io/v1alpha1\nkind: MediaWorkerPool\nmetadata: {name: p}\nspec: {replicas: 0, rtcPorts: {min: 43000, max: 43009}}\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pools = Api::<MediaWorkerPool>::namespaced(client.clone(), &ns);
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert!(pools.get("p").await.unwrap().status.is_none(), "a standby replica reconciled a pool");
        tokio::task::yield_now().await;
    }
    let _ = stop_tx.send(());
    standby.await.unwrap();
}
