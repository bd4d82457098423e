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
