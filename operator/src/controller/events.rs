//! Events for transitions a human cares about. Failing to publish an event never fails a
//! reconcile: it is logged and the reconcile goes on.

use kube::runtime::events::{Event, EventType};
use kube::Resource;

use super::Context;

/// Publishes a Normal event about `obj`.
pub async fn normal<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, reason: &str, action: &str, note: String) {
    publish(ctx, obj, EventType::Normal, reason, action, note).await;
}

/// Publishes a Warning event about `obj`.
pub async fn warning<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, reason: &str, action: &str, note: String) {
    publish(ctx, obj, EventType::Warning, reason, action, note).await;
}

async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event { type_, reason: reason.to_owned(), note: Some(note), action: action.to_owned(), secondary: None };
    match ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        Ok(()) => {}
        // Not leading: the write gate logged that once.
        Err(e) if crate::write_gate::refusal(&e).is_some() => {
            tracing::debug!(error = %e, reason, "event not published")
        }
        Err(e) => tracing::warn!(error = %e, reason, "failed to publish event"),
    }
}
