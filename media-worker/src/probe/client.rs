//! A small signaling client: typed requests matched to replies by `requestId`, pushes kept in
//! order for whoever asks next. Used by the probe and by the integration tests.

use crate::signaling::protocol::{ClientEnvelope, ClientMessage, ErrorCode, RequestId, ServerEnvelope, ServerMessage};
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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

#[derive(Debug)]
pub struct SignalingClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_request: u64,
    backlog: VecDeque<ServerEnvelope>,
    timeout: Duration,
}

impl SignalingClient {
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let connect = tokio_tungstenite::connect_async(url);
        let (ws, _response) = tokio::time::timeout(DEFAULT_TIMEOUT, connect)
            .await
            .map_err(|_| ClientError::Timeout(DEFAULT_TIMEOUT))?
            .map_err(|e| ClientError::Connect { url: url.to_owned(), source: Box::new(e) })?;
        Ok(Self { ws, next_request: 1, backlog: VecDeque::new(), timeout: DEFAULT_TIMEOUT })
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
