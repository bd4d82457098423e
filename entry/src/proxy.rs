//! One signaling connection through the entry: read the first frame, route it, open the worker,
//! replay the frame, then pipe frames both ways until either side ends.
//!
//! ```text
//!  first frame ── too large / not JSON / not join / no session ──► error frame, close
//!      │ session id
//!  routes ── unknown session ──► session_closed, close (the console gives up)
//!      │  └─ no worker ready ──► session_not_allocated, close (the console retries)
//!  dial worker ── fails ───────► session_not_allocated, close (the console retries)
//!      │
//!  replay the first frame, pipe; the worker's close (code, reason) reaches the console
//! ```
//!
//! When the worker dies the console sees the socket close, reconnects to the entry with the same
//! token, and lands on whatever worker serves the session then.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt as _, StreamExt as _};
use std::sync::Arc;
use std::time::Duration;
use tiepdan_contract::ErrorCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as WorkerCloseFrame;
use tokio_tungstenite::tungstenite::Message as WorkerMessage;

use crate::first_frame::{self, error_frame, FirstFrameError};
use crate::routes::Routes;
use crate::upstream::{self, Trust};

/// How long a client may take to send its join after the upgrade.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest frame either way after the join: the worker's own hard limit (4 × 64 KiB), so it
/// is the worker that answers frames between its soft and hard limits.
pub const MAX_FRAME: usize = 4 * first_frame::FIRST_FRAME_LIMIT;

/// WebSocket close codes (RFC 6455 §7.4.1).
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_TRY_AGAIN: u16 = 1013;

/// What every connection shares.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub routes: Routes,
    pub trust: Trust,
}

/// Serves one upgraded client socket until it ends.
pub async fn run(mut client: WebSocket, proxy: Arc<Proxy>) {
    let first = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, client.recv()).await {
        Err(_) => {
            refuse(client, None, ErrorCode::NotJoined, "send join first", CLOSE_POLICY).await;
            return;
        }
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Ok(Message::Binary(_)))) => {
            let e = FirstFrameError::Binary;
            refuse(client, None, e.code(), &e.to_string(), CLOSE_POLICY).await;
            return;
        }
        Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {
            refuse(client, None, ErrorCode::NotJoined, "send join first", CLOSE_POLICY).await;
            return;
        }
    };
    let join = match first_frame::parse(first.as_str()) {
        Ok(join) => join,
        Err(refusal) => {
            tracing::info!(reason = refusal.error.reason(), "first frame refused");
            let close = if refusal.error.code() == ErrorCode::FrameTooLarge { CLOSE_TOO_BIG } else { CLOSE_POLICY };
            refuse(client, refusal.request_id.as_ref(), refusal.error.code(), &refusal.error.to_string(), close).await;
            return;
        }
    };
    let upstream = match proxy.routes.find(&join.session).await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::info!(session = %join.session, reason = e.reason(), error = %e, "not routed");
            let close = if e.code() == ErrorCode::SessionClosed { CLOSE_POLICY } else { CLOSE_TRY_AGAIN };
            refuse(client, join.request_id.as_ref(), e.code(), &e.public_message(), close).await;
            return;
        }
    };
    let worker = match upstream::connect(&upstream, &proxy.trust, MAX_FRAME).await {
        Ok(worker) => worker,
        Err(e) => {
            tracing::warn!(session = %join.session, worker = %upstream.addr, reason = e.reason(), error = %e, "worker unreachable");
            let message = "the session's worker does not answer; the console tries again";
            refuse(client, join.request_id.as_ref(), ErrorCode::SessionNotAllocated, message, CLOSE_TRY_AGAIN).await;
            return;
        }
    };
    tracing::info!(session = %join.session, worker = %upstream.addr, "routed");
    pipe(client, worker, first.as_str().to_owned()).await;
    tracing::debug!(session = %join.session, worker = %upstream.addr, "connection ended");
}

/// Sends an error frame and closes.
async fn refuse(
    mut client: WebSocket,
    request_id: Option<&serde_json::Value>,
    code: ErrorCode,
    message: &str,
    close: u16,
) {
    let frame = error_frame(request_id, code, message);
    if client.send(Message::Text(frame.into())).await.is_ok() {
        let reason = Utf8Bytes::from_static("refused by the entry");
        let _ = client.send(Message::Close(Some(CloseFrame { code: close, reason }))).await;
    }
}

/// Replays the join to the worker, then copies frames both ways. Ends when either side closes
/// or fails; the other side is then closed too (with the worker's close code, when it closed).
async fn pipe(client: WebSocket, worker: upstream::WorkerSocket, first: String) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_worker, mut from_worker) = worker.split();
    if to_worker.send(WorkerMessage::text(first)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = from_client.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if to_worker.send(WorkerMessage::text(text.as_str())).await.is_err() { break; }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if to_worker.send(WorkerMessage::binary(bytes)).await.is_err() { break; }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.map(|f| WorkerCloseFrame { code: CloseCode::from(f.code), reason: f.reason.as_str().into() });
                    let _ = to_worker.send(WorkerMessage::Close(frame)).await;
                    break;
                }
                None | Some(Err(_)) => {
                    let _ = to_worker.close().await;
                    break;
                }
            },
            frame = from_worker.next() => match frame {
                Some(Ok(WorkerMessage::Text(text))) => {
                    if to_client.send(Message::Text(text.as_str().into())).await.is_err() { break; }
                }
                Some(Ok(WorkerMessage::Binary(bytes))) => {
                    if to_client.send(Message::Binary(bytes)).await.is_err() { break; }
                }
                Some(Ok(WorkerMessage::Ping(_) | WorkerMessage::Pong(_) | WorkerMessage::Frame(_))) => {}
                Some(Ok(WorkerMessage::Close(frame))) => {
                    let frame = frame.map(|f| CloseFrame { code: u16::from(f.code), reason: f.reason.as_str().into() });
                    let _ = to_client.send(Message::Close(frame)).await;
                    break;
                }
                None | Some(Err(_)) => {
                    // The worker went away without a close (killed, node lost): "going away"
                    // tells the console to reconnect, which lands on the next worker.
                    let reason = Utf8Bytes::from_static("the worker went away");
                    let _ = to_client.send(Message::Close(Some(CloseFrame { code: 1001, reason }))).await;
                    break;
                }
            },
        }
    }
    let _ = to_client.close().await;
}
