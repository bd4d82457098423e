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
use crate::pki::rotation::{self, CaSet, Leaf, Retiring, RotationPolicy, Step};
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
    #[error("no CA after rotating")]
    NoCa,
    #[error("failed to remove the webhook configuration {name:?} an older version registered")]
    Replaced { name: String, source: kube::Error },
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

/// Keys of the CA Secret beyond `tls.crt`/`tls.key` (the signing CA): its successor while a
/// rotation overlaps, and its predecessor's certificate (no key) until retired.
const NEXT_CERT: &str = "next.crt";
const NEXT_KEY: &str = "next.key";
const PREVIOUS_CERT: &str = "previous.crt";
/// When the bundle carrying `next` was published, and when `previous` stopped signing.
const ANNOTATION_NEXT_PUBLISHED: &str = "tiepdan.io/next-published-at";
const ANNOTATION_PREVIOUS_SINCE: &str = "tiepdan.io/previous-since";

/// The CA Secret holding `set`.
fn ca_secret(namespace: &str, set: &CaSet) -> Secret {
    let b = |s: &str| ByteString(s.as_bytes().to_vec());
    let mut data = BTreeMap::from([
        ("tls.crt".to_owned(), b(&set.signing.cert_pem)),
        ("tls.key".to_owned(), b(&set.signing.key_pem)),
    ]);
    let mut annotations = BTreeMap::new();
    if let Some((next, published)) = &set.next {
        data.insert(NEXT_CERT.to_owned(), b(&next.cert_pem));
        data.insert(NEXT_KEY.to_owned(), b(&next.key_pem));
        if let Some(t) = published {
            annotations.insert(ANNOTATION_NEXT_PUBLISHED.to_owned(), t.to_string());
        }
    }
    if let Some(prev) = &set.previous {
        data.insert(PREVIOUS_CERT.to_owned(), b(&prev.cert_pem));
        annotations.insert(ANNOTATION_PREVIOUS_SINCE.to_owned(), prev.since.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::common(CA_SECRET, "ca")),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Default::default()
    }
}

/// The CAs a CA Secret holds; `None` when its signing CA is missing or unreadable. A successor or
/// predecessor that cannot be read is dropped (a new one is prepared).
fn read_ca_secret(secret: &Secret) -> Option<CaSet> {
    let d = secret.data.as_ref()?;
    let text = |k: &str| d.get(k).map(|b| String::from_utf8_lossy(&b.0).into_owned());
    let annotation =
        |k: &str| secret.metadata.annotations.as_ref().and_then(|a| a.get(k)).and_then(|t| t.parse::<Timestamp>().ok());
    let signing = Ca::from_pem(text("tls.crt")?, text("tls.key")?).ok()?;
    let next = match (text(NEXT_CERT), text(NEXT_KEY)) {
        (Some(c), Some(k)) => Ca::from_pem(c, k).ok().map(|n| (n, annotation(ANNOTATION_NEXT_PUBLISHED))),
        _ => None,
    };
    let previous = text(PREVIOUS_CERT).and_then(|cert_pem| {
        let not_after = Ca::from_pem(cert_pem.clone(), String::new()).ok()?.not_after;
        Some(Retiring { cert_pem, not_after, since: annotation(ANNOTATION_PREVIOUS_SINCE)? })
    });
    Some(CaSet { signing, next, previous })
}

/// The stored CAs, if any.
pub async fn load_ca_set(client: &kube::Client, namespace: &str) -> Result<Option<CaSet>, Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    Ok(secrets.get_opt(CA_SECRET).await.map_err(Error::CaSecret)?.as_ref().and_then(read_ca_secret))
}

/// Publishes the trust bundle ConfigMap (`ca.crt`: every CA of `set`) beside the CA Secret.
async fn publish_bundle(client: &kube::Client, namespace: &str, set: &CaSet) -> Result<(), Error> {
    let bundle = ConfigMap {
        metadata: ObjectMeta {
            name: Some(TRUST_BUNDLE.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::common(TRUST_BUNDLE, "trust-bundle")),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("ca.crt".to_owned(), set.bundle_pem())])),
        ..Default::default()
    };
    apply::apply(&Api::<ConfigMap>::namespaced(client.clone(), namespace), &bundle).await?;
    Ok(())
}

/// Replaces the CA Secret with `set`, fenced on the `resource_version` read: a key that `set`
/// no longer holds (a retired CA's certificate) is gone, which a server-side apply would not
/// guarantee for a field another manager once wrote. Returns the new resourceVersion.
async fn replace_ca(
    secrets: &Api<Secret>,
    namespace: &str,
    set: &CaSet,
    resource_version: Option<String>,
) -> Result<Option<String>, Error> {
    let mut secret = ca_secret(namespace, set);
    secret.metadata.resource_version = resource_version;
    let written = secrets.replace(CA_SECRET, &PostParams::default(), &secret).await.map_err(Error::CaSecret)?;
    Ok(written.metadata.resource_version)
}

/// Stores a first CA: created (never overwriting another replica's, whose CA is returned
/// instead) when there was no Secret, replacing an unusable one (read at `resource_version`).
async fn create_ca(
    client: &kube::Client,
    namespace: &str,
    existing: Option<Option<String>>,
    set: CaSet,
) -> Result<(CaSet, Option<String>), Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    if let Some(resource_version) = existing {
        let rv = replace_ca(&secrets, namespace, &set, resource_version).await?;
        return Ok((set, rv));
    }
    match secrets.create(&PostParams::default(), &ca_secret(namespace, &set)).await {
        Ok(created) => Ok((set, created.metadata.resource_version)),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let theirs = secrets.get(CA_SECRET).await.map_err(Error::CaSecret)?;
            let rv = theirs.metadata.resource_version.clone();
            Ok((read_ca_secret(&theirs).unwrap_or(set), rv))
        }
        Err(e) => Err(Error::CaSecret(e)),
    }
}

/// Loads the CAs from their Secret in `namespace`, creating a CA constrained to `names` when there
/// is none usable (missing or expired), and publishes the trust bundle. Never rotates: that is
/// [`rotate`]'s, run by the leader.
pub async fn ensure_ca(
    client: &kube::Client,
    namespace: &str,
    now: Timestamp,
    names: &NamePolicy,
    policy: &RotationPolicy,
) -> Result<CaSet, Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let stored = secrets.get_opt(CA_SECRET).await.map_err(Error::CaSecret)?;
    let set = match stored.as_ref().and_then(read_ca_secret) {
        Some(set) if now < set.signing.not_after => set,
        _ => {
            let set = CaSet::new(pki::new_ca(now, policy.validity, names)?);
            let existing = stored.map(|s| s.metadata.resource_version);
            create_ca(client, namespace, existing, set).await?.0
        }
    };
    publish_bundle(client, namespace, &set).await?;
    Ok(set)
}

/// Takes every rotation step due at `now` (see [`pki::rotation`]), storing the CAs and publishing
/// the bundle as each step requires, and returns the CAs. `leaves`: the leaves stored for
/// sessions.
pub async fn rotate(
    client: &kube::Client,
    namespace: &str,
    now: Timestamp,
    names: &NamePolicy,
    policy: &RotationPolicy,
    leaves: &[Leaf],
) -> Result<CaSet, Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let stored = secrets.get_opt(CA_SECRET).await.map_err(Error::CaSecret)?;
    let mut resource_version = stored.as_ref().map(|s| s.metadata.resource_version.clone());
    let mut set = stored.as_ref().and_then(read_ca_secret);
    // Each step changes what `decide` sees; five covers Create → Prepare → Publish → Switch → Retire.
    for _ in 0..5 {
        let step = rotation::decide(set.as_ref(), names, policy, leaves, now);
        let next = match (step, set.take()) {
            (Step::Keep, Some(s)) => {
                set = Some(s);
                break;
            }
            (Step::Create, _) | (_, None) => {
                let fresh = CaSet::new(pki::new_ca(now, policy.validity, names)?);
                let (s, rv) = create_ca(client, namespace, resource_version, fresh).await?;
                resource_version = Some(rv);
                publish_bundle(client, namespace, &s).await?;
                set = Some(s);
                tracing::info!(names = %names, "created the operator's CA");
                continue;
            }
            (Step::Prepare, Some(s)) => CaSet { next: Some((pki::new_ca(now, policy.validity, names)?, None)), ..s },
            (Step::Publish, Some(s)) => {
                // The bundle with both first; only then is `next` recorded as published.
                publish_bundle(client, namespace, &s).await?;
                CaSet { next: s.next.map(|(n, _)| (n, Some(now))), ..s }
            }
            (Step::Switch, Some(s)) => match s.next {
                Some((next, _)) => {
                    let prev = Retiring { cert_pem: s.signing.cert_pem, not_after: s.signing.not_after, since: now };
                    CaSet { signing: next, next: None, previous: Some(prev) }
                }
                None => s,
            },
            (Step::Retire, Some(s)) => CaSet { previous: None, ..s },
        };
        resource_version = Some(replace_ca(&secrets, namespace, &next, resource_version.flatten()).await?);
        if step != Step::Prepare {
            publish_bundle(client, namespace, &next).await?;
        }
        tracing::info!(?step, signing_until = %next.signing.not_after, "rotated the operator's CA");
        set = Some(next);
    }
    set.ok_or(Error::NoCa)
}

/// Applies both configurations with `bundle_pem` (every CA of the set, see [`CaSet::bundle_pem`])
/// as their CA bundle.
pub async fn register(client: &kube::Client, reg: &Registration, bundle_pem: &str) -> Result<(), Error> {
    apply::apply(&Api::<ValidatingWebhookConfiguration>::all(client.clone()), &validating(reg, bundle_pem)).await?;
    apply::apply(&Api::<MutatingWebhookConfiguration>::all(client.clone()), &mutating(reg, bundle_pem)).await?;
    Ok(())
}

/// Deletes the configurations named `name` that `owner` owns: what an older version registered
/// under a name every release shared. Left behind, such a configuration keeps calling this
/// webhook, fails closed, and stops trusting it once the CA rotates. One owned by anything else
/// (another release's) is left alone. Returns how many were deleted.
pub async fn remove_replaced(client: &kube::Client, name: &str, owner: &OwnerReference) -> Result<usize, Error> {
    async fn remove<K>(api: Api<K>, name: &str, owner: &OwnerReference) -> Result<usize, Error>
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    {
        let err = |source| Error::Replaced { name: name.to_owned(), source };
        let owned = api
            .get_opt(name)
            .await
            .map_err(err)?
            .is_some_and(|c| c.meta().owner_references.iter().flatten().any(|o| o.uid == owner.uid));
        if !owned {
            return Ok(0);
        }
        match api.delete(name, &kube::api::DeleteParams::default()).await {
            Ok(_) => Ok(1),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(0),
            Err(source) => Err(err(source)),
        }
    }
    Ok(remove(Api::<ValidatingWebhookConfiguration>::all(client.clone()), name, owner).await?
        + remove(Api::<MutatingWebhookConfiguration>::all(client.clone()), name, owner).await?)
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
