//! The chart's coturn shared secret on a real kube-apiserver: the operator makes it once, at
//! random, and never replaces it (coturn and every worker already use it).

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tiepdan_harness::{create_namespace, unique_name, ControlPlane};
use tiepdan_operator::api::TURN_SECRET_KEY;
use tiepdan_operator::controller::turn_secret;

#[tokio::test]
async fn the_turn_secret_is_made_once_and_never_replaced() {
    let cp = ControlPlane::shared().await.expect("control plane starts");
    let client = cp.client().await.expect("client from the kubeconfig");
    let ns = unique_name("turn");
    create_namespace(&client, &ns).await.expect("namespace usable");

    assert!(turn_secret::ensure(&client, &ns, "tiepdan-turn").await.expect("create"), "made the first time");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let value = |s: Secret| s.data.expect("data")[TURN_SECRET_KEY].0.clone();
    let first = value(secrets.get("tiepdan-turn").await.expect("get"));
    assert_eq!(first.len(), 64, "32 random bytes as hex");

    // A restarted operator (or another replica after a leader change) finds it and keeps it.
    assert!(!turn_secret::ensure(&client, &ns, "tiepdan-turn").await.expect("ensure again"), "not made twice");
    assert_eq!(value(secrets.get("tiepdan-turn").await.expect("get")), first, "the secret is never replaced");
}
