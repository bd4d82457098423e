//! The control plane's key material: a throwaway CA, the apiserver's serving certificate for
//! 127.0.0.1/localhost, and the service-account signing key. All ECDSA P-256 (Go 1.15 and
//! rustls both accept it), generated in-process with rcgen, so no `openssl` is needed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("failed to generate {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Paths of the PEM files written by [`write_pki`].
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// Private key that signs service-account tokens (apiserver and controller-manager).
    pub sa_key: PathBuf,
    /// Its public half, which the apiserver verifies tokens with.
    pub sa_public_key: PathBuf,
    /// The apiserver's client certificate towards kubelets (logs, exec): group `system:masters`,
    /// which kubelet's webhook authorizer asks the apiserver about.
    pub kubelet_client_cert: PathBuf,
    pub kubelet_client_key: PathBuf,
}

/// Generates the CA, the serving certificate and the service-account key into `dir`.
pub fn write_pki(dir: &Path) -> Result<Pki, CertError> {
    let generate = |what| move |source| CertError::Generate { what, source };

    let ca_key = KeyPair::generate().map_err(generate("the CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate("the CA"))?;
    ca_params.distinguished_name.push(DnType::CommonName, "tiepdan-harness-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate("the CA"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate().map_err(generate("the serving key"))?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default.svc".to_owned(),
    ])
    .map_err(generate("the serving certificate"))?;
    serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer).map_err(generate("the serving certificate"))?;

    let sa_key = KeyPair::generate().map_err(generate("the service-account key"))?;

    let client_key = KeyPair::generate().map_err(generate("the kubelet client key"))?;
    let mut client =
        CertificateParams::new(Vec::<String>::new()).map_err(generate("the kubelet client certificate"))?;
    client.distinguished_name.push(DnType::CommonName, "kube-apiserver-kubelet-client");
    client.distinguished_name.push(DnType::OrganizationName, "system:masters");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer).map_err(generate("the kubelet client certificate"))?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        sa_key: dir.join("sa.key"),
        sa_public_key: dir.join("sa.pub"),
        kubelet_client_cert: dir.join("kubelet-client.crt"),
        kubelet_client_key: dir.join("kubelet-client.key"),
    };
    write(&pki.ca_cert, &ca_cert.pem())?;
    write(&pki.serving_cert, &serving_cert.pem())?;
    write(&pki.serving_key, &serving_key.serialize_pem())?;
    write(&pki.sa_key, &sa_key.serialize_pem())?;
    write(&pki.sa_public_key, &sa_key.public_key_pem())?;
    write(&pki.kubelet_client_cert, &client_cert.pem())?;
    write(&pki.kubelet_client_key, &client_key.serialize_pem())?;
    Ok(pki)
}

fn write(path: &Path, contents: &str) -> Result<(), CertError> {
    std::fs::write(path, contents).map_err(|source| CertError::Write { path: path.to_owned(), source })
}
