//! A pool's token keys: an operator-only Secret with the two Ed25519 private keys (join and
//! admin), and a ConfigMap with their public keys that every worker of the pool mounts. No worker
//! ever mounts a private key, so a compromised worker can forge no token.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::{labels, owner_ref};
use crate::api::MediaWorkerPool;
use crate::tokens::{self, KeyUse, SigningKeys};

/// Data keys of the private keys in the Secret.
pub const JOIN_PRIVATE: &str = "join.pem";
pub const ADMIN_PRIVATE: &str = "admin.pem";
/// Data keys of the public keys in the ConfigMap (file names in the worker's mount).
pub const JOIN_PUBLIC: &str = "join.pub.pem";
pub const ADMIN_PUBLIC: &str = "admin.pub.pem";

/// The operator-only Secret with the pool's private keys.
pub fn private_name(pool: &str) -> String {
    format!("tiepdan-{pool}-token-signing-keys")
}

/// The ConfigMap with the pool's public keys, mounted by its workers.
pub fn public_name(pool: &str) -> String {
    format!("tiepdan-{pool}-token-public-keys")
}

/// The Secret holding the one HS256 key an older operator signed everything with, and mounted
/// into every worker. Deleted once no pod of the pool mounts it.
pub fn legacy_name(pool: &str) -> String {
    format!("tiepdan-{pool}-signing-key")
}

fn meta(pool: &MediaWorkerPool, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: pool.namespace(),
        labels: Some(labels::common(&pool.name_any(), labels::COMPONENT_TOKEN_KEYS)),
        owner_references: Some(vec![owner_ref(pool)]),
        ..Default::default()
    }
}

/// The pool's private-key Secret. Created once, never re-applied, so the keys do not rotate under
/// running sessions.
pub fn private_secret(pool: &MediaWorkerPool, keys: &SigningKeys) -> Result<Secret, tokens::Error> {
    let data = [
        (JOIN_PRIVATE.to_owned(), ByteString(keys.private_pem(KeyUse::Join)?.into_bytes())),
        (ADMIN_PRIVATE.to_owned(), ByteString(keys.private_pem(KeyUse::Admin)?.into_bytes())),
    ];
    Ok(Secret {
        metadata: meta(pool, private_name(&pool.name_any())),
        type_: Some("Opaque".to_owned()),
        data: Some(data.into()),
        ..Default::default()
    })
}

/// The keys in a private-key Secret; `None` when it lacks one (then it is not ours to fix).
pub fn read_private(secret: &Secret) -> Option<Result<SigningKeys, tokens::Error>> {
    let data = secret.data.as_ref()?;
    let (join, admin) = (data.get(JOIN_PRIVATE)?, data.get(ADMIN_PRIVATE)?);
    Some(
        SigningKeys::from_pem(&String::from_utf8_lossy(&join.0), &String::from_utf8_lossy(&admin.0))
            .map_err(tokens::Error::from),
    )
}

/// The pool's public-key ConfigMap, derived from its private keys every reconcile, so a deleted
/// or edited one is put back.
pub fn public_config_map(pool: &MediaWorkerPool, keys: &SigningKeys) -> Result<ConfigMap, tokens::Error> {
    let data = [
        (JOIN_PUBLIC.to_owned(), keys.public_pem(KeyUse::Join)?),
        (ADMIN_PUBLIC.to_owned(), keys.public_pem(KeyUse::Admin)?),
    ];
    Ok(ConfigMap { metadata: meta(pool, public_name(&pool.name_any())), data: Some(data.into()), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::tests::pool;

    #[test]
    fn the_secret_holds_the_private_keys_and_the_config_map_only_public_ones() {
        let keys = SigningKeys::generate();
        let secret = private_secret(&pool(), &keys).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("tiepdan-default-token-signing-keys"));
        let read = read_private(&secret).expect("both keys").expect("valid");
        assert_eq!(read.public_pem(KeyUse::Admin).unwrap(), keys.public_pem(KeyUse::Admin).unwrap());
        let cm = public_config_map(&pool(), &keys).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("tiepdan-default-token-public-keys"));
        let data = cm.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), [ADMIN_PUBLIC, JOIN_PUBLIC]);
        assert!(data.values().all(|pem| pem.starts_with("-----BEGIN PUBLIC KEY-----")), "{data:?}");
        assert!(!data.values().any(|pem| pem.contains("PRIVATE")));
    }
}
