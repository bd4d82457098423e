//! The pool's join-token signing key: created once, read by the pool (which mounts it into its
//! workers) and by sessions (which sign their links with it). Kept apart so neither controller
//! depends on the other.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use super::Context;
use crate::api::MediaWorkerPool;
use crate::build::signing_key;
use crate::tokens::generate_signing_key;

/// Ensures the pool's signing-key Secret exists, creating it once; returns the key.
pub async fn ensure_signing_key(ctx: &Context, pool: &MediaWorkerPool) -> Result<Vec<u8>, kube::Error> {
    let ns = pool.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let name = signing_key::name(&pool.name_any());
    if let Some(s) = api.get_opt(&name).await? {
        if let Some(k) = s.data.as_ref().and_then(|d| d.get(signing_key::KEY)) {
            return Ok(signing_key::key_bytes(&k.0));
        }
    }
    let key = generate_signing_key();
    match api.create(&PostParams::default(), &signing_key::build(pool, &key)).await {
        Ok(_) => Ok(key.into_bytes()),
        // Another reconcile won the race: use its key, never overwrite it.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let s = api.get(&name).await?;
            Ok(s.data.and_then(|d| d.get(signing_key::KEY).map(|k| signing_key::key_bytes(&k.0))).unwrap_or_default())
        }
        Err(e) => Err(e),
    }
}
