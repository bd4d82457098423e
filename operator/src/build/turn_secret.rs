//! The shared secret of the chart's coturn (`static-auth-secret` with `use-auth-secret`): the
//! operator makes it once, at random, in its own namespace; coturn checks TURN credentials with it
//! and the workers of pools that name it (`spec.turn.secretName`) derive them with it. Never
//! replaced: a new secret would refuse every credential handed out before it.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use super::labels;
use crate::api::TURN_SECRET_KEY;

pub const COMPONENT_TURN: &str = "turn";

/// 32 random bytes as hex: coturn reads the secret as a string from its command line.
pub fn random_secret() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Secret `name` in `namespace` holding `secret` under [`TURN_SECRET_KEY`].
pub fn build(namespace: &str, name: &str, secret: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::common(name, COMPONENT_TURN)),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some([(TURN_SECRET_KEY.to_owned(), ByteString(secret.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_random_hex_under_the_key_pools_default_to() {
        let (a, b) = (random_secret(), random_secret());
        assert_ne!(a, b);
        assert!(a.len() == 64 && a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        let secret = build("tiepdan-system", "tiepdan-turn", &a);
        assert_eq!(secret.metadata.namespace.as_deref(), Some("tiepdan-system"));
        assert_eq!(secret.data.unwrap()["secret"].0, a.as_bytes());
        assert_eq!(secret.metadata.labels.unwrap()[labels::MANAGED_BY], labels::MANAGER);
    }
}
