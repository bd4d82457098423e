//! The per-pool Secret holding the HS256 key that signs join tokens and that workers verify with.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::{labels, owner_ref};
use crate::api::MediaWorkerPool;

/// The data key of the signing key in its Secret.
pub const KEY: &str = "signing.key";

/// The name of a pool's signing-key Secret.
pub fn name(pool: &str) -> String {
    format!("tiepdan-{pool}-signing-key")
}

/// The key as both sides use it: the Secret's bytes with surrounding ASCII whitespace trimmed,
/// exactly as the worker reads its mounted key file. A key written with `kubectl create secret
/// --from-file` often ends in a newline; signing with it untrimmed broke every token.
pub fn key_bytes(raw: &[u8]) -> Vec<u8> {
    raw.trim_ascii().to_vec()
}

/// The pool's signing-key Secret holding `key_hex`. Created once, never re-applied, so the key
/// does not rotate under running sessions.
pub fn build(pool: &MediaWorkerPool, key_hex: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name(&pool.name_any())),
            namespace: pool.namespace(),
            labels: Some(labels::common(&pool.name_any(), labels::COMPONENT_SIGNING_KEY)),
            owner_references: Some(vec![owner_ref(pool)]),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some([(KEY.to_owned(), ByteString(key_hex.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_trimmed_like_the_worker_trims_it() {
        assert_eq!(key_bytes(b"0123abcd\n"), b"0123abcd");
        assert_eq!(key_bytes(b" \t0123abcd\r\n"), b"0123abcd");
        assert_eq!(key_bytes(b"0123abcd"), b"0123abcd");
    }
}
