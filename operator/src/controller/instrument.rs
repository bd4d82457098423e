//! Every reconcile runs inside a `reconcile` span (exported over OTLP when enabled, its trace id
//! recorded in the span's `trace_id` field for the logs) and is counted in the metrics by kind,
//! result and error category. Failures are logged here, inside the span.

use std::future::Future;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::Resource;
use tracing::Instrument;

use super::Context;
use crate::{telemetry, write_gate};

/// A reconcile error with a bounded category, for the `category` metric label. Each controller
/// implements it for its own error, so this module depends on none of them.
pub trait ReconcileError: std::error::Error {
    fn category(&self) -> &'static str;
}

/// Runs `body`, the reconcile of `obj` (of `kind`), in a span, and counts it.
pub async fn reconcile<K, E>(
    kind: &'static str,
    obj: &K,
    ctx: &Context,
    body: impl Future<Output = Result<Action, E>>,
) -> Result<Action, E>
where
    K: Resource,
    E: ReconcileError + 'static,
{
    let meta = obj.meta();
    let span = tracing::info_span!(
        "reconcile",
        otel.name = %format_args!("reconcile {kind}"),
        kind,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        trace_id = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error.category = tracing::field::Empty,
    );
    if let Some(id) = telemetry::trace_id(&span) {
        span.record("trace_id", id);
    }
    let started = Instant::now();
    let result = body.instrument(span.clone()).await;
    // A write the gate refused (this replica stopped leading) is its own category, whichever
    // step made it; the gate logged the step-down once, so each such reconcile is only debug.
    let refused = result.as_ref().err().and_then(|e| write_gate::refusal(e));
    let category = result.as_ref().err().map(|e| refused.map_or_else(|| e.category(), write_gate::Error::category));
    ctx.metrics.reconciled(kind, started.elapsed(), category);
    span.in_scope(|| match &result {
        Ok(action) => tracing::debug!(?action, "reconciled"),
        Err(e) => {
            span.record("otel.status_code", "error");
            span.record("error.category", category);
            if refused.is_some() {
                tracing::debug!(error = %e, category, "reconcile failed: not leading");
            } else {
                tracing::warn!(error = %e, category, "reconcile failed");
            }
        }
    });
    result
}
