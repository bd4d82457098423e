//! The operator's own certificate authority (rcgen): used when a session names no cert-manager
//! issuer, and for the admission webhook's serving certificate. ECDSA P-256 throughout.
//!
//! The CA's distinguished name is fixed (only the key is random), so an [`Issuer`] can be rebuilt
//! from the stored key alone; its expiry and name constraints are read back from its certificate.
//! It is name-constrained (see [`names`]) and valid for at most [`CA_MAX_VALIDITY`].

mod names;
pub mod rotation;

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

pub use names::{NamePolicy, ParseError, PermittedName, SERVICE_DOMAINS};

/// The CA's common name.
pub const CA_NAME: &str = "tiepdan-operator-ca";
/// The longest a CA may be valid: a year, so a leaked key or a mistaken trust is bounded.
pub const CA_MAX_VALIDITY: SignedDuration = SignedDuration::from_hours(24 * 365);

/// Errors generating certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to generate {what}")]
    Generate { what: &'static str, source: rcgen::Error },
    #[error("failed to read the stored CA key")]
    CaKey(#[source] rcgen::Error),
    #[error("certificate validity out of range")]
    Validity,
    #[error("failed to read the stored CA certificate: {0}")]
    CaCert(String),
    #[error(
        "{name:?} is outside the names the operator's CA may sign for ({permitted}); add it with \
         --ca-permitted-name (chart value ca.permittedNames)"
    )]
    NotPermitted { name: String, permitted: String },
}

/// A CA certificate and its private key, PEM-encoded, with what its certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// Its name constraints; `None` for a CA without any (made before they existed).
    pub names: Option<NamePolicy>,
}

impl Ca {
    /// A stored CA, its validity and constraints read from the certificate.
    pub fn from_pem(cert_pem: String, key_pem: String) -> Result<Ca, Error> {
        let (not_before, not_after, names) = read_ca_cert(&cert_pem)?;
        Ok(Ca { cert_pem, key_pem, not_before, not_after, names })
    }
}

/// The validity and name constraints of the first certificate in `pem`.
fn read_ca_cert(pem: &str) -> Result<(Timestamp, Timestamp, Option<NamePolicy>), Error> {
    use rustls::pki_types::pem::PemObject;
    use x509_parser::extensions::GeneralName;
    let bad = |what: &str| Error::CaCert(what.to_owned());
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| bad("not PEM"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|_| bad("not a certificate"))?;
    let ts = |t: &x509_parser::time::ASN1Time| Timestamp::from_second(t.timestamp()).map_err(|_| bad("validity"));
    let (not_before, not_after) = (ts(&cert.validity().not_before)?, ts(&cert.validity().not_after)?);
    let Some(nc) = cert.name_constraints().map_err(|_| bad("name constraints"))? else {
        return Ok((not_before, not_after, None));
    };
    let mut names = Vec::new();
    for subtree in nc.value.permitted_subtrees.iter().flatten() {
        names.push(match subtree.base {
            GeneralName::DNSName(d) => PermittedName::Dns(d.to_owned()),
            GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
                let (addr, mask) = b.split_at(b.len() / 2);
                let addr = match addr.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(addr).map_err(|_| bad("IP"))?),
                    _ => std::net::IpAddr::from(<[u8; 16]>::try_from(addr).map_err(|_| bad("IP"))?),
                };
                let prefix = mask.iter().map(|m| m.count_ones()).sum::<u32>() as u8;
                PermittedName::Ip { addr, prefix }
            }
            _ => return Err(bad("a name constraint other than a DNS name or an IP range")),
        });
    }
    Ok((not_before, not_after, Some(NamePolicy::exactly(names))))
}

/// A serving certificate and its key, PEM-encoded, plus when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub issued_at: Timestamp,
    pub not_after: Timestamp,
}

fn to_time(t: Timestamp) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|_| Error::Validity)
}

/// The CA's fixed parameters: what an [`Issuer`] needs (its name, how its key is identified).
fn ca_base_params() -> Result<CertificateParams, Error> {
    let mut p =
        CertificateParams::new(Vec::<String>::new()).map_err(|source| Error::Generate { what: "CA", source })?;
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.distinguished_name.push(DnType::OrganizationName, "tiepdan");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

/// A new CA constrained to `names`, valid for `validity` (at most [`CA_MAX_VALIDITY`]) from `now`.
pub fn new_ca(now: Timestamp, validity: SignedDuration, names: &NamePolicy) -> Result<Ca, Error> {
    if validity <= SignedDuration::ZERO || validity > CA_MAX_VALIDITY {
        return Err(Error::Validity);
    }
    let key = KeyPair::generate().map_err(|source| Error::Generate { what: "CA key", source })?;
    let mut p = ca_base_params()?;
    p.not_before = to_time(now - SignedDuration::from_hours(1))?;
    p.not_after = to_time(now + validity)?;
    p.name_constraints = Some(names.constraints());
    let cert = p.self_signed(&key).map_err(|source| Error::Generate { what: "CA", source })?;
    Ca::from_pem(cert.pem(), key.serialize_pem())
}

/// Issues a serving certificate for `names` (DNS names or IP addresses), valid for `validity` but
/// never beyond the CA's own expiry. A name the CA's constraints do not permit is refused here:
/// clients would refuse the certificate anyway.
pub fn issue_serving(
    ca: &Ca,
    names: &[String],
    now: Timestamp,
    validity: SignedDuration,
) -> Result<ServingCert, Error> {
    if let Some(policy) = &ca.names {
        if let Some(name) = names.iter().find(|n| !policy.permits(n)) {
            return Err(Error::NotPermitted { name: name.clone(), permitted: policy.to_string() });
        }
    }
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(Error::CaKey)?;
    let issuer = Issuer::new(ca_base_params()?, ca_key);
    let key = KeyPair::generate().map_err(|source| Error::Generate { what: "serving key", source })?;
    let mut p = CertificateParams::new(names.to_vec()).map_err(|source| Error::Generate { what: "serving", source })?;
    p.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Names the issuing key, so clients pick the right CA while two with one name are trusted.
    p.use_authority_key_identifier_extension = true;
    let not_after = (now + validity).min(ca.not_after);
    p.not_before = to_time(now - SignedDuration::from_mins(5))?;
    p.not_after = to_time(not_after)?;
    let cert = p.signed_by(&key, &issuer).map_err(|source| Error::Generate { what: "serving", source })?;
    Ok(ServingCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), issued_at: now, not_after })
}

/// Whether a certificate expiring at `not_after` is due for renewal at `now`: within the last
/// third of its `validity`, as cert-manager does by default.
pub fn needs_renewal(not_after: Timestamp, validity: SignedDuration, now: Timestamp) -> bool {
    now >= not_after - validity / 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    fn now() -> Timestamp {
        "2027-03-14T07:00:00Z".parse().unwrap()
    }

    fn policy(extra: &[&str]) -> NamePolicy {
        NamePolicy::new(extra.iter().map(|e| e.parse().unwrap()))
    }

    fn der(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// What a browser or the worker's clients do: a rustls (webpki) verifier trusting only
    /// `trusted`, checking `leaf_pem` for `name` at `at`.
    fn verify(trusted: &[&Ca], leaf_pem: &str, name: &str, at: Timestamp) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in trusted {
            roots.add(der(&ca.cert_pem)).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let at = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.as_second() as u64));
        verifier.verify_server_cert(&der(leaf_pem), &[], &name, &[], at).map(drop)
    }

    /// A leaf signed by `ca` for `names` without the issuer's own check of its constraints: what
    /// someone holding the CA's key could make.
    fn forged_leaf(ca: &Ca, names: &[&str]) -> String {
        let issuer = Issuer::new(ca_base_params().unwrap(), KeyPair::from_pem(&ca.key_pem).unwrap());
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = to_time(now() - SignedDuration::from_hours(1)).unwrap();
        p.not_after = to_time(now() + SignedDuration::from_hours(24)).unwrap();
        p.signed_by(&key, &issuer).unwrap().pem()
    }

    #[test]
    fn a_serving_certificate_chains_to_the_ca_and_rustls_accepts_it() {
        let ca = new_ca(now(), CA_MAX_VALIDITY, &policy(&["127.0.0.1"])).unwrap();
        let leaf =
            issue_serving(&ca, &["127.0.0.1".into(), "phien.my-hao.svc".into()], now(), SignedDuration::from_hours(24))
                .unwrap();
        verify(&[&ca], &leaf.cert_pem, "phien.my-hao.svc", now()).expect("leaf verifies against the CA");
        verify(&[&ca], &leaf.cert_pem, "127.0.0.1", now()).expect("and for its IP");
    }

    #[test]
    fn the_ca_is_valid_at_most_a_year_and_reads_back_its_validity_and_constraints() {
        let names = policy(&["tiepdan.example.vn", "10.1.0.0/16"]);
        let ca = new_ca(now(), CA_MAX_VALIDITY, &names).unwrap();
        assert_eq!(ca.not_after, now() + CA_MAX_VALIDITY);
        assert_eq!(ca.names.as_ref(), Some(&names));
        let again = Ca::from_pem(ca.cert_pem.clone(), ca.key_pem.clone()).unwrap();
        assert_eq!(again, ca);
        let too_long = CA_MAX_VALIDITY + SignedDuration::from_hours(1);
        assert!(matches!(new_ca(now(), too_long, &names), Err(Error::Validity)));
        // A leaf never outlives its CA.
        let late = ca.not_after - SignedDuration::from_hours(2);
        let leaf = issue_serving(&ca, &["x.svc".into()], late, SignedDuration::from_hours(24)).unwrap();
        assert_eq!(leaf.not_after, ca.not_after);
    }

    /// The CA's name constraints, checked by the verifier clients use: a leaf that whoever holds
    /// the CA's key signs for a name outside them is refused. (Removing `p.name_constraints`
    /// from `new_ca` makes each forged leaf verify, and this test fail.)
    #[test]
    fn clients_refuse_a_leaf_for_a_name_outside_the_constraints_even_when_the_ca_signed_it() {
        let ca = new_ca(now(), CA_MAX_VALIDITY, &policy(&["tiepdan.example.vn", "10.1.0.0/16"])).unwrap();
        for name in ["phien.my-hao.svc", "phien.my-hao.svc.cluster.local", "tiepdan.example.vn", "10.1.2.3"] {
            verify(&[&ca], &forged_leaf(&ca, &[name]), name, now()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for name in ["example.com", "tiepdan.example.vn.evil.com", "10.2.0.1", "203.0.113.7"] {
            let err = verify(&[&ca], &forged_leaf(&ca, &[name]), name, now()).expect_err(name);
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(_))
                        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
                        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })
                ),
                "{name}: {err:?}"
            );
        }
        // Without any permitted IP range, every address is excluded.
        let dns_only = new_ca(now(), CA_MAX_VALIDITY, &policy(&[])).unwrap();
        verify(&[&dns_only], &forged_leaf(&dns_only, &["a.b.svc"]), "a.b.svc", now()).unwrap();
        verify(&[&dns_only], &forged_leaf(&dns_only, &["127.0.0.1"]), "127.0.0.1", now()).expect_err("any IP");
    }

    #[test]
    fn the_operator_refuses_to_issue_for_a_name_outside_the_constraints() {
        let ca = new_ca(now(), CA_MAX_VALIDITY, &policy(&[])).unwrap();
        let err = issue_serving(&ca, &["x.svc".into(), "203.0.113.7".into()], now(), SignedDuration::from_hours(1))
            .unwrap_err();
        assert!(matches!(&err, Error::NotPermitted { name, .. } if name == "203.0.113.7"), "{err:?}");
        assert!(err.to_string().contains("--ca-permitted-name"), "{err}");
    }

    #[test]
    fn renewal_starts_in_the_last_third_of_validity() {
        let v = SignedDuration::from_hours(30);
        let not_after = now() + v;
        assert!(!needs_renewal(not_after, v, now() + SignedDuration::from_hours(19)));
        assert!(needs_renewal(not_after, v, now() + SignedDuration::from_hours(20)));
    }
}
