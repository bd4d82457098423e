//! Makes the chart's coturn shared secret (`--turn-secret-name`) once, in the operator's own
//! namespace: a create that finds it there already is done. Only the leader runs it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use super::Context;
use crate::build::turn_secret;

/// Creates the Secret unless it exists. Returns whether it was created.
pub async fn ensure(client: &kube::Client, namespace: &str, name: &str) -> Result<bool, kube::Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let secret = turn_secret::build(namespace, name, &turn_secret::random_secret());
    // Create only: the operator may read no Secret of its namespace but its CA's, and an existing
    // secret must never be replaced (coturn and the workers already use it).
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Ensures the Secret, retrying with backoff until it is there or `stop` resolves.
pub async fn run(ctx: std::sync::Arc<Context>, stop: impl std::future::Future<Output = ()>) {
    let Some(name) = ctx.config.turn_secret.clone() else { return };
    let namespace = ctx.config.ca_namespace.clone();
    let pass = async {
        let mut backoff = Duration::from_secs(1);
        loop {
            match ensure(&ctx.client, &namespace, &name).await {
                Ok(created) => {
                    tracing::info!(namespace = %namespace, name = %name, created, "TURN shared secret in place");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, name = %name, "failed to create the TURN shared secret; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    };
    tokio::select! {
        () = pass => {}
        () = stop => {}
    }
}
