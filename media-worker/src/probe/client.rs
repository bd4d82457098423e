//! A small signaling client: typed requests matched to replies by `requestId`, pushes kept in
//! order for whoever asks next. Used by the probe and by the integration tests.
//!
//! `ws://` is plain TCP; `wss://` needs a [`ClientTls`] (it trusts only the roots given there,
//! never the system's, since a worker's certificate comes from the session's own CA).

use super::tls::{self as client_tls, ClientTls, ClientTlsError, TlsStream};
use crate::signaling::protocol::{ClientEnvelope, ClientMessage, ErrorCode, RequestId, ServerEnvelope, ServerMessage};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::CertificateDer;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long one request or wait may take before the client gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("{url} is wss:// but no CA bundle was given to verify it")]
    TlsRequired { url: String },
    #[error("failed to set up TLS with {url}")]
    Tls {
        url: String,
        #[source]
        source: ClientTlsError,
    },
    #[error("the WebSocket failed")]
    Socket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("the worker closed the connection (code {code:?}: {reason})")]
    Closed { code: Option<u16>, reason: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("failed to decode a worker message")]
    Decode(#[source] serde_json::Error),
    #[error("the worker refused the request: {code:?}: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The worker's error code, when the worker refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The byte stream under the WebSocket.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[derive(Debug)]
pub struct SignalingClient {
    ws: WebSocketStream<Transport>,
    /// The leaf certificate the worker presented (`wss://` only).
    peer_certificate: Option<CertificateDer<'static>>,
    next_request: u64,
    backlog: VecDeque<ServerEnvelope>,
    timeout: Duration,
}

impl SignalingClient {
    /// Connects to a `ws://` URL (`wss://` needs [`Self::connect_with`]).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, None).await
    }

    /// Connects to the URL's host and port; for `wss://`, verifies the worker's certificate
    /// against `tls`'s roots only, for `tls.server_name` if set, else for the URL's host.
    pub async fn connect_with(url: &str, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        tokio::time::timeout(DEFAULT_TIMEOUT, Self::open(url, tls))
            .await
            .map_err(|_| ClientError::Timeout(DEFAULT_TIMEOUT))?
    }

    async fn open(url: &str, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let connect_error = |e| ClientError::Connect { url: url.to_owned(), source: Box::new(e) };
        let request = url.into_client_request().map_err(connect_error)?;
        let uri = request.uri();
        let secure = matches!(
            tokio_tungstenite::tungstenite::client::uri_mode(uri).map_err(connect_error)?,
            tokio_tungstenite::tungstenite::stream::Mode::Tls
        );
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        // `Uri::host` keeps IPv6 brackets; the socket address wants them off.
        let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let tcp = TcpStream::connect((bare_host.as_str(), port))
            .await
            .map_err(|e| connect_error(tokio_tungstenite::tungstenite::Error::Io(e)))?;
        let (transport, peer_certificate) = if secure {
            let tls = tls.ok_or_else(|| ClientError::TlsRequired { url: url.to_owned() })?;
            let stream = tls
                .handshake(tcp, &bare_host)
                .await
                .map_err(|source| ClientError::Tls { url: url.to_owned(), source })?;
            let leaf = client_tls::peer_certificate(&stream);
            (Transport::Tls(Box::new(stream)), leaf)
        } else {
            (Transport::Plain(tcp), None)
        };
        let (ws, _response) = tokio_tungstenite::client_async(request, transport).await.map_err(connect_error)?;
        Ok(Self { ws, peer_certificate, next_request: 1, backlog: VecDeque::new(), timeout: DEFAULT_TIMEOUT })
    }

    /// The leaf certificate the worker presented; `None` over `ws://`.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificate.as_ref()
    }

    /// Lowercase hex SHA-256 of [`Self::peer_certificate`], as `/v1/status` reports it.
    pub fn peer_certificate_sha256(&self) -> Option<String> {
        self.peer_certificate.as_ref().map(|der| crate::tls::certificate_sha256(der))
    }

    /// Sends a message and returns the reply carrying the same `requestId`. An `error` reply
    /// becomes [`ClientError::Refused`]; pushes seen meanwhile are kept for [`Self::next`].
    pub async fn request(&mut self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        let request_id = RequestId::Number(self.next_request);
        self.next_request += 1;
        let envelope = ClientEnvelope { request_id: Some(request_id.clone()), message };
        let text = serde_json::to_string(&envelope).map_err(ClientError::Decode)?;
        self.send_text(text).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let envelope = self.receive(deadline).await?;
            if envelope.request_id.as_ref() == Some(&request_id) {
                return match envelope.message {
                    ServerMessage::Error { code, message } => Err(ClientError::Refused { code, message }),
                    other => Ok(other),
                };
            }
            self.backlog.push_back(envelope);
        }
    }

    /// Sends raw text, e.g. deliberately malformed frames in tests.
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.send(Message::text(text)).await.map_err(|e| ClientError::Socket(Box::new(e)))
    }

    /// The next message: a kept push first, otherwise the next frame from the worker.
    pub async fn next(&mut self) -> Result<ServerEnvelope, ClientError> {
        if let Some(envelope) = self.backlog.pop_front() {
            return Ok(envelope);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.receive(deadline).await
    }

    /// The pushes kept while waiting for replies, without waiting for more. Everything the worker
    /// queued before the last reply is among them.
    pub fn take_backlog(&mut self) -> Vec<ServerEnvelope> {
        self.backlog.drain(..).collect()
    }

    /// Skips messages until one matches; the skipped ones are dropped.
    pub async fn wait_for(
        &mut self,
        mut matches: impl FnMut(&ServerMessage) -> bool,
    ) -> Result<ServerMessage, ClientError> {
        loop {
            let envelope = self.next().await?;
            if matches(&envelope.message) {
                return Ok(envelope.message);
            }
        }
    }

    /// Waits for the worker to close the connection, returning the close code.
    pub async fn wait_closed(&mut self) -> Result<Option<u16>, ClientError> {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(ClientError::Closed { code, .. }) => return Ok(code),
                Err(e) => return Err(e),
            }
        }
    }

    async fn receive(&mut self, deadline: tokio::time::Instant) -> Result<ServerEnvelope, ClientError> {
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))?;
            match frame {
                None => return Err(ClientError::Closed { code: None, reason: String::new() }),
                Some(Err(e)) => return Err(ClientError::Socket(Box::new(e))),
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).map_err(ClientError::Decode)
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    })
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Closes the WebSocket politely.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}
