//! The entry's own certificate: a `kubernetes.io/tls` Secret mounted as a directory (`tls.crt`,
//! `tls.key`; from cert-manager or the province's CA), re-read every interval and swapped in
//! for new handshakes when it changed and is usable. A bad renewal keeps the last good one.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM CERTIFICATE")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, SEC1 or PKCS#1)")]
    NoKey { path: PathBuf },
    #[error("the private key in {path} is not usable")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the private key does not belong to the leaf certificate of {path}")]
    KeyMismatch { path: PathBuf },
    #[error("failed to build the TLS server configuration")]
    Config(#[source] rustls::Error),
}

/// Reads and checks the pair in `dir`; also returns the raw bytes, to notice a change.
fn load(dir: &Path) -> Result<(Arc<CertifiedKey>, Vec<u8>), TlsError> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source });
    let (cert_pem, key_pem) = (read(&cert_path)?, read(&key_path)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem).flatten().collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey { path: key_path.clone() })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|source| match source {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch { path: cert_path.clone() },
        source => TlsError::Key { path: key_path.clone(), source },
    })?;
    let mut raw = cert_pem;
    raw.extend_from_slice(&key_pem);
    Ok((Arc::new(certified), raw))
}

/// The certificate served now; every handshake reads it.
#[derive(Debug)]
pub struct CertificateStore {
    dir: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Vec<u8>)>,
}

impl CertificateStore {
    /// Loads `dir`; the entry does not start without a usable certificate.
    pub fn load(dir: impl Into<PathBuf>) -> Result<Arc<Self>, TlsError> {
        let dir = dir.into();
        let current = load(&dir)?;
        Ok(Arc::new(Self { dir, current: RwLock::new(current) }))
    }

    /// Re-reads the files; swaps when they changed and are usable. `Ok(true)` when swapped.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (key, raw) = load(&self.dir)?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.1 == raw {
            return Ok(false);
        }
        *current = (key, raw);
        Ok(true)
    }

    /// A server configuration answering from this store.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reloads every `interval`, forever; a failure is logged once per distinct message.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut last_error = String::new();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let store = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || store.reload()).await {
                Ok(Ok(true)) => {
                    last_error.clear();
                    tracing::info!(dir = %self.dir.display(), "certificate reloaded");
                }
                Ok(Ok(false)) => last_error.clear(),
                Ok(Err(e)) => {
                    let text = format!("{e:#}");
                    if text != last_error {
                        tracing::warn!(error = %e, "the new certificate is not usable; serving the last good one");
                        last_error = text;
                    }
                }
                Err(e) => tracing::error!(error = %e, "certificate reload task failed"),
            }
        }
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner).0))
    }
}
