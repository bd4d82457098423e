//! The harness against a real kube-apiserver and kube-controller-manager (one shared control
//! plane per test binary, one namespace per test).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tiepdan_harness::process::{signal, Signal};
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane, Node, NodeMode, NodeOptions};

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

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

/// Waits until the pod's `Ready` condition is `want` and returns the pod.
async fn wait_ready(pods: &Api<Pod>, name: &str, want: &str) -> Pod {
    wait_for(TIMEOUT, format!("pod {name} to have Ready={want}"), || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let ready = condition(&pod, "Ready");
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if ready.as_deref() == Some(want) {
            Ok(pod)
        } else {
            Err(format!("phase {phase:?}, Ready {ready:?}"))
        }
    })
    .await
    .expect("pod reaches the readiness wanted")
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
async fn a_pod_in_a_fresh_namespace_runs_ready_on_its_own_loopback_ip() {
    let (_cp, client) = client().await;
    let ns = namespace(&client, "simulated").await;
    let _node =
        Node::start(client.clone(), NodeOptions::new(NodeMode::Simulated).in_namespace(&ns)).expect("node starts");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    for name in ["a", "b"] {
        let pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]}
        }))
        .expect("valid pod");
        pods.create(&PostParams::default(), &pod).await.expect("pod created");
    }

    let a = wait_ready(&pods, "a", "True").await;
    let b = wait_ready(&pods, "b", "True").await;
    let ip = |p: &Pod| p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
    let status = a.status.as_ref().expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(ip(&a).starts_with("127.") && ip(&a) != "127.0.0.1", "pod IP {}", ip(&a));
    assert_ne!(ip(&a), ip(&b));
    let containers = status.container_statuses.as_ref().expect("container statuses");
    assert!(containers[0].ready && containers[0].state.as_ref().and_then(|s| s.running.as_ref()).is_some());
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
const FAKE_WORKER: &str = r#"#!/bin/sh
set -e
printf '%s\n' "$@" > args.txt
for a in "$@"; do
  case "$a" in
    --listen=*) listen=${a#--listen=} ;;
    --token-key-file=*) key=${a#--token-key-file=} ;;
  esac
done
cp "$key" key-seen.txt
mkdir -p www && echo ok > www/readyz
exec /usr/bin/python3 -m http.server --bind "${listen%:*}" --directory www "${listen##*:}"
"#;

fn fake_worker(dir: &Path) -> PathBuf {
    let path = dir.join("fake-media-worker");
    std::fs::write(&path, FAKE_WORKER).expect("script written");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("executable");
    path
}

fn worker_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "media-worker",
                "image": "example.invalid/tiepdan-media-worker:dev",
                "command": ["/usr/local/bin/tiepdan-media-worker"],
                "args": [
                    "--listen=$(POD_IP):8080",
                    "--token-key-file=/var/run/tiepdan/signing-key/signing.key",
                    "--pod=$(POD_NAMESPACE)/$(POD_NAME)",
                    "--secret-env=$(FROM_SECRET)",
                    "--literal=$$(POD_IP)"
                ],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "pool-signing-key", "key": "mode"}}}
                ],
                "ports": [{"name": "signaling", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "signaling"}, "failureThreshold": 1},
                "volumeMounts": [{"name": "signing-key", "mountPath": "/var/run/tiepdan/signing-key", "readOnly": true}]
            }],
            "volumes": [{"name": "signing-key", "secret": {"secretName": "pool-signing-key"}}]
        }
    }))
    .expect("valid pod")
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn processes_mode_runs_the_worker_as_kubelet_would_and_stops_it_on_delete() {
    let (cp, client) = client().await;
    let ns = namespace(&client, "processes").await;
    let bin = fake_worker(cp.dir());
    let options = NodeOptions::new(NodeMode::Processes { media_worker_bin: bin }).in_namespace(&ns);
    let node = Node::start(client.clone(), options).expect("node starts");
    let key = "0123456789abcdef".repeat(4);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pool-signing-key"},
        "stringData": {"signing.key": key, "mode": "warm"}
    }))
    .expect("valid secret");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    pods.create(&PostParams::default(), &worker_pod("worker")).await.expect("pod created");

    let pod = wait_ready(&pods, "worker", "True").await;
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("pod IP");
    let dir = node.pod_dir(&ns, "worker");
    let logs = || node.logs(&ns, "worker").unwrap_or_default();
    let args = std::fs::read_to_string(dir.join("args.txt")).expect("worker recorded its args");
    let key_file = dir.join("volumes/signing-key/signing.key");
    let expected = format!(
        "--listen={ip}:8080\n--token-key-file={}\n--pod={ns}/worker\n--secret-env=warm\n--literal=$(POD_IP)\n",
        key_file.display()
    );
    assert_eq!(args, expected, "logs:\n{}", logs());
    assert_eq!(std::fs::read_to_string(dir.join("key-seen.txt")).expect("key copied"), key);

    // Readiness follows the probe.
    std::fs::remove_file(dir.join("www/readyz")).expect("readyz removed");
    wait_ready(&pods, "worker", "False").await;
    std::fs::write(dir.join("www/readyz"), "ok").expect("readyz restored");
    wait_ready(&pods, "worker", "True").await;

    // A crashed worker is restarted (restartPolicy Always).
    let first = node.pid(&ns, "worker").expect("worker running");
    signal(first, Signal::SIGKILL);
    wait_for(TIMEOUT, "the worker to be restarted", || async {
        let pod = pods.get("worker").await.map_err(|e| e.to_string())?;
        let restarts =
            pod.status.and_then(|s| s.container_statuses).and_then(|c| c.first().map(|c| c.restart_count)).unwrap_or(0);
        match node.pid(&ns, "worker") {
            Some(pid) if restarts >= 1 && pid != first => Ok(()),
            pid => Err(format!("restartCount {restarts}, pid {pid:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", logs()));
    let second = node.pid(&ns, "worker").expect("worker running again");

    pods.delete("worker", &DeleteParams::default()).await.expect("pod deleted");
    wait_for(TIMEOUT, "the worker process to exit", || async {
        if process_alive(second) {
            Err("still running")
        } else {
            Ok(())
        }
    })
    .await
    .expect("node stops the worker");
    assert!(node.logs(&ns, "worker").is_ok_and(|l| l.contains("start #1")));
}

#[tokio::test]
async fn a_worker_pod_marked_for_deletion_is_stopped_and_finished_by_the_node() {
    let (cp, client) = client().await;
    let ns = namespace(&client, "finalized").await;
    let bin = fake_worker(cp.dir());
    let options = NodeOptions::new(NodeMode::Processes { media_worker_bin: bin }).in_namespace(&ns);
    let node = Node::start(client.clone(), options).expect("node starts");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pool-signing-key"},
        "stringData": {"signing.key": "k", "mode": "warm"}
    }))
    .expect("valid secret");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut pod = worker_pod("held");
    pod.metadata.finalizers = Some(vec!["tiepdan.test/hold".into()]);
    pods.create(&PostParams::default(), &pod).await.expect("pod created");
    wait_ready(&pods, "held", "True").await;
    let pid = node.pid(&ns, "held").expect("worker running");

    // The finalizer keeps the pod, with a deletionTimestamp, after the delete.
    pods.delete("held", &DeleteParams::default()).await.expect("delete accepted");
    wait_for(TIMEOUT, "the held pod's worker to be stopped", || async {
        if process_alive(pid) {
            Err("still running")
        } else {
            Ok(())
        }
    })
    .await
    .expect("node stops the worker of a terminating pod");
    let held = pods.get("held").await.expect("pod still held by its finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());

    let release = json!({"metadata": {"finalizers": null}});
    pods.patch("held", &PatchParams::default(), &Patch::Merge(&release)).await.expect("released");
    wait_for(TIMEOUT, "the released pod to vanish", || async {
        match pods.get_opt("held").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("pod is gone once released");
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() }
}
