//! Problems the schema cannot see set `Valid=False` with a reason, a message naming the field and
//! a Warning event; the operator keeps running and recovers when the problem is fixed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane};
use tiepdan_operator::api::{ReceptionPoint, ReceptionSession, SessionPhase};
use tiepdan_operator::clock::SimClock;

use crate::common::{cluster, kubectl_apply_yaml, kubectl_ok, start_operator};

fn apply_yaml(cp: &ControlPlane, ns: &str, yaml: &str) {
    let out = kubectl_apply_yaml(cp, ns, yaml);
    assert!(out.status.success(), "kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

async fn valid_condition<K>(api: &Api<K>, name: &str, want: &str) -> (String, String)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    wait_for(Duration::from_secs(30), format!("{name} Valid={want}"), || {
        let api = api.clone();
        async move {
            let v = serde_json::to_value(api.get(name).await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            let conds = v["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let c = conds.iter().find(|c| c["type"] == "Valid").ok_or("no Valid condition")?;
            if c["status"] == want {
                Ok((
                    c["reason"].as_str().unwrap_or_default().to_owned(),
                    c["message"].as_str().unwrap_or_default().to_owned(),
                ))
            } else {
                Err(format!("{c}"))
            }
        }
    })
    .await
    .unwrap()
}

async fn warning_event(client: &kube::Client, ns: &str, object: &str, reason: &str) {
    let events = Api::<Event>::namespaced(client.clone(), ns);
    wait_for(Duration::from_secs(20), format!("Warning {reason} on {object}"), || {
        let events = events.clone();
        async move {
            let found =
                events.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.into_iter().any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
                });
            if found {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn semantic_problems_set_valid_false_emit_warnings_and_recover() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("semantic");
    create_namespace(&client, &ns).await.unwrap();
    let _op = start_operator(client.clone(), &ns, Arc::new(SimClock::new("2027-01-01T00:00:00Z".parse().unwrap())));
    kubectl_ok(cp, &["apply", "-n", &ns, "-f", "examples/my-hao/"]);
    let points = Api::<ReceptionPoint>::namespaced(client.clone(), &ns);
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    valid_condition(&points, "di-su", "True").await;

    // A commune without a parent.
    apply_yaml(cp, &ns, "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionPoint\nmetadata: {name: lac-loi}\nspec: {displayName: \"Xã Lạc Lối\", level: Commune}\n");
    let (reason, message) = valid_condition(&points, "lac-loi", "False").await;
    assert_eq!(reason, "MissingParent");
    assert!(message.contains("spec.parent"), "{message}");
    warning_event(&client, &ns, "lac-loi", "MissingParent").await;

    // An unknown parent, and a cycle.
    apply_yaml(cp, &ns, "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionPoint\nmetadata: {name: mo-coi}\nspec: {displayName: \"Xã Mồ Côi\", level: Commune, parent: khong-co}\n");
    assert_eq!(valid_condition(&points, "mo-coi", "False").await.0, "UnknownParent");
    apply_yaml(cp, &ns, "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionPoint\nmetadata: {name: vong-a}\nspec: {displayName: A, level: Town, parent: vong-b}\n---\napiVersion: tiepdan.io/v1alpha1\nkind: ReceptionPoint\nmetadata: {name: vong-b}\nspec: {displayName: B, level: Town, parent: vong-a}\n");
    assert_eq!(valid_condition(&points, "vong-a", "False").await.0, "ParentCycle");

    // A session whose only point is missing fails validation (a missing point among others is
    // only left out: see real_node_session/lifecycle.rs), and recovers when the point appears.
    apply_yaml(cp, &ns, "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionSession\nmetadata: {name: thieu-diem}\nspec:\n  title: Thiếu điểm\n  host: thi-xa-my-hao\n  points: [xa-ma]\n  schedule: {start: \"2027-03-15T08:00:00+07:00\", durationMinutes: 60}\n");
    let (reason, message) = valid_condition(&sessions, "thieu-diem", "False").await;
    assert_eq!(reason, "NoPointsLeft");
    assert!(message.contains("spec.points") && message.contains("xa-ma"), "{message}");
    let phase = sessions.get("thieu-diem").await.unwrap().status.unwrap().phase;
    assert_eq!(phase, Some(SessionPhase::Failed));
    warning_event(&client, &ns, "thieu-diem", "NoPointsLeft").await;

    apply_yaml(cp, &ns, "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionPoint\nmetadata: {name: xa-ma}\nspec: {displayName: \"Xã Ma\", level: Commune, parent: thi-xa-my-hao}\n");
    valid_condition(&sessions, "thieu-diem", "True").await;
    // The example session was never disturbed.
    valid_condition(&sessions, "tiep-dan-dinh-ky-thang-3", "True").await;
}
