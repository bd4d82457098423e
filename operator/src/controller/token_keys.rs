//! The pool's token keys: created once, read by the pool (which publishes the public keys for its
//! workers) and by sessions (which sign their links and admin calls). Kept apart so neither
//! controller depends on the other.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;

use super::Context;
use crate::api::MediaWorkerPool;
use crate::apply;
use crate::build::token_keys;
use crate::tokens::{self, SigningKeys};

/// Errors providing a pool's token keys.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read or create the token keys Secret {0}")]
    Secret(String, #[source] kube::Error),
    #[error("Secret {0} holds no valid token keys; delete it to have new ones made (every link of the pool's sessions changes)")]
    Invalid(String, #[source] tokens::Error),
    #[error("failed to build the public token keys")]
    Public(#[source] tokens::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error("failed to delete the old HS256 key Secret {0}")]
    DeleteLegacy(String, #[source] kube::Error),
}

/// Ensures the pool's private-key Secret exists, creating it once; returns the keys.
pub async fn ensure_signing_keys(ctx: &Context, pool: &MediaWorkerPool) -> Result<SigningKeys, Error> {
    let ns = pool.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let name = token_keys::private_name(&pool.name_any());
    let read = |s: &Secret| token_keys::read_private(s).map(|r| r.map_err(|e| Error::Invalid(name.clone(), e)));
    let existing = ctx.secrets.get(&ctx.caches, &api, &ns, &name).await.map_err(|e| Error::Secret(name.clone(), e))?;
    if let Some(keys) = existing.as_deref().and_then(read) {
        return keys;
    }
    let keys = SigningKeys::generate();
    let secret = token_keys::private_secret(pool, &keys).map_err(|e| Error::Invalid(name.clone(), e))?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(keys),
        // Another reconcile won the race: use its keys, never overwrite them.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let s = api.get(&name).await.map_err(|e| Error::Secret(name.clone(), e))?;
            // The winner's Secret lacks a key: as broken as one that does not parse.
            let missing = || tokens::TokenError::NotPrivateKey { path: format!("{name} (a key is missing)") };
            read(&s).unwrap_or_else(|| Err(Error::Invalid(name.clone(), missing().into())))
        }
        Err(e) => Err(Error::Secret(name.clone(), e)),
    }
}

/// Publishes the public keys of `keys` in the ConfigMap the pool's workers mount.
pub async fn apply_public_keys(ctx: &Context, pool: &MediaWorkerPool, keys: &SigningKeys) -> Result<(), Error> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    apply::apply(&api, &token_keys::public_config_map(pool, keys).map_err(Error::Public)?).await?;
    Ok(())
}

/// Whether `pod` mounts the HS256 key an older operator shared with every worker.
pub fn mounts_legacy_key(pod: &Pod, pool: &str) -> bool {
    let legacy = token_keys::legacy_name(pool);
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(legacy.as_str()))
}

/// Deletes the older operator's HS256 key once none of `pods` (the pool's live workers) mounts it
/// any more: until then a running worker built with it keeps its volume. Returns whether it was
/// there to delete.
pub async fn delete_legacy_key(ctx: &Context, pool: &MediaWorkerPool, pods: &[&Pod]) -> Result<bool, Error> {
    let name = token_keys::legacy_name(&pool.name_any());
    if pods.iter().any(|p| mounts_legacy_key(p, &pool.name_any())) {
        return Ok(false);
    }
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    // A read first: a migrated pool (every pool, soon) must cost no write per reconcile.
    if api.get_opt(&name).await.map_err(|e| Error::DeleteLegacy(name.clone(), e))?.is_none() {
        return Ok(false);
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(Error::DeleteLegacy(name, e)),
    }
}
