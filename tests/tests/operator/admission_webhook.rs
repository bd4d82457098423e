//! The admission webhook, served over TLS with a certificate from the operator's own CA and
//! registered with that CA injected, against the real API server: every rule the schema cannot
//! express is refused with a message naming the field, and points get their level label; with an
//! owner ClusterRole (as the chart runs it) the configurations are deleted with that ClusterRole.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::api::ReceptionPoint;
use tiepdan_operator::clock::SimClock;
use tiepdan_operator::pki;
use tiepdan_operator::webhook::registration::{self, Endpoint, Registration};
use tiepdan_operator::webhook::runner::{self, WebhookOptions};

use crate::common::{cluster, kubectl_apply_yaml};

const POINTS: &str = r#"
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionPoint
metadata: {name: tinh}
spec: {displayName: "Tỉnh", level: Province}
---
apiVersion: tiepdan.io/v1alpha1
kind: ReceptionPoint
metadata: {name: thi-xa, labels: {tiepdan.io/town: my-hao}}
spec: {displayName: "Thị xã", level: Town, parent: tinh}
"#;

fn session(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionSession\nmetadata: {{name: {name}}}\nspec:\n  title: T\n  host: thi-xa\n{extra}"
    )
}

fn refused(cp: &tiepdan_harness::ControlPlane, ns: &str, yaml: &str, field: &str) -> String {
    let out = kubectl_apply_yaml(cp, ns, yaml);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected a refusal naming {field}:\n{yaml}");
    assert!(err.contains("validate.tiepdan.io") && err.contains(field), "refusal should name {field}: {err}");
    err
}

fn accepted(cp: &tiepdan_harness::ControlPlane, ns: &str, yaml: &str) {
    let out = kubectl_apply_yaml(cp, ns, yaml);
    assert!(out.status.success(), "expected acceptance: {}\n{yaml}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_what_the_schema_cannot_and_labels_points() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("webhook");
    create_namespace(&client, &ns).await.unwrap();
    // Scope this test's webhook to its own namespace: other tests share the API server.
    let label = serde_json::json!({"metadata": {"labels": {"tiepdan.io/webhook-test": ns}}});
    Api::<Namespace>::all(client.clone()).patch(&ns, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();

    let now: Timestamp = "2027-03-01T00:00:00Z".parse().unwrap();
    let loopback = pki::NamePolicy::new(["127.0.0.1".parse().unwrap()]);
    let cas = registration::ensure_ca(&client, &ns, Timestamp::now(), &loopback, &Default::default()).await.unwrap();
    let ca = cas.signing.clone();
    // The API server checks the serving certificate against the injected bundle on the real clock.
    let cert =
        pki::issue_serving(&ca, &["127.0.0.1".to_owned()], Timestamp::now(), SignedDuration::from_hours(1)).unwrap();
    let server = tiepdan_operator::webhook::serve("127.0.0.1:0".parse().unwrap(), &cert, Arc::new(SimClock::new(now)))
        .await
        .unwrap();
    let reg = Registration {
        name: ns.clone(),
        endpoint: Endpoint::Url(format!("https://127.0.0.1:{}", server.local_addr.port())),
        namespace_selector: Some(LabelSelector {
            match_labels: Some([("tiepdan.io/webhook-test".to_owned(), ns.clone())].into()),
            ..Default::default()
        }),
        owner: None,
    };
    registration::register(&client, &reg, &cas.bundle_pem()).await.unwrap();

    // The mutating webhook is live once a new point gets its level label.
    let points = Api::<ReceptionPoint>::namespaced(client.clone(), &ns);
    wait_for(Duration::from_secs(30), "points labelled by the mutating webhook", || async {
        let out = kubectl_apply_yaml(cp, &ns, POINTS);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let p = points.get("thi-xa").await.map_err(|e| e.to_string())?;
        match p.metadata.labels.unwrap_or_default().get("tiepdan.io/level").map(String::as_str) {
            Some("town") => Ok(()),
            other => {
                // Re-create so the (possibly not yet registered) webhook sees a CREATE.
                let _ = points.delete("thi-xa", &DeleteParams::default()).await;
                Err(format!("level label {other:?}"))
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(points.get("thi-xa").await.unwrap().metadata.labels.unwrap()["tiepdan.io/town"], "my-hao");

    let sched = |start: &str| format!("  points: [tinh]\n  schedule: {{start: \"{start}\", durationMinutes: 60}}\n");
    refused(cp, &ns, &session("qua-khu", &sched("2027-02-01T08:00:00+07:00")), "spec.schedule.start");
    refused(
        cp,
        &ns,
        &session(
            "han-sau",
            &format!("{}  readiness: {{deadline: \"2027-03-16T00:00:00Z\"}}\n", sched("2027-03-15T08:00:00+07:00")),
        ),
        "spec.readiness.deadline",
    );
    refused(
        cp,
        &ns,
        &session("khong-diem", "  schedule: {start: \"2027-03-15T08:00:00+07:00\", durationMinutes: 60}\n"),
        "spec.points",
    );
    refused(
        cp,
        &ns,
        "apiVersion: tiepdan.io/v1alpha1\nkind: MediaWorkerPool\nmetadata: {name: p}\nspec: {rtcPorts: {min: 50000, max: 40000}}\n",
        "spec.rtcPorts",
    );
    // A hostNetwork worker's RTC sub-range must fit the pool's range.
    refused(
        cp,
        &ns,
        "apiVersion: tiepdan.io/v1alpha1\nkind: MediaWorkerPool\nmetadata: {name: p}\nspec: {hostNetwork: true, \
         rtcPorts: {min: 40000, max: 40049, perWorker: 100}}\n",
        "spec.rtcPorts.perWorker",
    );
    refused(
        cp,
        &ns,
        "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionPoint\nmetadata: {name: xa}\nspec: {displayName: \"Xã\", level: Commune}\n",
        "spec.parent",
    );

    // Schedule changes are refused once the session is Live; other changes are not.
    accepted(cp, &ns, &session("dang-hop", &sched("2027-03-15T08:00:00+07:00")));
    let live = serde_json::json!({"status": {"phase": "Live"}});
    Api::<tiepdan_operator::api::ReceptionSession>::namespaced(client.clone(), &ns)
        .patch_status("dang-hop", &PatchParams::default(), &Patch::Merge(&live))
        .await
        .unwrap();
    refused(cp, &ns, &session("dang-hop", &sched("2027-03-15T09:00:00+07:00")), "spec.schedule");
    let more_points =
        "  points: [tinh, thi-xa]\n  schedule: {start: \"2027-03-15T08:00:00+07:00\", durationMinutes: 60}\n";
    accepted(cp, &ns, &session("dang-hop", more_points));

    server.shutdown();
    let _ = Api::<ValidatingWebhookConfiguration>::all(client.clone()).delete(&ns, &DeleteParams::default()).await;
    let _ = Api::<MutatingWebhookConfiguration>::all(client).delete(&ns, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configurations_belong_to_the_owner_cluster_role_and_go_with_it() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("webhook-owner");
    create_namespace(&client, &ns).await.unwrap();
    let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let roles = Api::<ClusterRole>::all(client.clone());
    let options = |owner: &str| WebhookOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        namespace: ns.clone(),
        name: ns.clone(),
        // Never called: the selector matches no namespace, so the other tests sharing this API
        // server never reach this webhook.
        endpoint: Endpoint::Url("https://127.0.0.1:9".to_owned()),
        namespace_selector: Some(LabelSelector {
            match_labels: Some([("tiepdan.io/webhook-owner-test".to_owned(), ns.clone())].into()),
            ..Default::default()
        }),
        ca_names: pki::NamePolicy::new(["127.0.0.1".parse().unwrap()]),
        ca_rotation: Default::default(),
        owner_cluster_role: Some(owner.to_owned()),
        replaces: Some(format!("{ns}-old")),
    };

    // A missing owner stops the start, naming the flag and the ClusterRole, before registering.
    let missing = unique_name("no-such-role");
    let err = match runner::start(client.clone(), options(&missing)).await {
        Ok(_) => panic!("the webhook started without its owner ClusterRole {missing}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--webhook-owner-cluster-role") && err.contains(&missing), "{err}");
    assert!(validating.get_opt(&ns).await.unwrap().is_none() && mutating.get_opt(&ns).await.unwrap().is_none());

    // With it (as the chart runs the operator, owned by its ClusterRole), both carry a reference.
    let role_name = unique_name("webhook-owner");
    let role = ClusterRole {
        metadata: ObjectMeta { name: Some(role_name.clone()), ..Default::default() },
        ..Default::default()
    };
    let uid = roles.create(&PostParams::default(), &role).await.unwrap().metadata.uid.unwrap();
    let owner = OwnerReference {
        api_version: "rbac.authorization.k8s.io/v1".to_owned(),
        kind: "ClusterRole".to_owned(),
        name: role_name.clone(),
        uid,
        ..Default::default()
    };
    // What an older version left under the name every release shared: the validating one owned
    // by this ClusterRole (this release's), the mutating one by nothing of this release.
    let old = format!("{ns}-old");
    let meta = |owners| ObjectMeta { name: Some(old.clone()), owner_references: owners, ..Default::default() };
    validating
        .create(
            &PostParams::default(),
            &ValidatingWebhookConfiguration { metadata: meta(Some(vec![owner.clone()])), webhooks: None },
        )
        .await
        .unwrap();
    mutating
        .create(&PostParams::default(), &MutatingWebhookConfiguration { metadata: meta(None), webhooks: None })
        .await
        .unwrap();
    let server = runner::start(client.clone(), options(&role_name)).await.unwrap();
    // The release's old configuration is gone once the new ones are registered; another's stays.
    assert!(validating.get_opt(&old).await.unwrap().is_none(), "the old configuration this release owns is left");
    assert!(mutating.get_opt(&old).await.unwrap().is_some(), "a configuration another owner holds was deleted");
    mutating.delete(&old, &DeleteParams::default()).await.unwrap();
    assert_eq!(validating.get(&ns).await.unwrap().metadata.owner_references, Some(vec![owner.clone()]));
    assert_eq!(mutating.get(&ns).await.unwrap().metadata.owner_references, Some(vec![owner]));

    // Deleting the ClusterRole (what `helm uninstall` does) lets the controller-manager's garbage
    // collector delete both.
    roles.delete(&role_name, &DeleteParams::default()).await.unwrap();
    wait_for(Duration::from_secs(30), "both configurations deleted with their owner", || async {
        let v = validating.get_opt(&ns).await.map_err(|e| e.to_string())?.is_some();
        let m = mutating.get_opt(&ns).await.map_err(|e| e.to_string())?.is_some();
        if v || m {
            Err(format!("validating left: {v}, mutating left: {m}"))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    server.shutdown();
}
