//! The build step: validated spec in, Kubernetes objects out. Pure functions, no client; each
//! child object has one builder in a file named after it.

pub mod dashboard;
pub mod join_tokens;
pub mod labels;
pub mod network_policy;
pub mod pod_disruption_budget;
pub mod pod_monitor;
pub mod prometheus_rule;
pub mod signaling_service;
pub mod tls;
pub mod token_keys;
pub mod turn_secret;
pub mod worker_pod;
pub mod worker_ports;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

/// The metadata of an object `name` that belongs to `session`: in its namespace, owned by it,
/// and carrying its labels (for `component`) on top of `extra_labels`, so the garbage collector
/// and the operator's clean-up by label both find it.
pub fn session_child_meta(
    session: &crate::api::ReceptionSession,
    name: String,
    component: &str,
    extra_labels: &std::collections::BTreeMap<String, String>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    use kube::ResourceExt;
    let mut l = extra_labels.clone();
    l.extend(labels::for_session(&session.name_any(), component));
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name),
        namespace: session.namespace(),
        labels: Some(l),
        owner_references: Some(vec![owner_ref(session)]),
        ..Default::default()
    }
}

/// A controller owner reference to `owner`, so the garbage collector removes children with it.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}
