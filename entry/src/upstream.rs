//! Connections to a worker: WSS for signaling and HTTPS for `/v1/join-check`, to the pod's
//! address, with the certificate checked against the operator's trust bundle for the session's
//! Service name. The bundle file is re-read for every connection: the operator rotates its CA
//! and the kubelet updates the mounted ConfigMap in place.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::routes::Upstream;

/// How long a worker may take to accept a connection and finish the handshakes.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("failed to read the trust bundle {path}")]
    ReadBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the trust bundle {path} holds no usable PEM CERTIFICATE")]
    EmptyBundle { path: PathBuf },
    #[error("{name:?} is not a valid TLS server name")]
    ServerName { name: String },
    #[error("the worker at {addr} did not answer within {DIAL_TIMEOUT:?}")]
    Timeout { addr: std::net::SocketAddr },
    #[error("failed to connect to the worker at {addr}")]
    Connect {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the WebSocket handshake with the worker at {addr} failed")]
    WebSocket {
        addr: std::net::SocketAddr,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("the join-check request to the worker failed")]
    Http(#[source] reqwest::Error),
}

impl UpstreamError {
    /// A bounded label for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ReadBundle { .. } | Self::EmptyBundle { .. } => "trust_bundle",
            Self::ServerName { .. } => "server_name",
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::WebSocket { .. } => "websocket",
            Self::Http(_) => "http",
        }
    }
}

/// The CAs worker certificates are checked against.
#[derive(Debug, Clone)]
pub struct Trust {
    bundle: PathBuf,
}

impl Trust {
    pub fn new(bundle: impl Into<PathBuf>) -> Self {
        Self { bundle: bundle.into() }
    }

    pub fn path(&self) -> &Path {
        &self.bundle
    }

    /// A client configuration trusting the bundle as it is now.
    pub async fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
        let path = self.bundle.clone();
        let pem =
            tokio::fs::read(&path).await.map_err(|source| UpstreamError::ReadBundle { path: path.clone(), source })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            // A certificate rustls cannot use is skipped; the others still verify.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(UpstreamError::EmptyBundle { path });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| UpstreamError::EmptyBundle { path: self.bundle.clone() })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

pub type WorkerSocket = WebSocketStream<TlsStream<TcpStream>>;

/// Opens `wss://<server name>/v1/ws` on the worker's address.
pub async fn connect(upstream: &Upstream, trust: &Trust, max_message: usize) -> Result<WorkerSocket, UpstreamError> {
    let config = trust.client_config().await?;
    let name = ServerName::try_from(upstream.server_name.clone())
        .map_err(|_| UpstreamError::ServerName { name: upstream.server_name.clone() })?;
    let addr = upstream.addr;
    let dial = async {
        let tcp = TcpStream::connect(addr).await.map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let url = format!("wss://{}/v1/ws", upstream.server_name);
        let request = url.into_client_request().map_err(|e| UpstreamError::WebSocket { addr, source: Box::new(e) })?;
        let ws_config =
            WebSocketConfig::default().max_message_size(Some(max_message)).max_frame_size(Some(max_message));
        let (socket, _) = tokio_tungstenite::client_async_with_config(request, tls, Some(ws_config))
            .await
            .map_err(|e| UpstreamError::WebSocket { addr, source: Box::new(e) })?;
        Ok(socket)
    };
    tokio::time::timeout(DIAL_TIMEOUT, dial).await.map_err(|_| UpstreamError::Timeout { addr })?
}

/// Forwards a `/v1/join-check` body to the worker; returns its status and body.
pub async fn join_check(upstream: &Upstream, trust: &Trust, body: Vec<u8>) -> Result<(u16, Vec<u8>), UpstreamError> {
    let config = trust.client_config().await?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*config).clone())
        .resolve(&upstream.server_name, upstream.addr)
        .timeout(DIAL_TIMEOUT)
        .build()
        .map_err(UpstreamError::Http)?;
    let url = format!("https://{}:{}/v1/join-check", upstream.server_name, upstream.addr.port());
    let response =
        client.post(url).header("content-type", "application/json").body(body).send().await.map_err(|e| {
            if e.is_timeout() {
                UpstreamError::Timeout { addr: upstream.addr }
            } else {
                UpstreamError::Http(e)
            }
        })?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(UpstreamError::Http)?;
    Ok((status, body.to_vec()))
}
