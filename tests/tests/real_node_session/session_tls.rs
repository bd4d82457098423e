//! Per-session TLS on the real node, with worker containers of the worker image: the operator's own
//! CA signs the session's certificate, the worker serves signaling with it over HTTPS/WSS, plain
//! signaling is refused, renewal reaches the worker, and nothing is left after Completed; with a
//! cert-manager issuer named, the operator asks for a `Certificate` and serves what cert-manager
//! writes (this test plays cert-manager: its controller does not run here).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use tiepdan_harness::wait_for;
use tiepdan_media_worker::probe::tls::{served_certificate_sha256, ClientTls};
use tiepdan_operator::api::{ReceptionSession, SessionPhase};
use tiepdan_operator::build::{labels, tls, worker_ports};
use tiepdan_operator::controller::certificate::{CERTIFICATE_READY, CERT_MANAGER_CRDS};
use tiepdan_operator::controller::OperatorConfig;

use crate::common::{
    cluster, exchange_media, kubectl_apply_yaml, live_session, session_trust, small_live_topology, wait_condition,
    wait_crds_established,
};

/// Waits until the session's `CertificateReady` has `status` and `reason`.
async fn wait_certificate(
    sessions: &Api<ReceptionSession>,
    name: &str,
    status: &str,
    reason: &str,
) -> ReceptionSession {
    let what = format!("CertificateReady={status} ({reason})");
    wait_condition(sessions, name, CERTIFICATE_READY, &what, |c| c.status == status && c.reason == reason).await
}

/// The worker's signaling address (`ip:port`), its admin address and its pod's name. In the host
/// network the ports are the pair the pool gave this pod.
async fn worker(client: &Client, ns: &str, session: &ReceptionSession) -> (String, String, String) {
    let pod_name = session.status.clone().unwrap().worker.unwrap().pod.unwrap();
    let pod = Api::<Pod>::namespaced(client.clone(), ns).get(&pod_name).await.unwrap();
    let ports = worker_ports::of_pod(&pod);
    let ip = pod.status.unwrap().pod_ip.unwrap();
    (format!("{ip}:{}", ports.signaling), format!("{ip}:{}", ports.admin), pod_name)
}

fn secret_text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

/// Secrets labelled for `session` in `ns`.
async fn session_secrets(client: &Client, ns: &str, session: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("{}={session}", labels::SESSION));
    let list = Api::<Secret>::namespaced(client.clone(), ns).list(&lp).await.unwrap();
    list.items.into_iter().filter_map(|s| s.metadata.name).collect()
}

/// The SHA-256 of the certificate the worker presents on its signaling address `sig`.
async fn served(sig: &str, server_name: &str) -> Result<String, String> {
    let addr = sig.parse().unwrap();
    served_certificate_sha256(addr, server_name, None, None).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_ca_signs_the_session_certificate_the_worker_serves_it_and_renewal_reaches_it() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    // The certificate is short so that a clock jump inside the session crosses its renewal point.
    let short = |c| OperatorConfig { session_cert_validity: SignedDuration::from_hours(3), ..c };
    let live = live_session(cp, &client, "tls", short, |start, deadline| {
        small_live_topology("bao-mat", "Phiên bảo mật", start, deadline)
    })
    .await;
    let (ns, clock, now, start) = (live.ns.clone(), live.clock.clone(), live.now, live.start);

    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    let s = wait_certificate(&sessions, "bao-mat", "True", "Serving").await;
    let (sig, admin, pod) = worker(&client, &ns, &s).await;
    let server_name = format!("bao-mat-signaling.{ns}.svc");
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let issued = secrets.get(&tls::secret_name("bao-mat")).await.unwrap();
    assert_eq!(issued.type_.as_deref(), Some(tls::SECRET_TYPE));
    let first = tls::secret_sha256(&issued).unwrap();
    assert_eq!(served(&sig, &server_name).await.unwrap(), first, "the worker serves the session's certificate");
    let copy = secrets.get(&tls::pod_secret_name(&pod)).await.unwrap();
    assert_eq!(tls::secret_sha256(&copy).as_deref(), Some(first.as_str()));

    // Points trust the published bundle and reach the Service's name over WSS; media flows.
    let trust = session_trust(&client, &ns, "bao-mat").await;
    let tokens = secrets.get("bao-mat-join-tokens").await.unwrap();
    let url = format!("wss://{sig}/v1/ws");
    let sender =
        exchange_media(&url, Some(&trust), &secret_text(&tokens, "thi-xa-my-hao"), &secret_text(&tokens, "di-su"))
            .await;
    sender.abort();
    // A name the certificate does not cover is refused by a verifying client.
    let wrong = trust.clone().with_server_name(format!("other-signaling.{ns}.svc"));
    let addr = sig.parse().unwrap();
    assert!(served_certificate_sha256(addr, &format!("other-signaling.{ns}.svc"), Some(&wrong), None).await.is_err());
    // Plain HTTP signaling is refused on the admin port.
    let plain = reqwest::get(format!("http://{admin}/join?token=x")).await.unwrap();
    assert_eq!(plain.status().as_u16(), 421);

    // Into the last third of the certificate's life: the operator renews it, the kubelet (the
    // real node's, syncFrequency 2 s) updates the pod's volume, the worker reloads, and the condition follows.
    clock.set(now + SignedDuration::from_mins(125));
    let renewed = wait_for(Duration::from_secs(60), "a renewed certificate in the session's Secret", || async {
        let s = secrets.get(&tls::secret_name("bao-mat")).await.map_err(|e| e.to_string())?;
        match tls::secret_sha256(&s) {
            Some(sha) if sha != first => Ok(sha),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    wait_for(Duration::from_secs(60), "the worker serving the renewed certificate", || async {
        match served(&sig, &server_name).await? {
            sha if sha == renewed => Ok(()),
            sha => Err(sha),
        }
    })
    .await
    .unwrap();
    // Valid for the names at the simulated time it was issued for.
    let sim_now = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        (now + SignedDuration::from_mins(126)).as_second().try_into().unwrap(),
    ));
    assert_eq!(served_certificate_sha256(addr, &server_name, Some(&trust), Some(sim_now)).await.unwrap(), renewed);
    let s = wait_certificate(&sessions, "bao-mat", "True", "Serving").await;
    assert_eq!(s.status.unwrap().phase, Some(SessionPhase::Live));

    // After the session: no Secret carrying its label (tokens, certificate, the pod's copy).
    clock.set(start + SignedDuration::from_mins(60 + 16));
    wait_certificate(&sessions, "bao-mat", "False", "Released").await;
    wait_for(Duration::from_secs(30), "no Secret labelled for the session", || async {
        match session_secrets(&client, &ns, "bao-mat").await {
            left if left.is_empty() => Ok(()),
            left => Err(format!("{left:?}")),
        }
    })
    .await
    .unwrap();
}

/// Just enough of cert-manager's Certificate CRD for the API server to store the objects.
const CERTIFICATE_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: certificates.cert-manager.io}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {kind: Certificate, listKind: CertificateList, plural: certificates, singular: certificate}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
";

/// What cert-manager would write for the Certificate: a key and a certificate from `issuer`.
fn cert_manager_secret(
    issuer: &tiepdan_operator::pki::Ca,
    spec: &serde_json::Value,
) -> (Secret, tiepdan_operator::pki::ServingCert) {
    let names: Vec<String> = spec["dnsNames"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().into()).collect();
    let cert =
        tiepdan_operator::pki::issue_serving(issuer, &names, Timestamp::now(), SignedDuration::from_hours(72)).unwrap();
    let labels = serde_json::from_value(spec["secretTemplate"]["labels"].clone()).unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(spec["secretName"].as_str().unwrap().to_owned()),
            labels: Some(labels),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_owned(), ByteString(cert.cert_pem.clone().into_bytes())),
                ("tls.key".to_owned(), ByteString(cert.key_pem.clone().into_bytes())),
                ("ca.crt".to_owned(), ByteString(issuer.cert_pem.clone().into_bytes())),
            ]
            .into(),
        ),
        ..Default::default()
    };
    (secret, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_issuer_named_the_operator_asks_cert_manager_and_serves_what_it_issues() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let out = kubectl_apply_yaml(cp, "default", CERTIFICATE_CRD);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_crds_established(&client, &CERT_MANAGER_CRDS).await;
    let live = live_session(
        cp,
        &client,
        "cm",
        |c| c,
        |start, deadline| {
            small_live_topology("vnpt", "Phiên có chứng thư VNPT", start, deadline)
                + "  tls: {issuerRef: {name: vnpt-ca, kind: ClusterIssuer}}\n"
        },
    )
    .await;
    let (ns, clock, now, start) = (live.ns.clone(), live.clock.clone(), live.now, live.start);

    // The operator asks for a Certificate and waits for it.
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    wait_certificate(&sessions, "vnpt", "False", "Issuing").await;
    let certs = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<tls::Certificate>(&()),
    );
    let cert = certs.get("vnpt-tls").await.unwrap();
    let spec = cert.data["spec"].clone();
    assert_eq!(
        spec["issuerRef"],
        serde_json::json!({"name": "vnpt-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    assert_eq!(spec["secretName"], "vnpt-tls");
    assert!(spec["dnsNames"].as_array().unwrap().contains(&serde_json::json!(format!("vnpt-signaling.{ns}.svc"))));

    // cert-manager issues: the Secret, then Ready on the Certificate.
    let issuer = tiepdan_operator::pki::new_ca(
        now,
        tiepdan_operator::pki::CA_MAX_VALIDITY,
        &tiepdan_operator::pki::NamePolicy::new([]),
    )
    .unwrap();
    let (secret, leaf) = cert_manager_secret(&issuer, &spec);
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let ready = serde_json::json!({"status": {"notAfter": leaf.not_after.to_string(), "conditions": [{
        "type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired",
        "lastTransitionTime": now.to_string(), "observedGeneration": 1}]}});
    certs.patch_status("vnpt-tls", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    let s = wait_certificate(&sessions, "vnpt", "True", "Serving").await;
    let (sig, _, _) = worker(&client, &ns, &s).await;
    let server_name = format!("vnpt-signaling.{ns}.svc");
    let trust = ClientTls::from_pem(issuer.cert_pem.as_bytes(), Some(server_name.clone())).unwrap();
    let addr = sig.parse().unwrap();
    let first = tls::pem_sha256(&leaf.cert_pem).unwrap();
    assert_eq!(served_certificate_sha256(addr, &server_name, Some(&trust), None).await.unwrap(), first);

    // cert-manager renews: the new certificate reaches the worker.
    let (renewed, leaf2) = cert_manager_secret(&issuer, &spec);
    let mut current = secrets.get("vnpt-tls").await.unwrap();
    current.data = renewed.data;
    secrets.replace("vnpt-tls", &PostParams::default(), &current).await.unwrap();
    let second = tls::pem_sha256(&leaf2.cert_pem).unwrap();
    wait_for(Duration::from_secs(60), "the worker serving cert-manager's renewal", || async {
        match served(&sig, &server_name).await? {
            sha if sha == second => Ok(()),
            sha => Err(sha),
        }
    })
    .await
    .unwrap();

    // After the session the Certificate and every labelled Secret are gone.
    clock.set(start + SignedDuration::from_mins(60 + 16));
    wait_for(Duration::from_secs(30), "no Certificate and no Secret labelled for the session", || async {
        let certs_left = certs.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        let secrets_left = session_secrets(&client, &ns, "vnpt").await;
        if certs_left == 0 && secrets_left.is_empty() {
            Ok(())
        } else {
            Err(format!("{certs_left} Certificates, Secrets {secrets_left:?}"))
        }
    })
    .await
    .unwrap();
}
