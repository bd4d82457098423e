//! TLS for clients of a worker's signaling listener: trust only a given CA bundle, verify under a
//! chosen name, and tell which certificate was served.
//!
//! The name is separate from the address so a test (or the probe) can connect to a pod IP and
//! still verify the name the certificate is issued for, e.g. `<session>-signaling.<ns>.svc`.

use crate::tls::{certificate_sha256, provider};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS connection to a worker.
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// How long a TCP connect plus handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("failed to read the CA bundle {path}")]
    ReadCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA bundle is not valid PEM")]
    CaPem(#[source] rustls::pki_types::pem::Error),
    #[error("the CA bundle holds no certificate")]
    NoRoots,
    #[error("a CA certificate is not usable as a trust anchor")]
    Root(#[source] rustls::Error),
    #[error("{name:?} is not a valid TLS server name")]
    ServerName {
        name: String,
        #[source]
        source: InvalidDnsNameError,
    },
    #[error("failed to set up certificate verification")]
    Verifier(#[source] VerifierBuilderError),
    #[error("failed to set up TLS")]
    Config(#[source] rustls::Error),
    #[error("failed to connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS handshake failed")]
    Handshake(#[source] std::io::Error),
    #[error("no TLS connection within {0:?}")]
    Timeout(Duration),
    #[error("the server presented no certificate")]
    NoPeerCertificate,
}

/// What a client trusts when it connects to a worker over TLS.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The only certificates trusted as issuers (a CA bundle, or the server's own certificate).
    pub roots: Vec<CertificateDer<'static>>,
    /// The name to verify the certificate for and to send as SNI; `None` uses the host of the
    /// URL (or address) connected to.
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Trusts the certificates of a PEM bundle, verifying `server_name` if given.
    pub fn from_pem(pem: &[u8], server_name: Option<String>) -> Result<Self, ClientTlsError> {
        let roots =
            CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(ClientTlsError::CaPem)?;
        if roots.is_empty() {
            return Err(ClientTlsError::NoRoots);
        }
        Ok(Self { roots, server_name })
    }

    /// Trusts the certificates of a PEM file (e.g. a `ca.crt`), verifying `server_name` if given.
    pub fn from_pem_file(path: &Path, server_name: Option<String>) -> Result<Self, ClientTlsError> {
        let pem = std::fs::read(path).map_err(|source| ClientTlsError::ReadCaFile { path: path.to_owned(), source })?;
        Self::from_pem(&pem, server_name)
    }

    /// Verifies (and asks for) this name instead of the host connected to.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    fn client_config(&self, now: Option<UnixTime>) -> Result<ClientConfig, ClientTlsError> {
        let mut store = RootCertStore::empty();
        for root in &self.roots {
            store.add(root.clone()).map_err(ClientTlsError::Root)?;
        }
        let provider = provider();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(&provider))
            .build()
            .map_err(ClientTlsError::Verifier)?;
        Ok(builder(provider, now)?.with_webpki_verifier(verifier).with_no_client_auth())
    }

    /// Handshakes over `tcp`, verifying the certificate for [`Self::server_name`] or else
    /// `default_name` (the host connected to).
    pub async fn handshake(&self, tcp: TcpStream, default_name: &str) -> Result<TlsStream, ClientTlsError> {
        let name = self.server_name.as_deref().unwrap_or(default_name);
        handshake(Arc::new(self.client_config(None)?), tcp, name).await
    }
}

fn builder(
    provider: Arc<CryptoProvider>,
    now: Option<UnixTime>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, ClientTlsError> {
    let builder = match now {
        Some(now) => ClientConfig::builder_with_details(provider, Arc::new(FixedTime(now))),
        None => ClientConfig::builder_with_provider(provider),
    };
    builder.with_safe_default_protocol_versions().map_err(ClientTlsError::Config)
}

fn server_name(name: &str) -> Result<ServerName<'static>, ClientTlsError> {
    // Bracketed IPv6 hosts come from URLs.
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|source| ClientTlsError::ServerName { name: name.to_owned(), source })
}

async fn handshake(config: Arc<ClientConfig>, tcp: TcpStream, name: &str) -> Result<TlsStream, ClientTlsError> {
    let name = server_name(name)?;
    let connect = TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
        .await
        .map_err(|_| ClientTlsError::Timeout(HANDSHAKE_TIMEOUT))?
        .map_err(ClientTlsError::Handshake)
}

/// The leaf certificate the server presented on this connection.
pub fn peer_certificate(stream: &TlsStream) -> Option<CertificateDer<'static>> {
    stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|leaf| leaf.clone().into_owned())
}

/// Connects to `addr`, asks for `server_name` (SNI), and returns the leaf certificate served;
/// joins nothing.
///
/// With `roots`, the certificate must verify against `roots.roots` for `server_name` (this
/// argument, not `roots.server_name`) at `now` (default: the real time). Without `roots` **any
/// certificate is accepted** (the handshake signature is still checked, so the server holds the
/// certificate's key): that mode only observes what a listener serves, e.g. to wait for a
/// rotation, and must never be used to trust a server.
pub async fn served_certificate(
    addr: SocketAddr,
    server_name: &str,
    roots: Option<&ClientTls>,
    now: Option<UnixTime>,
) -> Result<CertificateDer<'static>, ClientTlsError> {
    let config = match roots {
        Some(roots) => roots.client_config(now)?,
        None => {
            let provider = provider();
            builder(Arc::clone(&provider), now)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ObserveOnly(provider)))
                .with_no_client_auth()
        }
    };
    let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientTlsError::Timeout(HANDSHAKE_TIMEOUT))?
        .map_err(|source| ClientTlsError::Connect { addr: addr.to_string(), source })?;
    let stream = handshake(Arc::new(config), tcp, server_name).await?;
    peer_certificate(&stream).ok_or(ClientTlsError::NoPeerCertificate)
}

/// [`served_certificate`]'s lowercase hex SHA-256, the form `/v1/status` reports.
pub async fn served_certificate_sha256(
    addr: SocketAddr,
    server_name: &str,
    roots: Option<&ClientTls>,
    now: Option<UnixTime>,
) -> Result<String, ClientTlsError> {
    Ok(certificate_sha256(&served_certificate(addr, server_name, roots, now).await?))
}

/// Verification at a fixed time, e.g. a certificate's validity on the session day.
#[derive(Debug)]
struct FixedTime(UnixTime);

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// Accepts any certificate chain; checks only that the server signed the handshake with the
/// certificate's key. For observing a listener, never for trusting one.
#[derive(Debug)]
struct ObserveOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for ObserveOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        assert!(matches!(ClientTls::from_pem(b"", None), Err(ClientTlsError::NoRoots)));
        let key = rcgen::KeyPair::generate().expect("key").serialize_pem();
        assert!(matches!(ClientTls::from_pem(key.as_bytes(), None), Err(ClientTlsError::NoRoots)));
    }

    #[test]
    fn every_certificate_of_a_bundle_is_trusted_and_names_are_checked() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).expect("cert");
        let b = rcgen::generate_simple_self_signed(vec!["b.example".to_owned()]).expect("cert");
        let tls = ClientTls::from_pem(format!("{}{}", a.cert.pem(), b.cert.pem()).as_bytes(), None).expect("bundle");
        assert_eq!(tls.roots.len(), 2);
        assert!(tls.client_config(None).is_ok());
        assert!(server_name("[::1]").is_ok() && server_name("10.0.0.7").is_ok());
        assert!(matches!(server_name("not a name!"), Err(ClientTlsError::ServerName { .. })));
    }
}
