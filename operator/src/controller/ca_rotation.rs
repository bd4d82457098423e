//! Rotating the operator's CA on the controllers' clock: observe the stored CAs and the leaves
//! sessions hold, take the steps [`crate::pki::rotation::decide`] gives, and keep the signing CA
//! the certificate controller issues with. Only the leader runs it (the webhook of every replica
//! only reads the CAs).

use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;

use super::Context;
use crate::build::{labels, tls};
use crate::pki::rotation::{CaSet, Leaf};
use crate::webhook::registration;

/// Lists the leaves stored for sessions (own-CA Secrets) in the watched namespaces.
async fn leaves(ctx: &Context) -> Result<Vec<Leaf>, registration::Error> {
    let selector = format!("{}={}", labels::COMPONENT, labels::COMPONENT_TLS);
    let list = ctx
        .watched::<Secret>()
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(registration::Error::CaSecret)?;
    let secrets = list.items.into_iter().map(|m| Secret { metadata: m.metadata, ..Default::default() });
    Ok(secrets.filter_map(|s| tls::leaf_of(&s)).collect())
}

/// One pass at `now`: rotate as due and cache the result. Returns the CAs.
pub async fn reconcile(ctx: &Context, now: Timestamp) -> Result<CaSet, registration::Error> {
    let mut cached = ctx.ca.lock().await;
    let leaves = leaves(ctx).await?;
    let (ns, names, policy) = (&ctx.config.ca_namespace, &ctx.config.ca_names, &ctx.config.ca_rotation);
    let set = registration::rotate(&ctx.client, ns, now, names, policy, &leaves).await?;
    *cached = Some(set.clone());
    Ok(set)
}

/// The CAs, from the cache or (before the first pass) a pass now.
pub async fn current(ctx: &Context, now: Timestamp) -> Result<CaSet, registration::Error> {
    if let Some(set) = ctx.ca.lock().await.clone() {
        if now < set.signing.not_after {
            return Ok(set);
        }
    }
    reconcile(ctx, now).await
}

/// Re-checks every `ctx.config.ca_check_interval` (real time) and at once when the clock jumps,
/// until `stop` resolves.
pub async fn run(ctx: std::sync::Arc<Context>, stop: impl std::future::Future<Output = ()>) {
    let mut jumps = ctx.clock.jumps();
    let interval = ctx.config.ca_check_interval;
    let pass = async {
        loop {
            if let Err(e) = reconcile(&ctx, ctx.clock.now()).await {
                tracing::warn!(error = %e, "failed to rotate the operator's CA; retrying");
            }
            tokio::select! {
                _ = jumps.next() => {}
                () = tokio::time::sleep(interval.max(Duration::from_millis(100))) => {}
            }
        }
    };
    tokio::select! {
        () = pass => {}
        () = stop => {}
    }
}
