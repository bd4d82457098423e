//! The stable entry from the chart, on the real node: `helm install` with `entry.enabled` runs the
//! entry image next to the operator image; a point's link through the entry joins the session's
//! worker; the worker's pod is deleted; the same link joins the replacement through the entry
//! within 10 s; `tiepdan-operator links` prints entry links (status.entryUrl); and no token
//! shows up in the entry's or the worker's log.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tiepdan_harness::{create_namespace, unique_name, wait_for, RealNode};
use tiepdan_media_worker::probe::client::SignalingClient;
use tiepdan_media_worker::probe::tls::ClientTls;
use tiepdan_media_worker::signaling::protocol::ClientMessage;
use tiepdan_operator::api::ReceptionSession;
use tiepdan_operator::build::labels;

use crate::chart_install::{host_network_values, Release};
use crate::common::{cluster, kubectl};

const SESSION: &str = "tiep-dan-qua-loi-vao";
const ENTRY_HOST: &str = "tiepdan.hungyen.test";
const ENTRY_IMAGE: &str = concat!("ghcr.io/tiepdan/tiepdan-entry:", env!("CARGO_PKG_VERSION"));
/// What the issue asks of a link across a worker replacement.
const RECONNECT_BOUND: Duration = Duration::from_secs(10);

/// A certificate for [`ENTRY_HOST`] from a CA of its own (the province's, say): the Secret the
/// chart's entry serves, and the client trust that accepts it.
fn entry_certificate(namespace: &str) -> (Secret, ClientTls) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "province CA (test)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![ENTRY_HOST.to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "tiepdan-entry-tls", "namespace": namespace},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": format!("{}{}", leaf.pem(), ca.pem()), "tls.key": key.serialize_pem()},
    }))
    .unwrap();
    (secret, ClientTls::from_pem(ca.pem().as_bytes(), Some(ENTRY_HOST.to_owned())).unwrap())
}

/// One join through the entry, as a console's first step; `Err` says why not (yet).
async fn join_through(url: &str, trust: &ClientTls, token: &str) -> Result<(), String> {
    let mut c = SignalingClient::connect_with(url, Some(trust)).await.map_err(|e| e.to_string())?;
    let joined = c.request(ClientMessage::Join { token: token.to_owned() }).await.map_err(|e| format!("{e:?}"));
    c.close().await;
    joined.map(|_| ())
}

/// The sessions namespace's pods as `kubectl describe` shows them (states and events) and the
/// operator's log: why no worker serves.
fn diagnosis(cp: &tiepdan_harness::ControlPlane, install_ns: &str, ns: &str) -> String {
    let pods = kubectl(cp, &["describe", "pods", "-n", ns]);
    let operator = logs(cp, install_ns, "app.kubernetes.io/name=tiepdan-operator");
    format!("the worker pods:\n{}\nthe operator's log:\n{operator}", String::from_utf8_lossy(&pods.stdout))
}

fn worker_of(s: &ReceptionSession) -> Option<String> {
    s.status.as_ref().and_then(|st| st.worker.as_ref()).and_then(|w| w.pod.clone())
}

fn logs(cp: &tiepdan_harness::ControlPlane, ns: &str, selector: &str) -> String {
    let out = kubectl(cp, &["logs", "-n", ns, "-l", selector, "--tail=-1", "--all-containers"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_link_survives_the_deletion_of_its_workers_pod() {
    let cp = cluster().await;
    RealNode::shared().await.expect("the real node is Ready");
    let admin = cp.client().await.unwrap();
    let install_ns = unique_name("entry-op");
    create_namespace(&admin, &install_ns).await.unwrap();
    let ns = unique_name("entry-sessions");
    create_namespace(&admin, &ns).await.unwrap();
    let (secret, trust) = entry_certificate(&install_ns);
    Api::<Secret>::namespaced(admin.clone(), &install_ns).create(&PostParams::default(), &secret).await.unwrap();
    let release_name = unique_name("tiepdan");
    crate::common::kubectl_ok(cp, &["label", "namespace", &ns, &format!("tiepdan.io/chart-test={release_name}")]);
    let port = tiepdan_harness::process::free_port_below_ephemeral().unwrap();
    let values = format!(
        "{},entry.enabled=true,entry.host={ENTRY_HOST},entry.replicas=1,entry.hostNetwork=true,\
         entry.listenHost=127.0.0.1,entry.port={port},entry.service.type=ClusterIP,entry.service.port={port}",
        host_network_values(cp, &release_name, &ns)
    );
    let _release = Release::install(cp, &install_ns, release_name.clone(), &values);
    let entry_selector = format!("app.kubernetes.io/name=tiepdan-entry,app.kubernetes.io/instance={release_name}");

    // The topology, in its rehearsal now; the operator pod provisions it.
    let now = jiff::Timestamp::now();
    let (deadline, start) = (now + jiff::SignedDuration::from_mins(59), now + jiff::SignedDuration::from_mins(120));
    let yaml = crate::common::small_live_topology(SESSION, "Tiếp dân qua lối vào", start, deadline);
    wait_for(Duration::from_secs(60), "the topology applied", || async {
        let out = crate::common::kubectl_apply_yaml(cp, &ns, &yaml);
        out.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap();
    let sessions = Api::<ReceptionSession>::namespaced(admin.clone(), &ns);
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    let token = wait_for(Duration::from_secs(90), "the session's join tokens", || async {
        let s = secrets.get_opt(&format!("{SESSION}-join-tokens")).await.map_err(|e| e.to_string())?;
        s.and_then(|s| s.data)
            .and_then(|d| d.get("di-su").map(|v| String::from_utf8(v.0.clone()).unwrap()))
            .ok_or("not yet".to_owned())
    })
    .await
    .unwrap();

    // The entry pod, from the entry image, Ready on the node; a link through it joins.
    let pods = Api::<Pod>::namespaced(admin.clone(), &install_ns);
    let entry_pod = wait_for(Duration::from_secs(90), "the entry's pod Ready", || async {
        let list = pods.list(&ListParams::default().labels(&entry_selector)).await.map_err(|e| e.to_string())?;
        let states = format!("{:?}", list.items.iter().map(|p| &p.status).collect::<Vec<_>>());
        list.items.into_iter().find(tiepdan_operator::controller::pods::pod_ready).ok_or(states)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nthe entry's log:\n{}", logs(cp, &install_ns, &entry_selector)));
    assert_eq!(entry_pod.spec.unwrap().containers[0].image.as_deref(), Some(ENTRY_IMAGE));
    let url = format!("wss://127.0.0.1:{port}/v1/ws");
    wait_for(Duration::from_secs(90), "a join through the entry", || join_through(&url, &trust, &token))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", diagnosis(cp, &install_ns, &ns)));
    let old = worker_of(&sessions.get(SESSION).await.unwrap()).expect("a worker");

    // The worker's pod is deleted; the same link joins its replacement through the entry.
    let deleted = Instant::now();
    Api::<Pod>::namespaced(admin.clone(), &ns).delete(&old, &DeleteParams::default()).await.unwrap();
    let mut last = String::new();
    let rejoined = loop {
        match join_through(&url, &trust, &token).await {
            Ok(()) => {
                let s = sessions.get(SESSION).await.unwrap();
                if worker_of(&s).is_some_and(|w| w != old) {
                    break deleted.elapsed();
                }
            }
            Err(e) => last = e,
        }
        assert!(deleted.elapsed() < Duration::from_secs(60), "no rejoin through the entry: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("the same entry link joined the new worker {rejoined:.1?} after its pod was deleted");
    assert!(rejoined < RECONNECT_BOUND, "rejoined after {rejoined:?}");

    // The operator pod published the entry in the session's status (--entry-url from the chart),
    // so `tiepdan-operator links` (its code, run here with the admin's kubeconfig) prints entry links.
    let links = tiepdan_operator::links::fetch(&admin, &ns, SESSION, &tiepdan_operator::links::LinkBase::Default)
        .await
        .unwrap();
    let link = links.iter().find(|l| l.point == "di-su").expect("di-su's link");
    assert_eq!(link.url, format!("https://{ENTRY_HOST}:{port}/join#token={token}"));

    // No token in the entry's or the workers' logs (the entry logged its routing).
    let entry_log = logs(cp, &install_ns, &entry_selector);
    assert!(entry_log.contains("routed"), "the entry's log: {entry_log}");
    let worker_log = logs(cp, &ns, &format!("{}={}", labels::COMPONENT, labels::COMPONENT_WORKER));
    let signature = token.rsplit('.').next().unwrap();
    for (who, log) in [("entry", &entry_log), ("worker", &worker_log)] {
        assert!(!log.contains(signature), "the {who}'s log holds a token");
    }
}
