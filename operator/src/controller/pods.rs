//! Facts about pods that the pool, allocation and session controllers all read. Kept apart so
//! those controllers depend on it rather than on each other.

use k8s_openapi::api::core::v1::Pod;

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
