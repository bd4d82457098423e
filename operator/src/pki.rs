//! The operator's own certificate authority (rcgen): used when a session names no cert-manager
//! issuer, and for the admission webhook's serving certificate. ECDSA P-256 throughout.
//!
//! The CA's parameters are deterministic (only the key is random), so an [`Issuer`] can be
//! rebuilt from the stored key alone, without parsing the stored certificate.

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA's common name.
pub const CA_NAME: &str = "tiepdan-operator-ca";

/// Errors generating certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to generate {what}")]
    Generate { what: &'static str, source: rcgen::Error },
    #[error("failed to read the stored CA key")]
    CaKey(#[source] rcgen::Error),
    #[error("certificate validity out of range")]
    Validity,
}

/// A CA certificate and its private key, PEM-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A serving certificate and its key, PEM-encoded, plus when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: Timestamp,
}

fn to_time(t: Timestamp) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|_| Error::Validity)
}

fn ca_params(now: Timestamp) -> Result<CertificateParams, Error> {
    let mut p =
        CertificateParams::new(Vec::<String>::new()).map_err(|source| Error::Generate { what: "CA", source })?;
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.distinguished_name.push(DnType::OrganizationName, "tiepdan");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_before = to_time(now - SignedDuration::from_hours(1))?;
    p.not_after = to_time(now + SignedDuration::from_hours(24 * 365 * 10))?;
    Ok(p)
}

/// A new CA, valid for ten years from `now`.
pub fn new_ca(now: Timestamp) -> Result<Ca, Error> {
    let key = KeyPair::generate().map_err(|source| Error::Generate { what: "CA key", source })?;
    let cert = ca_params(now)?.self_signed(&key).map_err(|source| Error::Generate { what: "CA", source })?;
    Ok(Ca { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issues a serving certificate for `names` (DNS names or IP addresses), valid for `validity`.
pub fn issue_serving(
    ca: &Ca,
    names: &[String],
    now: Timestamp,
    validity: SignedDuration,
) -> Result<ServingCert, Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(Error::CaKey)?;
    let issuer = Issuer::new(ca_params(now)?, ca_key);
    let key = KeyPair::generate().map_err(|source| Error::Generate { what: "serving key", source })?;
    let mut p = CertificateParams::new(names.to_vec()).map_err(|source| Error::Generate { what: "serving", source })?;
    p.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let not_after = now + validity;
    p.not_before = to_time(now - SignedDuration::from_mins(5))?;
    p.not_after = to_time(not_after)?;
    let cert = p.signed_by(&key, &issuer).map_err(|source| Error::Generate { what: "serving", source })?;
    Ok(ServingCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), not_after })
}

/// Whether a certificate expiring at `not_after` is due for renewal at `now`: within the last
/// third of its `validity`, as cert-manager does by default.
pub fn needs_renewal(not_after: Timestamp, validity: SignedDuration, now: Timestamp) -> bool {
    now >= not_after - validity / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2027-03-14T07:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_serving_certificate_chains_to_the_ca_and_rustls_accepts_it() {
        let ca = new_ca(now()).unwrap();
        let leaf = issue_serving(
            &ca,
            &["127.0.0.1".into(), "phien.my-hao.svc".into()],
            Timestamp::now(),
            SignedDuration::from_hours(24),
        )
        .unwrap();
        // Build a rustls client that trusts only our CA and a server with the leaf: a real
        // handshake is what the worker's clients and the API server will do.
        let mut roots = rustls::RootCertStore::empty();
        let ca_der = rustls_pki_der(&ca.cert_pem);
        roots.add(ca_der).unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf_der = rustls_pki_der(&leaf.cert_pem);
        let name = rustls::pki_types::ServerName::try_from("phien.my-hao.svc").unwrap();
        verifier
            .verify_server_cert(&leaf_der, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .expect("leaf verifies against the CA");
    }

    fn rustls_pki_der(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn renewal_starts_in_the_last_third_of_validity() {
        let v = SignedDuration::from_hours(30);
        let not_after = now() + v;
        assert!(!needs_renewal(not_after, v, now() + SignedDuration::from_hours(19)));
        assert!(needs_renewal(not_after, v, now() + SignedDuration::from_hours(20)));
    }
}
