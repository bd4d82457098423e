//! The PodDisruptionBudget of a pool's allocated workers. A drain or any other eviction must not
//! take a worker out from under its session: `maxUnavailable: 0` over the pods labelled
//! `tiepdan.io/worker-state=allocated`, so the Eviction API refuses them (429) while idle warm
//! workers, which the pool simply replaces, stay evictable.
//!
//! `policy/v1beta1`: the API servers tiepdan runs on (1.20) serve PodDisruptionBudget only there
//! (`policy/v1` came with 1.21), and k8s-openapi's `v1_33` feature has only `policy/v1` types,
//! so the object is built as a [`DynamicObject`] from v1's spec type, whose fields used here
//! are the same in both versions.
//!
//! The disruption controller cannot count pods owned by a ReceptionSession (it finds no scale
//! for them) and then fails safe: 0 disruptions allowed, with a `NoControllers` warning event on
//! the budget. That is the intended outcome here.

use std::collections::BTreeMap;

use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::ResourceExt;

use super::{labels, owner_ref};
use crate::api::MediaWorkerPool;

/// The `app.kubernetes.io/component` of the budget.
pub const COMPONENT: &str = "disruption-budget";

/// PodDisruptionBudget in `policy/v1beta1`.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: "policy".to_owned(),
        version: "v1beta1".to_owned(),
        api_version: "policy/v1beta1".to_owned(),
        kind: "PodDisruptionBudget".to_owned(),
        plural: "poddisruptionbudgets".to_owned(),
    }
}

/// The name of `pool`'s budget.
pub fn name(pool: &str) -> String {
    format!("tiepdan-{pool}-allocated-workers")
}

/// The labels the budget selects: `pool`'s worker pods that are allocated to a session.
pub fn selector(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::POOL.to_owned(), pool.to_owned()),
        (labels::COMPONENT.to_owned(), labels::COMPONENT_WORKER.to_owned()),
        (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
        (labels::WORKER_STATE.to_owned(), labels::STATE_ALLOCATED.to_owned()),
    ])
}

/// The budget of `pool`, owned by it.
pub fn build(pool: &MediaWorkerPool) -> DynamicObject {
    let ar = api_resource();
    let spec = PodDisruptionBudgetSpec {
        max_unavailable: Some(IntOrString::Int(0)),
        selector: Some(LabelSelector { match_labels: Some(selector(&pool.name_any())), ..Default::default() }),
        ..Default::default()
    };
    DynamicObject {
        types: Some(TypeMeta { api_version: ar.api_version, kind: ar.kind }),
        metadata: ObjectMeta {
            name: Some(name(&pool.name_any())),
            namespace: pool.namespace(),
            labels: Some(labels::common(&pool.name_any(), COMPONENT)),
            owner_references: Some(vec![owner_ref(pool)]),
            ..Default::default()
        },
        data: serde_json::json!({ "spec": spec }),
    }
}

/// Whether `existing` (as read from the API server) lacks something `desired` sets: a spec field
/// with another value, a label, or the owner. Fields the API server adds are not differences,
/// so an unchanged budget is never re-applied.
pub fn differs(existing: &DynamicObject, desired: &DynamicObject) -> bool {
    let spec_differs = match (desired.data.get("spec"), existing.data.get("spec")) {
        (Some(serde_json::Value::Object(want)), Some(serde_json::Value::Object(have))) => {
            want.iter().any(|(k, v)| have.get(k) != Some(v))
                // A minAvailable someone else added would conflict with maxUnavailable (the
                // API server refuses both); other fields it may default are not ours.
                || (!want.contains_key("minAvailable") && have.contains_key("minAvailable"))
        }
        (want, have) => want != have,
    };
    let labels_differ = desired.labels().iter().any(|(k, v)| existing.labels().get(k) != Some(v));
    let owners = |o: &DynamicObject| o.metadata.owner_references.clone().unwrap_or_default();
    spec_differs || labels_differ || owners(existing) != owners(desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::tests::pool;

    #[test]
    fn the_budget_forbids_disrupting_the_pools_allocated_workers_only() {
        let pdb = build(&pool());
        assert_eq!(pdb.types.as_ref().unwrap().api_version, "policy/v1beta1");
        assert_eq!(pdb.metadata.name.as_deref(), Some("tiepdan-default-allocated-workers"));
        assert_eq!(pdb.metadata.owner_references.as_ref().unwrap()[0].uid, "pool-uid");
        let spec = &pdb.data["spec"];
        assert_eq!(spec["maxUnavailable"], 0);
        assert_eq!(spec.get("minAvailable"), None);
        let sel = &spec["selector"]["matchLabels"];
        assert_eq!(sel[labels::WORKER_STATE], labels::STATE_ALLOCATED);
        assert_eq!(sel[labels::POOL], "default");
        let idle = crate::build::worker_pod::pod_labels("default", None);
        let allocated = crate::build::worker_pod::pod_labels("default", Some("phien"));
        let matches = |l: &BTreeMap<String, String>| selector("default").iter().all(|(k, v)| l.get(k) == Some(v));
        assert!(matches(&allocated), "an allocated worker is protected");
        assert!(!matches(&idle), "an idle worker can be evicted");
        let other = crate::build::worker_pod::pod_labels("other", Some("phien"));
        assert!(!matches(&other), "another pool's worker is not this budget's");
    }

    #[test]
    fn a_budget_is_reapplied_only_when_it_differs() {
        let desired = build(&pool());
        // As read back: the API server adds metadata and status, and keeps our fields.
        let mut read = desired.clone();
        read.metadata.resource_version = Some("7".into());
        read.metadata.labels.as_mut().unwrap().insert("extra".into(), "x".into());
        read.data["status"] = serde_json::json!({"disruptionsAllowed": 0});
        assert!(!differs(&read, &desired));

        type Edit = fn(&mut DynamicObject);
        let edits: [(&str, Edit); 5] = [
            ("maxUnavailable", |o| o.data["spec"]["maxUnavailable"] = 1.into()),
            ("minAvailable added", |o| o.data["spec"]["minAvailable"] = 1.into()),
            ("selector", |o| o.data["spec"]["selector"]["matchLabels"][labels::WORKER_STATE] = "idle".into()),
            ("label", |o| {
                o.metadata.labels.as_mut().unwrap().remove(labels::MANAGED_BY);
            }),
            ("owner", |o| o.metadata.owner_references = None),
        ];
        for (what, edit) in edits {
            let mut o = read.clone();
            edit(&mut o);
            assert!(differs(&o, &desired), "{what}");
        }
    }
}
