//! The harness's real node: kubelet + containerd + runc + kube-scheduler 1.20.2 joined to the
//! real control plane, running pods from the images `scripts/images.sh` builds. One node per
//! machine at a time, so these tests take turns.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;
use tiepdan_harness::process::StartupError;
use tiepdan_harness::real_node::{config::SyncSettings, images_dir, RealNode, RealNodeError, RealNodeOptions};
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane};
use tokio::sync::Mutex;

const TIMEOUT: Duration = Duration::from_secs(60);
static ONE_NODE: Mutex<()> = Mutex::const_new(());

async fn cluster() -> (&'static ControlPlane, Client) {
    let cp = ControlPlane::shared().await.expect("control plane starts");
    let client = cp.client().await.expect("client");
    (cp, client)
}

fn image_ref(name: &str) -> String {
    format!("ghcr.io/tiepdan/{name}:{}", env!("CARGO_PKG_VERSION"))
}

/// What a node could leave behind on the machine, read before and after.
#[derive(Debug, PartialEq, Eq)]
struct MachineState {
    mounts: BTreeSet<String>,
    netns: BTreeSet<String>,
    routes: String,
    iptables: String,
    sysctls: Vec<String>,
    shims: usize,
    runtime_state: BTreeSet<String>,
}

fn read_machine_state() -> MachineState {
    let sh = |cmd: &str| {
        let out = std::process::Command::new("sh").arg("-c").arg(cmd).output().expect("sh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    MachineState {
        mounts: std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .collect(),
        netns: std::fs::read_dir("/run/netns")
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default(),
        routes: sh("ip route show table all"),
        iptables: sh("iptables-save 2>/dev/null | grep -v '^#'"),
        sysctls: ["vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"]
            .iter()
            .map(|s| std::fs::read_to_string(format!("/proc/sys/{s}")).unwrap_or_default())
            .collect(),
        shims: sh("ps -eo args | grep -c '^/usr/bin/containerd-shim'").trim().parse().unwrap_or(0),
        runtime_state: sh("find /run/containerd 2>/dev/null | sort").lines().map(str::to_owned).collect(),
    }
}

#[tokio::test]
async fn a_real_node_runs_the_worker_image_and_leaves_nothing_behind() {
    let _turn = ONE_NODE.lock().await;
    let (cp, client) = cluster().await;
    let before = read_machine_state();
    let node = RealNode::start(cp, RealNodeOptions::with_project_images()).await.expect("the node gets Ready");
    eprintln!("node Ready {:.1?} after start", node.ready_after());

    // kubelet rewrites these; the cleanup restores them.
    let during = read_machine_state();
    assert!(during.routes.contains("unreachable 10.244.0.0/24"), "pod CIDR unreachable: {}", during.routes);
    assert!(
        during.routes.contains(&format!("unreachable {}", tiepdan_harness::control_plane::SERVICE_CIDR)),
        "Service CIDR unreachable"
    );

    let ns = unique_name("real-node");
    create_namespace(&client, &ns).await.expect("namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let port = tiepdan_harness::process::free_port_below_ephemeral().expect("a port");
    // A Secret volume (the kubelet's sync of it is checked below) and the token public keys.
    let key = "k".repeat(32);
    let keys = tiepdan_operator::tokens::SigningKeys::generate();
    let public = |u| keys.public_pem(u).expect("pem");
    use tiepdan_operator::tokens::KeyUse;
    // A hostNetwork worker from the image, the way a pool runs it: non-root, read-only root fs.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "worker"},
        "spec": {
            "hostNetwork": true,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532},
            "containers": [{
                "name": "media-worker",
                "image": image_ref("tiepdan-media-worker"),
                "imagePullPolicy": "Never",
                "command": ["/usr/local/bin/tiepdan-media-worker"],
                "args": ["serve", format!("--listen=127.0.0.1:{port}"), "--join-public-key-file=/keys/join.pub.pem",
                         "--admin-public-key-file=/keys/admin.pub.pem"],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 1},
                "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "key", "mountPath": "/key", "readOnly": true},
                                 {"name": "keys", "mountPath": "/keys", "readOnly": true}]
            }],
            "volumes": [{"name": "key", "secret": {"secretName": "worker-key"}},
                        {"name": "keys", "configMap": {"name": "worker-keys"}}]
        }
    }))
    .expect("pod");
    let config_map = serde_json::from_value(json!({"metadata": {"name": "worker-keys"},
        "data": {"join.pub.pem": public(KeyUse::Join), "admin.pub.pem": public(KeyUse::Admin)}}))
    .expect("config map");
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &config_map)
        .await
        .expect("config map created");
    let secret = serde_json::from_value(json!({"metadata": {"name": "worker-key"}, "stringData": {"key": key}}))
        .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
    pods.create(&PostParams::default(), &pod).await.expect("pod created");
    let ready = wait_for(TIMEOUT, "the worker pod to be scheduled and Ready", || async {
        let p = pods.get("worker").await.map_err(|e| e.to_string())?;
        let status = p.status.clone().unwrap_or_default();
        let ready = status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            Ok(p)
        } else {
            Err(format!("phase {:?}, {:?}", status.phase, status.container_statuses))
        }
    })
    .await
    .expect("Ready");
    assert_eq!(ready.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("127.0.0.1"), "scheduled");
    assert_eq!(ready.status.as_ref().and_then(|s| s.pod_ip.as_deref()), Some("127.0.0.1"));
    // Served from inside the container, reached on loopback.
    let body = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.expect("healthz").status();
    assert!(body.is_success());
    // It runs as 65532, in its own PID namespace.
    let id = ready.status.unwrap().container_statuses.unwrap()[0].container_id.clone().expect("container id");
    let pid = node.container_pid(&id).expect("task pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default();
    assert!(uid_line.split_whitespace().nth(1) == Some("65532"), "{uid_line}");

    // A changed Secret reaches the running container's volume (kubelet's sync, 2 s here).
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let renewed = "r".repeat(32);
    let patch = json!({"stringData": {"key": renewed}});
    secrets
        .patch("worker-key", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("secret updated");
    let in_container = format!("/proc/{pid}/root/key/key");
    let synced = std::time::Instant::now();
    wait_for(Duration::from_secs(30), "the renewed Secret inside the running container", || async {
        let now = std::fs::read_to_string(&in_container).map_err(|e| e.to_string())?;
        if now == renewed {
            Ok(())
        } else {
            Err(format!("still {now:?}"))
        }
    })
    .await
    .expect("volume updated");
    eprintln!("Secret update reached the container in {:.1?}", synced.elapsed());
    assert_eq!(node.container_pid(&id).expect("task"), pid, "updated in place, no restart");

    drop(node);
    let after = read_machine_state();
    assert_eq!(before, after, "the node left something behind");
}

#[tokio::test]
async fn bad_setups_get_clear_errors() {
    let _turn = ONE_NODE.lock().await;
    let (cp, _client) = cluster().await;

    let missing = images_dir().join("no-such-image.oci.tar");
    let err = RealNode::start(cp, RealNodeOptions { images: vec![missing.clone()], ..RealNodeOptions::default() })
        .await
        .err()
        .expect("a missing image is refused");
    assert!(matches!(err, RealNodeError::MissingImage { ref path } if *path == missing), "{err}");
    assert!(err.to_string().contains("scripts/images.sh"));

    // A socket file whose containerd died.
    let dir = tiepdan_harness::process::make_temp_dir("stale-socket").expect("dir");
    let listener = std::os::unix::net::UnixListener::bind(dir.join("containerd.sock")).expect("bind");
    drop(listener);
    let err = RealNode::start(cp, RealNodeOptions { dir: Some(dir.clone()), ..RealNodeOptions::with_project_images() })
        .await
        .err()
        .expect("a stale socket is refused");
    assert!(matches!(err, RealNodeError::StaleSocket { .. }), "{err}");
    assert!(err.to_string().contains("containerd.sock"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // A node that does not get Ready in time names the component and its log.
    let before = read_machine_state();
    let err = RealNode::start(
        cp,
        RealNodeOptions {
            start_timeout: Duration::from_millis(300),
            sync: SyncSettings::default(),
            ..RealNodeOptions::with_project_images()
        },
    )
    .await
    .err()
    .expect("not Ready within 300 ms");
    match &err {
        RealNodeError::Startup(StartupError::NotReady { component, log, .. }) => {
            assert!(["containerd", "kubelet"].contains(component), "{err}");
            assert!(log.ends_with(format!("{component}.log")), "{err}");
            assert!(log.exists(), "the log the error names is kept");
            let _ = std::fs::remove_dir_all(log.parent().expect("the node's dir"));
        }
        other => panic!("expected NotReady, got {other}"),
    }
    assert_eq!(before, read_machine_state(), "a failed start leaves nothing behind");
}
