//! The harness against a real kube-apiserver and kube-controller-manager (one shared control
//! plane per test binary, one namespace per test).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn client() -> (&'static ControlPlane, Client) {
    let cp = ControlPlane::shared().await.expect("control plane starts");
    let client = cp.client().await.expect("client from the kubeconfig");
    (cp, client)
}

async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique_name(prefix);
    create_namespace(client, &name).await.expect("namespace usable");
    name
}

#[tokio::test]
async fn control_plane_answers_kubectl_and_kube_clients() {
    let (cp, client) = client().await;

    let out = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["version", "-o", "json"])
        .output()
        .await
        .expect("kubectl runs");
    let version: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json version");
    let server = version["serverVersion"]["gitVersion"].as_str().unwrap_or_default();
    assert!(server.starts_with("v1.20."), "server version {server}, stderr: {}", String::from_utf8_lossy(&out.stderr));

    let namespaces: Api<Namespace> = Api::all(client);
    let names: Vec<String> =
        namespaces.list(&Default::default()).await.expect("list").iter().map(ResourceExt::name_any).collect();
    assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");
}

#[tokio::test]
async fn deleting_a_namespace_removes_it_and_its_objects() {
    let (_cp, client) = client().await;
    let ns = namespace(&client, "doomed").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = ConfigMap { metadata: meta("settings"), ..ConfigMap::default() };
    config_maps.create(&PostParams::default(), &cm).await.expect("configmap created");

    let namespaces: Api<Namespace> = Api::all(client);
    namespaces.delete(&ns, &DeleteParams::default()).await.expect("delete accepted");
    wait_for(TIMEOUT, format!("namespace {ns} to disappear"), || async {
        match namespaces.get_opt(&ns).await {
            Ok(None) => Ok(()),
            Ok(Some(n)) => Err(format!("phase {:?}", n.status.and_then(|s| s.phase))),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("namespace controller finishes the deletion");
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let (_cp, client) = client().await;
    let ns = namespace(&client, "gc").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let owner = config_maps
        .create(&PostParams::default(), &ConfigMap { metadata: meta("owner"), ..ConfigMap::default() })
        .await
        .expect("owner created");
    let owned = Secret {
        metadata: ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.name_any(),
                uid: owner.uid().expect("uid"),
                ..OwnerReference::default()
            }]),
            ..meta("owned")
        },
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &owned).await.expect("dependent created");

    config_maps.delete("owner", &DeleteParams::default()).await.expect("owner deleted");
    wait_for(TIMEOUT, "the owned Secret to be garbage-collected", || async {
        match secrets.get_opt("owned").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("garbage collector deletes the dependent");
}

/// A stand-in for `tiepdan-media-worker`: records its argv and the key it was pointed at, then
/// serves `www/` (with `readyz`) on the `--listen` address.
fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() }
}
