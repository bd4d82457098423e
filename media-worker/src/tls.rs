//! The certificate the worker serves over TLS, and its reloading from a Secret volume.
//!
//! A session's signaling certificate is a `kubernetes.io/tls` Secret mounted as a directory
//! (`tls.crt`, `tls.key`). The worker starts before that Secret exists (warm workers wait for a
//! session), and the kubelet later rotates the files in place by swapping a `..data` symlink. So
//! the TLS listener binds with no certificate at all and answers handshakes from whatever
//! [`CertificateStore`] holds at that moment; a [`Reloader`] re-reads the two files every interval
//! and swaps a new key in only when they changed, parse and belong together.
//!
//! ```text
//! tls.crt, tls.key ──every interval──> Reloader ──usable──> CertificateStore ──> each new handshake
//!                                          └──not usable──> warning (once per content), counted;
//!                                                           the current certificate stays
//! ```

use crate::metrics::Metrics;
use crate::verification::TlsStatus;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// The expiry gauge has no labels; a vector of them only so the series can be absent.
const NO_LABELS: &[&str] = &[];

/// File names of a `kubernetes.io/tls` Secret.
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
    #[error("{present} is there but {missing} is not")]
    Partial { present: PathBuf, missing: PathBuf },
    #[error("the certificate file holds no PEM CERTIFICATE")]
    NoCertificate,
    #[error("the certificate file is not valid PEM")]
    CertificatePem(#[source] rustls::pki_types::pem::Error),
    #[error("the key file holds no PEM private key (PKCS#8, SEC1 or PKCS#1)")]
    KeyPem(#[source] rustls::pki_types::pem::Error),
    #[error("the private key is not usable")]
    Key(#[source] rustls::Error),
    #[error("the leaf certificate is not a valid X.509 certificate")]
    Certificate(#[source] rustls::Error),
    #[error("the private key does not belong to the leaf certificate")]
    KeyMismatch,
    #[error("failed to build the TLS server configuration")]
    Config(#[source] rustls::Error),
}

/// The crate is built without a process-wide rustls provider; every config names ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lowercase hex SHA-256 of a certificate's DER: what `/v1/status` reports and what the operator
/// compares with its Secret.
pub fn certificate_sha256(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// A certificate chain and its key, checked to belong together.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    certified: Arc<CertifiedKey>,
    /// [`certificate_sha256`] of the leaf.
    pub sha256: String,
    /// The leaf's notAfter, Unix seconds.
    pub not_after: Option<i64>,
}

impl LoadedCertificate {
    /// Parses a PEM chain (leaf first) and a PEM private key, and checks that the key is the
    /// leaf's: a mismatched pair would fail every handshake, so it must never replace a good one.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(TlsError::CertificatePem)?;
        let leaf = chain.first().ok_or(TlsError::NoCertificate)?;
        let sha256 = certificate_sha256(leaf);
        let not_after = x509_parser::parse_x509_certificate(leaf)
            .ok()
            .map(|(_, certificate)| certificate.validity().not_after.timestamp());
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::KeyPem)?;
        let signing_key = provider().key_provider.load_private_key(key).map_err(TlsError::Key)?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            // ring always knows its keys' public half, so "unknown" cannot be waved through.
            Err(rustls::Error::InconsistentKeys(_)) => return Err(TlsError::KeyMismatch),
            Err(other) => return Err(TlsError::Certificate(other)),
        }
        Ok(Self { certified: Arc::new(certified), sha256, not_after })
    }

    /// Reads and parses a certificate and key file.
    pub async fn from_files(files: &TlsFiles) -> Result<Self, TlsError> {
        let read = |path: PathBuf| async move {
            tokio::fs::read(&path).await.map_err(|source| TlsError::Read { path: path.clone(), source })
        };
        let cert = read(files.cert.clone()).await?;
        let key = read(files.key.clone()).await?;
        Self::from_pem(&cert, &key)
    }
}

/// Where the certificate and key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `tls.crt` and `tls.key` in a Secret volume.
    pub fn in_dir(dir: &Path) -> Self {
        Self { cert: dir.join(CERT_FILE), key: dir.join(KEY_FILE) }
    }
}

#[derive(Debug)]
struct Current {
    certified: Arc<CertifiedKey>,
    status: TlsStatus,
}

/// The certificate served to new TLS connections; empty until one is loaded. Connections keep
/// the certificate they were opened with.
#[derive(Debug, Default)]
pub struct CertificateStore {
    current: RwLock<Option<Current>>,
}

impl CertificateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `loaded` from the next handshake on, and records it in the metrics.
    pub fn install(&self, loaded: LoadedCertificate, metrics: &Metrics) {
        let status = TlsStatus { sha256: loaded.sha256, loaded_at: jiff::Timestamp::now() };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Current { certified: loaded.certified, status });
        metrics.tls_reloads.with_label_values(&["loaded"]).inc();
        metrics.tls_certificate_loaded.set(1);
        match loaded.not_after {
            Some(not_after) => metrics.tls_certificate_expiry.with_label_values(NO_LABELS).set(not_after),
            None => metrics.tls_certificate_expiry.reset(),
        }
    }

    /// What `/v1/status` says about the served certificate; `None` while there is none.
    pub fn status(&self) -> Option<TlsStatus> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).as_ref().map(|c| c.status.clone())
    }

    /// A TLS server configuration that asks this store for the certificate at each handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        // What axum-server sets for its own configs: browsers may use HTTP/2 for the page and
        // fall back to HTTP/1.1 for the WebSocket.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let certified = current.as_ref().map(|c| Arc::clone(&c.certified));
        if certified.is_none() {
            // Expected on a warm worker (its session's Secret does not exist yet): not a warning.
            tracing::debug!(sni = ?client_hello.server_name(), "TLS handshake refused: no certificate loaded yet");
        }
        certified
    }
}

/// One file as last read, compared as a whole to notice any change, including to an error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileState {
    Missing,
    Unreadable(String),
    Bytes(Vec<u8>),
}

async fn read_state(path: &Path) -> FileState {
    match tokio::fs::read(path).await {
        Ok(bytes) => FileState::Bytes(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Missing,
        Err(e) => FileState::Unreadable(e.to_string()),
    }
}

/// What one look at the directory found.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// Same content as last time (loaded, refused or absent then).
    Unchanged,
    /// The certificate changed between two reads of this pass (a swap in progress); the next
    /// pass reads it settled.
    Changing,
    /// Neither file exists: a warm worker whose session's Secret is not there yet.
    Absent,
    /// A new certificate is served from now on.
    Loaded { sha256: String },
    /// The new content is not usable; the current certificate stays.
    Invalid(TlsError),
}

/// Watches a certificate and key file and installs each new usable pair in a store.
#[derive(Debug)]
pub struct Reloader {
    files: TlsFiles,
    store: Arc<CertificateStore>,
    metrics: Metrics,
    last_seen: Option<(FileState, FileState)>,
}

impl Reloader {
    pub fn new(files: TlsFiles, store: Arc<CertificateStore>, metrics: Metrics) -> Self {
        Self { files, store, metrics, last_seen: None }
    }

    /// Reads the files once and acts on what changed: installs, or warns and counts.
    pub async fn check(&mut self) -> ReloadOutcome {
        let outcome = self.look().await;
        match &outcome {
            ReloadOutcome::Loaded { sha256 } => {
                tracing::info!(sha256 = %sha256, cert = %self.files.cert.display(), "serving a new TLS certificate");
            }
            ReloadOutcome::Invalid(error) => {
                self.metrics.tls_reloads.with_label_values(&["invalid"]).inc();
                tracing::warn!(
                    cert = %self.files.cert.display(),
                    key = %self.files.key.display(),
                    reason = %tiepdan_telemetry::error_chain(error),
                    "keeping the current TLS certificate: the new files are not usable"
                );
            }
            ReloadOutcome::Absent if self.store.status().is_some() => {
                tracing::warn!(cert = %self.files.cert.display(), "the TLS files are gone; keeping the current certificate");
            }
            ReloadOutcome::Absent => tracing::debug!(cert = %self.files.cert.display(), "no TLS certificate yet"),
            ReloadOutcome::Changing => tracing::debug!("the TLS files are being replaced; reading them next time"),
            ReloadOutcome::Unchanged => {}
        }
        outcome
    }

    async fn look(&mut self) -> ReloadOutcome {
        // Reading the certificate again after the key catches a swap between the two reads,
        // which would otherwise pair the old certificate with the new key and be refused as
        // a mismatch.
        let cert = read_state(&self.files.cert).await;
        let key = read_state(&self.files.key).await;
        if read_state(&self.files.cert).await != cert {
            return ReloadOutcome::Changing;
        }
        let seen = (cert, key);
        if self.last_seen.as_ref() == Some(&seen) {
            return ReloadOutcome::Unchanged;
        }
        self.last_seen = Some(seen.clone());
        let (cert, key) = match seen {
            (FileState::Missing, FileState::Missing) => return ReloadOutcome::Absent,
            (FileState::Bytes(cert), FileState::Bytes(key)) => (cert, key),
            (FileState::Unreadable(reason), _) => return self.unreadable(&self.files.cert, reason),
            (_, FileState::Unreadable(reason)) => return self.unreadable(&self.files.key, reason),
            (FileState::Missing, FileState::Bytes(_)) => {
                return ReloadOutcome::Invalid(TlsError::Partial {
                    present: self.files.key.clone(),
                    missing: self.files.cert.clone(),
                })
            }
            (FileState::Bytes(_), FileState::Missing) => {
                return ReloadOutcome::Invalid(TlsError::Partial {
                    present: self.files.cert.clone(),
                    missing: self.files.key.clone(),
                })
            }
        };
        match LoadedCertificate::from_pem(&cert, &key) {
            Ok(loaded) => {
                let sha256 = loaded.sha256.clone();
                self.store.install(loaded, &self.metrics);
                ReloadOutcome::Loaded { sha256 }
            }
            Err(error) => ReloadOutcome::Invalid(error),
        }
    }

    fn unreadable(&self, path: &Path, reason: String) -> ReloadOutcome {
        ReloadOutcome::Invalid(TlsError::Read { path: path.to_owned(), source: std::io::Error::other(reason) })
    }

    /// Checks every `interval` until `stop` turns true (or its sender is gone).
    pub async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.check().await;
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("cert");
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    #[test]
    fn the_digest_is_sha256_over_the_leaf_der() {
        let (cert, key) = self_signed("a.example");
        let loaded = LoadedCertificate::from_pem(cert.as_bytes(), key.as_bytes()).expect("load");
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("der");
        assert_eq!(loaded.sha256, certificate_sha256(&der));
        assert_eq!(loaded.sha256.len(), 64);
        assert!(loaded.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // The well-known digest of the empty input pins the algorithm and the encoding.
        assert_eq!(certificate_sha256(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(loaded.not_after.is_some_and(|t| t > 1_700_000_000));
    }

    /// Made with openssl (`ecparam -genkey -noout`, `genrsa -traditional`, `req -x509`): the
    /// key formats a Secret may hold besides rcgen's PKCS#8, and digests computed by another tool
    /// (`openssl x509 -fingerprint -sha256`). Test keys only.
    #[test]
    fn sec1_and_pkcs1_keys_load_and_digests_match_openssl() {
        let cases = [
            (
                include_str!("testdata/ec-sec1.crt"),
                include_str!("testdata/ec-sec1.key"),
                "3d9f0b91f5478480dd04fbb7fee6478505f0e1695a49013f8b2a35776cd71376",
            ),
            (
                include_str!("testdata/rsa-pkcs1.crt"),
                include_str!("testdata/rsa-pkcs1.key"),
                "501c6c4cd0588edfe5a91a879f2f7558d188ae4135f8ce34980a9bdc1ed595e6",
            ),
        ];
        for (cert, key, sha256) in cases {
            let loaded = LoadedCertificate::from_pem(cert.as_bytes(), key.as_bytes()).expect("load");
            assert_eq!(loaded.sha256, sha256);
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = self_signed("a.example");
        let (_, other_key) = self_signed("b.example");
        let refused = LoadedCertificate::from_pem(cert.as_bytes(), other_key.as_bytes()).expect_err("mismatch");
        assert!(matches!(refused, TlsError::KeyMismatch), "{refused:?}");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let (cert, key) = self_signed("a.example");
        assert!(matches!(LoadedCertificate::from_pem(b"", key.as_bytes()), Err(TlsError::NoCertificate)));
        assert!(matches!(LoadedCertificate::from_pem(cert.as_bytes(), b"not a key"), Err(TlsError::KeyPem(_))));
        let truncated = &cert.as_bytes()[..cert.len() / 2];
        assert!(LoadedCertificate::from_pem(truncated, key.as_bytes()).is_err());
    }

    #[test]
    fn an_empty_store_serves_nothing_and_reports_nothing() {
        let store = CertificateStore::new();
        assert!(store.status().is_none());
    }

    /// Each distinct content is judged once: an invalid file is warned about and counted once,
    /// however many intervals it stays.
    #[tokio::test]
    async fn the_reloader_judges_each_content_once_and_keeps_the_last_good_pair() {
        let dir = std::env::temp_dir().join(format!("tiepdan-reloader-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = TlsFiles::in_dir(&dir);
        let store = Arc::new(CertificateStore::new());
        let metrics = Metrics::new().expect("metrics");
        let mut reloader = Reloader::new(files.clone(), Arc::clone(&store), metrics.clone());
        let invalid = || metrics.tls_reloads.with_label_values(&["invalid"]).get();

        // A missing directory is a warm worker too.
        assert!(matches!(reloader.check().await, ReloadOutcome::Absent));
        assert!(matches!(reloader.check().await, ReloadOutcome::Unchanged));
        std::fs::create_dir_all(&dir).expect("dir");

        let (cert, key) = self_signed("a.example");
        std::fs::write(&files.cert, &cert).expect("cert");
        assert!(matches!(reloader.check().await, ReloadOutcome::Invalid(TlsError::Partial { .. })));
        assert!(matches!(reloader.check().await, ReloadOutcome::Unchanged));
        assert_eq!(invalid(), 1);

        std::fs::write(&files.key, &key).expect("key");
        let ReloadOutcome::Loaded { sha256 } = reloader.check().await else {
            panic!("a good pair loads");
        };
        assert_eq!(store.status().map(|s| s.sha256), Some(sha256.clone()));
        assert_eq!(metrics.tls_certificate_loaded.get(), 1);

        let (_, other_key) = self_signed("b.example");
        std::fs::write(&files.key, &other_key).expect("key");
        assert!(matches!(reloader.check().await, ReloadOutcome::Invalid(TlsError::KeyMismatch)));
        assert!(matches!(reloader.check().await, ReloadOutcome::Unchanged));
        assert_eq!(invalid(), 2);
        assert_eq!(store.status().map(|s| s.sha256), Some(sha256.clone()), "the good pair stays");

        std::fs::remove_dir_all(&dir).expect("remove");
        assert!(matches!(reloader.check().await, ReloadOutcome::Absent));
        assert_eq!(store.status().map(|s| s.sha256), Some(sha256), "still served after the files went");
        assert_eq!(invalid(), 2);
    }
}
