//! A session's signaling certificate: the names it must cover, the `kubernetes.io/tls` Secret the
//! operator's own CA fills, the cert-manager `Certificate` that fills it instead when the session
//! names an issuer, and the per-pod copy its worker mounts.
//!
//! ```text
//!  own CA (rcgen) ──┐
//!                   ├─► Secret <session>-tls ──copy──► Secret <pod>-tls ──kubelet──► /var/run/tiepdan/tls
//!  Certificate ─────┘   (tls.crt, tls.key, ca.crt)     (optional volume of every     (the worker reloads it)
//!  (cert-manager)                                       worker pod)
//! ```
//!
//! Why a copy: a warm worker pod is created before anyone knows which session it will serve, so it
//! cannot mount the session's Secret by name. It mounts `<pod>-tls` (optional, so it starts
//! without it), and allocation fills that Secret.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::ByteString;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{labels, session_child_meta, signaling_service};
use crate::api::{IssuerRef, MediaWorkerPool, ReceptionSession};
use crate::pki::{Ca, ServingCert};

/// Keys of a `kubernetes.io/tls` Secret (and `ca.crt`, as cert-manager writes it).
pub const CERT: &str = "tls.crt";
pub const KEY: &str = "tls.key";
pub const CA: &str = "ca.crt";
/// The Secret type the worker's certificate lives in.
pub const SECRET_TYPE: &str = "kubernetes.io/tls";

/// Annotations on an own-CA Secret: what it was issued for, so a change re-issues it.
pub const ANNOTATION_NOT_AFTER: &str = "tiepdan.io/not-after";
pub const ANNOTATION_NAMES: &str = "tiepdan.io/subject-names";
pub const ANNOTATION_CA: &str = "tiepdan.io/ca-sha256";
/// When it was issued: the operator's CA leaves the trust bundle only once a worker has had time
/// to load the leaf that replaced its own (see [`crate::pki::rotation`]).
pub const ANNOTATION_ISSUED_AT: &str = "tiepdan.io/issued-at";

/// The session's TLS Secret.
pub fn secret_name(session: &str) -> String {
    format!("{session}-tls")
}

/// The Secret a worker pod mounts at `/var/run/tiepdan/tls` (a copy of its session's).
pub fn pod_secret_name(pod: &str) -> String {
    format!("{pod}-tls")
}

/// The names the certificate covers: the signaling Service's in-cluster DNS names, and the
/// pool's announced address (what the points' browsers reach) when it has one.
pub fn subject_names(session: &ReceptionSession, pool: &MediaWorkerPool) -> Vec<String> {
    let ns = session.namespace().unwrap_or_default();
    let svc = signaling_service::name(&session.name_any());
    let mut names = vec![format!("{svc}.{ns}.svc"), format!("{svc}.{ns}.svc.cluster.local")];
    if let Some(addr) = &pool.spec.announced_address {
        names.push(addr.clone());
    }
    names
}

/// The own-CA Secret for `session` holding `cert`, annotated with what it was issued for.
pub fn own_ca_secret(session: &ReceptionSession, cert: &ServingCert, ca: &Ca, names: &[String]) -> Secret {
    let mut meta =
        session_child_meta(session, secret_name(&session.name_any()), labels::COMPONENT_TLS, &BTreeMap::new());
    meta.annotations = Some(BTreeMap::from([
        (ANNOTATION_NOT_AFTER.to_owned(), cert.not_after.to_string()),
        (ANNOTATION_ISSUED_AT.to_owned(), cert.issued_at.to_string()),
        (ANNOTATION_NAMES.to_owned(), names.join(",")),
        (ANNOTATION_CA.to_owned(), pem_sha256(&ca.cert_pem).unwrap_or_default()),
    ]));
    Secret {
        metadata: meta,
        type_: Some(SECRET_TYPE.to_owned()),
        data: Some(BTreeMap::from([
            // The chain, leaf first, so clients that only trust the CA can build the path.
            (CERT.to_owned(), ByteString(format!("{}{}", cert.cert_pem, ca.cert_pem).into_bytes())),
            (KEY.to_owned(), ByteString(cert.key_pem.clone().into_bytes())),
            (CA.to_owned(), ByteString(ca.cert_pem.clone().into_bytes())),
        ])),
        ..Default::default()
    }
}

/// Why an own-CA Secret must be (re-)issued at `now`, or `None` when it is still good.
pub fn reissue_reason(
    existing: Option<&Secret>,
    names: &[String],
    ca: &Ca,
    validity: SignedDuration,
    now: Timestamp,
) -> Option<&'static str> {
    let Some(secret) = existing else { return Some("missing") };
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    if !data.contains_key(CERT) || !data.contains_key(KEY) {
        return Some("incomplete");
    }
    if annotations.get(ANNOTATION_NAMES).map(String::as_str) != Some(names.join(",").as_str()) {
        return Some("names changed");
    }
    if annotations.get(ANNOTATION_CA) != pem_sha256(&ca.cert_pem).as_ref() {
        return Some("CA changed");
    }
    match annotations.get(ANNOTATION_NOT_AFTER).and_then(|t| t.parse::<Timestamp>().ok()) {
        None => Some("expiry unknown"),
        Some(not_after) if crate::pki::needs_renewal(not_after, validity, now) => Some("due for renewal"),
        Some(_) => None,
    }
}

/// The rotation's view of an own-CA Secret: which CA signed its leaf and when. `None` for a
/// cert-manager Secret or a pod's copy (neither says). A Secret from before `issued-at` was
/// recorded counts as issued long ago.
pub fn leaf_of(secret: &Secret) -> Option<crate::pki::rotation::Leaf> {
    let a = secret.metadata.annotations.as_ref()?;
    let issuer_sha256 = a.get(ANNOTATION_CA)?.clone();
    let issued_at = a.get(ANNOTATION_ISSUED_AT).and_then(|t| t.parse().ok()).unwrap_or(Timestamp::UNIX_EPOCH);
    Some(crate::pki::rotation::Leaf { issuer_sha256, issued_at })
}

/// The copy of the session's certificate that worker pod `pod` mounts. Only the certificate, its
/// key and the CA travel: nothing else of the source Secret.
pub fn pod_copy(session: &ReceptionSession, pod: &str, source: &Secret) -> Option<Secret> {
    let data = source.data.as_ref()?;
    let mut copied = BTreeMap::new();
    for key in [CERT, KEY, CA] {
        if let Some(v) = data.get(key) {
            copied.insert(key.to_owned(), v.clone());
        }
    }
    if !copied.contains_key(CERT) || !copied.contains_key(KEY) {
        return None;
    }
    Some(Secret {
        metadata: session_child_meta(session, pod_secret_name(pod), labels::COMPONENT_TLS, &BTreeMap::new()),
        type_: Some(SECRET_TYPE.to_owned()),
        data: Some(copied),
        ..Default::default()
    })
}

/// Lowercase hex SHA-256 of the DER of the first certificate in `pem` (what the worker reports
/// as the certificate it serves).
pub fn pem_sha256(pem: &str) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()?;
    Some(Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02x}")).collect())
}

/// The leaf fingerprint of a TLS Secret's `tls.crt`.
pub fn secret_sha256(secret: &Secret) -> Option<String> {
    let crt = secret.data.as_ref()?.get(CERT)?;
    pem_sha256(std::str::from_utf8(&crt.0).ok()?)
}

/// A cert-manager `Certificate` (only the fields the operator sets or reads).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    schema = "disabled",
    status = "CertificateStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    pub duration: String,
    pub renew_before: String,
    pub issuer_ref: CertManagerIssuerRef,
    pub private_key: PrivateKey,
    pub usages: Vec<String>,
    pub secret_template: SecretTemplate,
}

/// `spec.issuerRef` of a Certificate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CertManagerIssuerRef {
    pub name: String,
    pub kind: String,
    pub group: String,
}

/// `spec.privateKey` of a Certificate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKey {
    pub algorithm: String,
    pub size: i32,
    pub rotation_policy: String,
}

/// `spec.secretTemplate`: labels cert-manager puts on the Secret it writes, so the session's
/// clean-up by label finds it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SecretTemplate {
    pub labels: BTreeMap<String, String>,
}

/// What cert-manager reports.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

impl Certificate {
    /// cert-manager's `Ready` condition: `Some((ready, message))`, `None` before it reported.
    pub fn ready(&self) -> Option<(bool, String)> {
        let c = self.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
        Some((c.status == "True", c.message.clone()))
    }
}

/// The `Certificate` asking `issuer` for `session`'s certificate, valid for `validity` and renewed
/// in its last third (cert-manager's own default ratio).
pub fn certificate(
    session: &ReceptionSession,
    issuer: &IssuerRef,
    names: &[String],
    validity: SignedDuration,
) -> Certificate {
    let sname = session.name_any();
    let (ips, dns): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|n| n.parse::<std::net::IpAddr>().is_ok());
    // Whole hours, rounded up, at least one: cert-manager takes Go durations.
    let hours = |d: SignedDuration| format!("{}h", ((d.as_secs() + 3599) / 3600).max(1));
    Certificate {
        metadata: session_child_meta(session, secret_name(&sname), labels::COMPONENT_TLS, &BTreeMap::new()),
        spec: CertificateSpec {
            secret_name: secret_name(&sname),
            dns_names: dns,
            ip_addresses: ips,
            duration: hours(validity),
            renew_before: hours(validity / 3),
            issuer_ref: CertManagerIssuerRef {
                name: issuer.name.clone(),
                kind: issuer.kind.clone(),
                group: "cert-manager.io".to_owned(),
            },
            private_key: PrivateKey { algorithm: "ECDSA".to_owned(), size: 256, rotation_policy: "Always".to_owned() },
            usages: vec!["server auth".to_owned(), "digital signature".to_owned(), "key encipherment".to_owned()],
            secret_template: SecretTemplate { labels: labels::for_session(&sname, labels::COMPONENT_TLS) },
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::tests::{pool, session};
    use crate::pki;

    fn now() -> Timestamp {
        "2025-06-11T01:00:00Z".parse().unwrap()
    }

    /// The CA permits the example pool's announced address (its entry host).
    fn entry_host() -> pki::NamePolicy {
        pki::NamePolicy::new(["203.0.113.7".parse().unwrap()])
    }

    #[test]
    fn the_certificate_covers_the_service_names_and_the_announced_address() {
        let names = subject_names(&session(), &pool());
        assert_eq!(
            names,
            ["phien-thang-6-signaling.my-hao.svc", "phien-thang-6-signaling.my-hao.svc.cluster.local", "203.0.113.7"]
        );
    }

    #[test]
    fn an_own_ca_secret_is_reissued_only_when_due_or_its_inputs_change() {
        let ca = pki::new_ca(now(), pki::CA_MAX_VALIDITY, &entry_host()).unwrap();
        let names = subject_names(&session(), &pool());
        let validity = SignedDuration::from_hours(72);
        let cert = pki::issue_serving(&ca, &names, now(), validity).unwrap();
        let secret = own_ca_secret(&session(), &cert, &ca, &names);
        assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
        assert_eq!(secret.metadata.labels.as_ref().unwrap()[labels::SESSION], "phien-thang-6");
        assert_eq!(reissue_reason(None, &names, &ca, validity, now()), Some("missing"));
        assert_eq!(reissue_reason(Some(&secret), &names, &ca, validity, now()), None);
        let at = |h| now() + SignedDuration::from_hours(h);
        assert_eq!(reissue_reason(Some(&secret), &names, &ca, validity, at(47)), None);
        assert_eq!(reissue_reason(Some(&secret), &names, &ca, validity, at(48)), Some("due for renewal"));
        let other_names = vec!["x.svc".to_owned()];
        assert_eq!(reissue_reason(Some(&secret), &other_names, &ca, validity, now()), Some("names changed"));
        let other_ca = pki::new_ca(now(), pki::CA_MAX_VALIDITY, &entry_host()).unwrap();
        assert_eq!(reissue_reason(Some(&secret), &names, &other_ca, validity, now()), Some("CA changed"));
    }

    #[test]
    fn the_pod_copy_carries_only_the_certificate_key_and_ca_and_the_fingerprint_is_the_leafs() {
        let ca = pki::new_ca(now(), pki::CA_MAX_VALIDITY, &entry_host()).unwrap();
        let names = subject_names(&session(), &pool());
        let cert = pki::issue_serving(&ca, &names, now(), SignedDuration::from_hours(72)).unwrap();
        let mut source = own_ca_secret(&session(), &cert, &ca, &names);
        source.data.as_mut().unwrap().insert("extra".into(), ByteString(b"x".to_vec()));
        let copy = pod_copy(&session(), "default-abcde", &source).unwrap();
        assert_eq!(copy.metadata.name.as_deref(), Some("default-abcde-tls"));
        assert_eq!(copy.data.as_ref().unwrap().keys().collect::<Vec<_>>(), [CA, CERT, KEY]);
        // The chain starts with the leaf: the fingerprint is the leaf's, not the CA's.
        assert_eq!(secret_sha256(&copy), pem_sha256(&cert.cert_pem));
        assert_ne!(secret_sha256(&copy), pem_sha256(&ca.cert_pem));
        source.data.as_mut().unwrap().remove(KEY);
        assert!(pod_copy(&session(), "p", &source).is_none(), "no copy without a key");
    }

    #[test]
    fn the_certificate_asks_the_named_issuer_and_labels_its_secret_for_the_session() {
        let issuer = IssuerRef { name: "vnpt-ca".into(), kind: "ClusterIssuer".into() };
        let names = subject_names(&session(), &pool());
        let c = certificate(&session(), &issuer, &names, SignedDuration::from_hours(72));
        assert_eq!(c.spec.secret_name, "phien-thang-6-tls");
        assert_eq!(c.spec.dns_names.len(), 2);
        assert_eq!(c.spec.ip_addresses, ["203.0.113.7"]);
        assert_eq!((c.spec.duration.as_str(), c.spec.renew_before.as_str()), ("72h", "24h"));
        assert_eq!(c.spec.issuer_ref.kind, "ClusterIssuer");
        assert_eq!(c.spec.secret_template.labels[labels::SESSION], "phien-thang-6");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["apiVersion"], "cert-manager.io/v1");
        assert_eq!(v["spec"]["issuerRef"]["group"], "cert-manager.io");
    }
}
