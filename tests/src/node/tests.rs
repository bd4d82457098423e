//! The node against the real kube-apiserver: a running process's secret and configMap volumes
//! follow their sources, as kubelet's periodic sync makes them.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use super::{Node, NodeMode, NodeOptions};
use crate::{create_namespace, unique_name, wait_for, ControlPlane};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The container's process: every 50 ms it writes what it reads at `$TLS_DIR/tls.crt` (the mount
/// path, rewritten to the volume's directory like any env value under a mount) to `seen.txt`,
/// or `<none>` while there is no such file.
const READER: &str = r#"while :; do
  if [ -r "$TLS_DIR/tls.crt" ]; then cat "$TLS_DIR/tls.crt" > seen.tmp; else printf '<none>' > seen.tmp; fi
  mv seen.tmp seen.txt
  sleep 0.05
done"#;

fn pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "w"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "media-worker",
                "image": "example.invalid/tiepdan-media-worker:dev",
                "command": ["/usr/local/bin/tiepdan-media-worker"],
                "args": ["-c", READER],
                "env": [{"name": "TLS_DIR", "value": "/var/run/tiepdan/tls"}],
                "volumeMounts": [
                    {"name": "tls", "mountPath": "/var/run/tiepdan/tls", "readOnly": true},
                    {"name": "settings", "mountPath": "/etc/tiepdan", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "tls", "secret": {"secretName": "w-tls", "optional": true}},
                {"name": "settings", "configMap": {"name": "settings"}}
            ]
        }
    }))
    .expect("valid pod")
}

fn tls_secret(cert: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": "w-tls"}, "stringData": {"tls.crt": cert, "tls.key": "k"}}))
        .expect("valid secret")
}

/// Names in a volume's directory other than the writer's own (`..data`, `..<time>`).
fn visible(dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    let mut names: Vec<String> = entries
        .into_iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_running_process_sees_its_optional_secret_appear_rotate_and_vanish() {
    let cp = ControlPlane::shared().await.expect("control plane starts");
    let client = cp.client().await.expect("client");
    let ns = unique_name("volume-sync");
    create_namespace(&client, &ns).await.expect("namespace usable");
    let options = NodeOptions::new(NodeMode::Processes { media_worker_bin: "/bin/sh".into() })
        .in_namespace(&ns)
        .with_volume_sync_interval(Duration::from_millis(100));
    let node = Node::start(client.clone(), options).expect("node starts");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let settings: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"mode": "warm"}})).expect("valid");
    config_maps.create(&PostParams::default(), &settings).await.expect("configMap created");
    Api::<Pod>::namespaced(client.clone(), &ns).create(&PostParams::default(), &pod()).await.expect("pod created");

    let dir = node.pod_dir(&ns, "w");
    let logs = || node.logs(&ns, "w").unwrap_or_default();
    let sees = |want: &'static str| {
        let seen = dir.join("seen.txt");
        wait_for(TIMEOUT, format!("the process to read {want:?} at the mount path"), move || {
            let seen = seen.clone();
            async move {
                match std::fs::read_to_string(&seen) {
                    Ok(s) if s == want => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
    };

    // The Secret does not exist yet: the pod starts anyway, with an empty directory.
    sees("<none>").await.unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", logs()));
    let pid = node.pid(&ns, "w").expect("process running");
    assert!(dir.join("volumes/tls").is_dir());
    assert!(visible(&dir.join("volumes/tls")).is_empty());

    // Created when the worker is allocated, then rotated: the same path shows each version.
    secrets.create(&PostParams::default(), &tls_secret("cert-1")).await.expect("secret created");
    sees("cert-1").await.unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", logs()));
    assert_eq!(visible(&dir.join("volumes/tls")), ["tls.crt", "tls.key"]);
    let rotate = json!({"stringData": {"tls.crt": "cert-2"}});
    secrets.patch("w-tls", &PatchParams::default(), &Patch::Merge(&rotate)).await.expect("secret rotated");
    sees("cert-2").await.unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", logs()));

    // Deleted: the optional volume is empty again.
    secrets.delete("w-tls", &DeleteParams::default()).await.expect("secret deleted");
    sees("<none>").await.unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", logs()));
    assert!(visible(&dir.join("volumes/tls")).is_empty());

    // A required ConfigMap deleted under the running pod keeps its last content. The Secret
    // created after the deletion shows that a sync has run since: each fetches all sources.
    config_maps.delete("settings", &DeleteParams::default()).await.expect("configMap deleted");
    secrets.create(&PostParams::default(), &tls_secret("cert-3")).await.expect("secret created again");
    sees("cert-3").await.unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", logs()));
    let mode = std::fs::read_to_string(dir.join("volumes/settings/mode")).expect("configMap volume kept");
    assert_eq!(mode, "warm");

    // All of it without restarting the process.
    assert_eq!(node.pid(&ns, "w"), Some(pid));
    node.shutdown().await;
}
