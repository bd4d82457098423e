//! The webhook configurations, with the operator's CA injected as `caBundle`, and the CA itself,
//! kept in a Secret so that restarts and replicas share it.
//!
//! The operator creates the configurations, so nothing in a Helm release would delete them, and
//! they fail closed. Given an owner (the chart's ClusterRole, see [`cluster_role_owner`]), both
//! carry an owner reference to it and the garbage collector deletes them when `helm uninstall`
//! deletes the ClusterRole.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::Resource;

use crate::apply;
use crate::build::labels;
use crate::pki::{self, Ca, NamePolicy};

/// The Secret holding the operator's CA.
pub const CA_SECRET: &str = "tiepdan-ca";
/// The ConfigMap publishing the CA certificate (the trust bundle) for clients.
pub const TRUST_BUNDLE: &str = "tiepdan-trust-bundle";

/// Errors registering the webhooks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read or store the CA")]
    CaSecret(#[source] kube::Error),
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
}

/// Where the API server reaches the webhook.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// In cluster: a Service in front of the operator.
    Service { namespace: String, name: String, port: i32 },
    /// Out of cluster (tests, local runs): a base URL such as `https://127.0.0.1:8443`.
    Url(String),
}

impl Endpoint {
    /// The host of a URL endpoint (what its serving certificate names, so the CA must permit it).
    pub fn url_host(&self) -> Option<&str> {
        match self {
            Endpoint::Service { .. } => None,
            Endpoint::Url(url) => {
                let rest = url.split("://").nth(1).unwrap_or(url);
                let host = match rest.strip_prefix('[') {
                    Some(v6) => v6.split(']').next(),
                    None => rest.split(['/', ':']).next(),
                };
                host.filter(|h| !h.is_empty())
            }
        }
    }
}

/// Options for the configurations.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The configurations' name (one per installation).
    pub name: String,
    pub endpoint: Endpoint,
    /// Only namespaces matching this selector are checked (all when `None`).
    pub namespace_selector: Option<LabelSelector>,
    /// The object both configurations belong to (see [`cluster_role_owner`]): the garbage
    /// collector deletes them when it goes. `None`: nothing owns them (runs outside a chart).
    pub owner: Option<OwnerReference>,
}

/// An owner reference to `role` (which must come from the API server: it needs the uid).
/// Neither `controller` nor `blockOwnerDeletion`: the garbage collector deletes dependents without
/// them, and `blockOwnerDeletion` would need `update` on `clusterroles/finalizers` where the
/// OwnerReferencesPermissionEnforcement admission plugin is on.
pub fn cluster_role_owner(role: &ClusterRole) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: ClusterRole::api_version(&()).into_owned(),
        kind: ClusterRole::kind(&()).into_owned(),
        name: role.metadata.name.clone()?,
        uid: role.metadata.uid.clone()?,
        controller: None,
        block_owner_deletion: None,
    })
}

fn client_config(endpoint: &Endpoint, path: &str, ca_pem: &str) -> WebhookClientConfig {
    let ca_bundle = Some(ByteString(ca_pem.as_bytes().to_vec()));
    match endpoint {
        Endpoint::Service { namespace, name, port } => WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(path.to_owned()),
                port: Some(*port),
            }),
            ca_bundle,
            url: None,
        },
        Endpoint::Url(base) => WebhookClientConfig { url: Some(format!("{base}{path}")), ca_bundle, service: None },
    }
}

fn rules(resources: &[&str]) -> Vec<RuleWithOperations> {
    vec![RuleWithOperations {
        api_groups: Some(vec![crate::api::GROUP.to_owned()]),
        api_versions: Some(vec!["v1alpha1".to_owned()]),
        operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        scope: Some("Namespaced".to_owned()),
    }]
}

fn meta(reg: &Registration) -> ObjectMeta {
    ObjectMeta {
        name: Some(reg.name.clone()),
        labels: Some(labels::common(&reg.name, "admission-webhook")),
        owner_references: reg.owner.clone().map(|o| vec![o]),
        ..Default::default()
    }
}

/// The validating configuration: sessions, points and pools.
pub fn validating(reg: &Registration, ca_pem: &str) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: meta(reg),
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.tiepdan.io".to_owned(),
            client_config: client_config(&reg.endpoint, "/validate", ca_pem),
            rules: Some(rules(&["receptionsessions", "receptionpoints", "mediaworkerpools"])),
            admission_review_versions: vec!["v1".to_owned()],
            side_effects: "None".to_owned(),
            failure_policy: Some("Fail".to_owned()),
            namespace_selector: reg.namespace_selector.clone(),
            timeout_seconds: Some(5),
            ..Default::default()
        }]),
    }
}

/// The mutating configuration: defaults for points.
pub fn mutating(reg: &Registration, ca_pem: &str) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: meta(reg),
        webhooks: Some(vec![MutatingWebhook {
            name: "default.tiepdan.io".to_owned(),
            client_config: client_config(&reg.endpoint, "/mutate", ca_pem),
            rules: Some(rules(&["receptionpoints"])),
            admission_review_versions: vec!["v1".to_owned()],
            side_effects: "None".to_owned(),
            failure_policy: Some("Fail".to_owned()),
            namespace_selector: reg.namespace_selector.clone(),
            reinvocation_policy: Some("IfNeeded".to_owned()),
            timeout_seconds: Some(5),
            ..Default::default()
        }]),
    }
}

/// The CA Secret's contents for `ca`.
fn ca_secret(ca: &Ca) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.to_owned()),
            labels: Some(labels::common(CA_SECRET, "ca")),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(ca.cert_pem.clone().into_bytes())),
            ("tls.key".to_owned(), ByteString(ca.key_pem.clone().into_bytes())),
        ])),
        ..Default::default()
    }
}

/// Whether a stored CA can keep signing at `now` under `names`: constrained to exactly them and
/// not expired. An unconstrained CA (made before constraints existed) is replaced.
pub fn ca_fits(ca: &Ca, names: &NamePolicy, now: Timestamp) -> bool {
    ca.names.as_ref() == Some(names) && now < ca.not_after
}

/// Loads the CA from its Secret in `namespace`, creating it if absent (or replacing one that is
/// expired or constrained to other names), and publishes the trust bundle ConfigMap beside it.
pub async fn ensure_ca(
    client: &kube::Client,
    namespace: &str,
    now: Timestamp,
    names: &NamePolicy,
) -> Result<Ca, Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let read = |s: Secret| -> Option<Ca> {
        let d = s.data?;
        let text = |k: &str| d.get(k).map(|b| String::from_utf8_lossy(&b.0).into_owned());
        Ca::from_pem(text("tls.crt")?, text("tls.key")?).ok()
    };
    let stored = secrets.get_opt(CA_SECRET).await.map_err(Error::CaSecret)?;
    let exists = stored.is_some();
    let ca = match stored.and_then(read) {
        Some(ca) if ca_fits(&ca, names, now) => ca,
        old => {
            let ca = pki::new_ca(now, pki::CA_MAX_VALIDITY, names)?;
            if exists {
                tracing::warn!(
                    stored = ?old.map(|c| (c.not_after, c.names.map(|n| n.to_string()))),
                    names = %names,
                    "replacing the operator's CA: expired, unreadable or constrained to other names"
                );
                apply::apply(&secrets, &ca_secret(&ca)).await?;
                ca
            } else {
                match secrets.create(&PostParams::default(), &ca_secret(&ca)).await {
                    Ok(_) => ca,
                    // Another replica created it first: use theirs.
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        secrets.get(CA_SECRET).await.map_err(Error::CaSecret).map(|s| read(s).unwrap_or(ca))?
                    }
                    Err(e) => return Err(Error::CaSecret(e)),
                }
            }
        }
    };
    let bundle = ConfigMap {
        metadata: ObjectMeta {
            name: Some(TRUST_BUNDLE.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::common(TRUST_BUNDLE, "trust-bundle")),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("ca.crt".to_owned(), ca.cert_pem.clone())])),
        ..Default::default()
    };
    apply::apply(&Api::<ConfigMap>::namespaced(client.clone(), namespace), &bundle).await?;
    Ok(ca)
}

/// Applies both configurations with the CA bundle.
pub async fn register(client: &kube::Client, reg: &Registration, ca: &Ca) -> Result<(), Error> {
    apply::apply(&Api::<ValidatingWebhookConfiguration>::all(client.clone()), &validating(reg, &ca.cert_pem)).await?;
    apply::apply(&Api::<MutatingWebhookConfiguration>::all(client.clone()), &mutating(reg, &ca.cert_pem)).await?;
    Ok(())
}

/// How long webhook serving certificates last; renewed in their last third.
pub const SERVING_VALIDITY: SignedDuration = SignedDuration::from_hours(24 * 30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_carry_the_ca_bundle_and_fail_closed() {
        let reg = Registration {
            name: "tiepdan".into(),
            endpoint: Endpoint::Service {
                namespace: "tiepdan-system".into(),
                name: "tiepdan-operator".into(),
                port: 8443,
            },
            namespace_selector: None,
            owner: None,
        };
        let v = validating(&reg, "PEM");
        let w = &v.webhooks.unwrap()[0];
        assert_eq!(w.client_config.ca_bundle.as_ref().unwrap().0, b"PEM");
        assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(w.client_config.service.as_ref().unwrap().path.as_deref(), Some("/validate"));
        let m = mutating(&reg, "PEM");
        assert_eq!(
            m.webhooks.unwrap()[0].rules.as_ref().unwrap()[0].resources.as_ref().unwrap(),
            &vec!["receptionpoints".to_owned()]
        );
    }

    #[test]
    fn both_configurations_belong_to_the_owner_when_there_is_one() {
        let role = ClusterRole {
            metadata: ObjectMeta {
                name: Some("tiepdan-operator".into()),
                uid: Some("0b0e6a5c-1111-4c3e-9d2a-000000000001".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let owner = cluster_role_owner(&role).expect("a fetched role has a uid");
        let mut reg = Registration {
            name: "tiepdan".into(),
            endpoint: Endpoint::Url("https://127.0.0.1:8443".into()),
            namespace_selector: None,
            owner: Some(owner),
        };
        let want = OwnerReference {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRole".into(),
            name: "tiepdan-operator".into(),
            uid: "0b0e6a5c-1111-4c3e-9d2a-000000000001".into(),
            controller: None,
            block_owner_deletion: None,
        };
        assert_eq!(validating(&reg, "PEM").metadata.owner_references, Some(vec![want.clone()]));
        assert_eq!(mutating(&reg, "PEM").metadata.owner_references, Some(vec![want]));
        // Serialized, neither controller nor blockOwnerDeletion is sent.
        let json = serde_json::to_value(validating(&reg, "PEM")).unwrap();
        assert_eq!(
            json["metadata"]["ownerReferences"],
            serde_json::json!([{
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "name": "tiepdan-operator",
                "uid": "0b0e6a5c-1111-4c3e-9d2a-000000000001",
            }])
        );

        reg.owner = None;
        assert_eq!(validating(&reg, "PEM").metadata.owner_references, None);
        assert_eq!(mutating(&reg, "PEM").metadata.owner_references, None);
        // A role that never came from the API server has no uid to refer to.
        assert_eq!(cluster_role_owner(&ClusterRole::default()), None);
    }
}
