//! One WebSocket signaling connection: parse each frame once, check the connection's state
//! (joined or not), call the room, answer.
//!
//! The connection ends when the client leaves or disconnects, when the room kicks it (replaced by
//! a newer connection of the same point, session closed, token revoked) or when the worker stops.

use crate::metrics::Metrics;
use crate::registry::{Joined, Registry};
use crate::room::{Kick, Room, RoomError};
use crate::signaling::protocol::{
    parse_client_frame, ClientEnvelope, ClientMessage, ErrorCode, RequestId, ServerEnvelope, ServerMessage,
    MAX_MESSAGE_BYTES,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

/// WebSocket close codes (RFC 6455 §7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;

/// The transport-level cap given to axum: frames between [`MAX_MESSAGE_BYTES`] and this get a
/// `frame_too_large` error and the connection stays usable; beyond it the WebSocket layer refuses
/// to buffer the frame and the connection is closed.
pub const HARD_FRAME_LIMIT: usize = 4 * MAX_MESSAGE_BYTES;

/// What the shared parts of the server give each connection.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    /// Becomes true when the worker stops; every connection then closes.
    pub stop: watch::Receiver<bool>,
}

/// Why the read loop ended.
enum End {
    /// The client closed or the socket failed: nothing more to send.
    Gone,
    /// Close with this code after sending what is queued.
    Close(u16, &'static str),
}

struct Connection {
    ctx: SessionContext,
    outbox: mpsc::UnboundedSender<ServerEnvelope>,
    joined: Option<JoinedState>,
}

struct JoinedState {
    // Dropping the membership leaves the room.
    membership: crate::registry::Membership,
    kicked: oneshot::Receiver<Kick>,
    /// When the token expires and the connection is closed.
    expires: tokio::time::Instant,
}

impl JoinedState {
    fn room(&self) -> &Arc<Room> {
        self.membership.room()
    }
}

/// Serves one upgraded WebSocket until it ends.
pub async fn run(socket: WebSocket, ctx: SessionContext) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outbox_rx) = mpsc::unbounded_channel::<ServerEnvelope>();
    let mut stop = ctx.stop.clone();
    let mut conn = Connection { ctx, outbox, joined: None };

    let end = loop {
        let expires = conn.joined.as_ref().map(|j| j.expires);
        let kicked = async {
            match conn.joined.as_mut() {
                Some(joined) => tokio::select! {
                    why = &mut joined.kicked => why.ok(),
                    () = tokio::time::sleep_until(expires.unwrap_or_else(tokio::time::Instant::now)) => {
                        Some(Kick::TokenExpired)
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = stream.next() => match frame {
                None | Some(Ok(Message::Close(_))) => break End::Gone,
                Some(Ok(Message::Text(text))) => {
                    if let Some(end) = conn.on_text(text.as_str()).await {
                        break end;
                    }
                }
                Some(Ok(Message::Binary(_))) => conn.send_error(
                    None,
                    ErrorCode::MalformedMessage,
                    "binary frames are not supported; send JSON text frames",
                ),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => {
                    // axum reports an over-limit frame as a read error, tungstenite's capacity
                    // error inside; everything else is a broken connection.
                    if over_limit(e) {
                        conn.send_error(
                            None,
                            ErrorCode::FrameTooLarge,
                            format!("frames are limited to {MAX_MESSAGE_BYTES} bytes"),
                        );
                        break End::Close(CLOSE_TOO_BIG, "frame too large");
                    }
                    break End::Gone;
                }
            },
            Some(envelope) = outbox_rx.recv() => {
                if send(&mut sink, &envelope).await.is_err() {
                    break End::Gone;
                }
            }
            why = kicked => {
                let why = why.unwrap_or(Kick::SessionClosed);
                conn.send_error(None, why.code(), why.message());
                let code = if why == Kick::Shutdown { CLOSE_GOING_AWAY } else { CLOSE_POLICY };
                break End::Close(code, why.message());
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    conn.send_error(None, Kick::Shutdown.code(), Kick::Shutdown.message());
                    break End::Close(CLOSE_GOING_AWAY, Kick::Shutdown.message());
                }
            }
        }
    };

    // Leave the room before flushing, so other points hear about it promptly.
    conn.joined = None;
    let Connection { outbox, .. } = conn;
    drop(outbox);
    if let End::Close(code, reason) = end {
        while let Ok(envelope) = outbox_rx.try_recv() {
            if send(&mut sink, &envelope).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
    let _ = sink.close().await;
}

/// The most freezes one report may add: a console reports every few seconds, and a picture cannot
/// freeze more often than a few times a second.
const MAX_FREEZES_PER_REPORT: u32 = 1000;
/// The most frozen time one report may add, seconds: a report covers seconds, not hours.
const MAX_FREEZE_SECONDS_PER_REPORT: f64 = 3600.0;

/// The `(session, point)` labels a quality report counts under, or why it is refused: a probe is
/// not a reception point (its traffic must not show in any point's figures), and the figures must
/// be plausible so one console cannot skew the session's dashboard without bound.
fn quality_report(joined: &JoinedState, freezes: u32, freeze_seconds: f64) -> Result<(String, String), String> {
    let key = joined.membership.key();
    if key.class == crate::room::Class::Probe {
        return Err("a probe is not a reception point and reports no picture quality".to_owned());
    }
    if freezes > MAX_FREEZES_PER_REPORT {
        return Err(format!("freezes: at most {MAX_FREEZES_PER_REPORT} per report, got {freezes}"));
    }
    if !(0.0..=MAX_FREEZE_SECONDS_PER_REPORT).contains(&freeze_seconds) {
        return Err(format!("freezeSeconds: between 0 and {MAX_FREEZE_SECONDS_PER_REPORT}, got {freeze_seconds}"));
    }
    Ok((joined.room().session().to_string(), key.point.to_string()))
}

async fn send<S>(sink: &mut S, envelope: &ServerEnvelope) -> Result<(), ()>
where
    S: futures::Sink<Message> + Unpin,
{
    let text = match serde_json::to_string(envelope) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "failed to serialize a signaling message");
            return Ok(());
        }
    };
    sink.send(Message::Text(text.into())).await.map_err(|_| ())
}

impl Connection {
    fn reply(&self, request_id: Option<RequestId>, message: ServerMessage) {
        if let ServerMessage::Error { code, .. } = &message {
            self.ctx.metrics.count_error(*code);
        }
        let _ = self.outbox.send(ServerEnvelope { request_id, message });
    }

    fn send_error(&self, request_id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) {
        self.reply(request_id, ServerMessage::error(code, message));
    }

    async fn on_text(&mut self, text: &str) -> Option<End> {
        match parse_client_frame(text) {
            Ok(envelope) => self.on_message(envelope).await,
            Err(failure) => {
                self.send_error(failure.request_id, failure.code, failure.message);
                None
            }
        }
    }

    /// One span per client message, exported over OTLP when configured; its `trace_id` field
    /// links the JSON log lines written while handling it to the trace.
    async fn on_message(&mut self, envelope: ClientEnvelope) -> Option<End> {
        let point = self.joined.as_ref().map(|j| j.membership.key().point.to_string());
        let span = tracing::info_span!(
            "signaling",
            action = envelope.message.action(),
            point = point.as_deref().unwrap_or(""),
            trace_id = tracing::field::Empty,
        );
        if let Some(id) = tiepdan_telemetry::trace_id(&span) {
            span.record("trace_id", id);
        }
        self.handle(envelope).instrument(span).await
    }

    async fn handle(&mut self, envelope: ClientEnvelope) -> Option<End> {
        let ClientEnvelope { request_id, message } = envelope;
        match message {
            ClientMessage::Join { token } => {
                self.join(request_id, &token).await;
                None
            }
            ClientMessage::Leave => {
                if self.joined.take().is_some() {
                    self.reply(request_id, ServerMessage::Left);
                    Some(End::Close(CLOSE_NORMAL, "left"))
                } else {
                    self.send_error(request_id, ErrorCode::NotJoined, "join first");
                    None
                }
            }
            ClientMessage::ReportChecks { checks } => {
                let Some(joined) = self.joined.as_ref() else {
                    self.send_error(request_id, ErrorCode::NotJoined, "join first");
                    return None;
                };
                match joined.membership.report_checks(&checks) {
                    Ok(()) => self.reply(request_id, ServerMessage::ChecksRecorded),
                    Err(e) => self.send_error(request_id, ErrorCode::MalformedMessage, e.to_string()),
                }
                None
            }
            ClientMessage::ReportQuality { freezes, freeze_seconds } => {
                let Some(joined) = self.joined.as_ref() else {
                    self.send_error(request_id, ErrorCode::NotJoined, "join first");
                    return None;
                };
                match quality_report(joined, freezes, freeze_seconds) {
                    Ok(labels) => {
                        let labels = [labels.0.as_str(), labels.1.as_str()];
                        self.ctx.metrics.video_freezes.with_label_values(&labels).inc_by(u64::from(freezes));
                        self.ctx.metrics.video_freeze_seconds.with_label_values(&labels).inc_by(freeze_seconds);
                        self.reply(request_id, ServerMessage::QualityRecorded);
                    }
                    Err(why) => self.send_error(request_id, ErrorCode::MalformedMessage, why),
                }
                None
            }
            other => {
                let Some(joined) = self.joined.as_ref() else {
                    self.send_error(request_id, ErrorCode::NotJoined, "join first");
                    return None;
                };
                let room = Arc::clone(joined.room());
                let key = joined.membership.key().clone();
                let result = match other {
                    ClientMessage::CreateWebRtcTransport { direction } => {
                        room.create_webrtc_transport(&key, direction).await
                    }
                    ClientMessage::ConnectWebRtcTransport { transport_id, dtls_parameters } => {
                        room.connect_webrtc_transport(&key, transport_id, dtls_parameters).await
                    }
                    ClientMessage::CreatePlainTransport { direction } => {
                        room.create_plain_transport(&key, direction).await
                    }
                    ClientMessage::RestartIce { transport_id } => room.restart_ice(&key, transport_id).await,
                    // Whatever the address: sending where a client says is what made the worker
                    // a reflector. Plain transports learn their remote from the first packet.
                    ClientMessage::ConnectPlainTransport { .. } => Err(RoomError::RemoteAddressForbidden),
                    ClientMessage::Produce { transport_id, kind, rtp_parameters, source } => room
                        .produce(&key, transport_id, kind, rtp_parameters, source)
                        .await
                        .map(|producer_id| ServerMessage::Produced { producer_id }),
                    ClientMessage::CloseProducer { producer_id } => room.close_producer(&key, producer_id),
                    ClientMessage::Consume { transport_id, producer_id, rtp_capabilities } => {
                        room.consume(&key, transport_id, producer_id, rtp_capabilities).await
                    }
                    ClientMessage::ResumeConsumer { consumer_id } => room.resume_consumer(&key, consumer_id).await,
                    ClientMessage::SetViewport { tiles } => room.set_viewport(&key, tiles).await,
                    ClientMessage::ResumeProducer { producer_id } => room.resume_producer(&key, producer_id).await,
                    ClientMessage::MutePoint { point } => room.mute_point(&key, &point).await,
                    ClientMessage::AskToUnmute { point } => room.ask_to_unmute(&key, &point),
                    ClientMessage::GiveFloor { point } => room.give_floor(&key, point),
                    ClientMessage::StopShare => room.stop_share(&key),
                    ClientMessage::Join { .. }
                    | ClientMessage::Leave
                    | ClientMessage::ReportChecks { .. }
                    | ClientMessage::ReportQuality { .. } => {
                        // Handled above; kept exhaustive so a new action cannot be forgotten.
                        return None;
                    }
                };
                match result {
                    Ok(message) => self.reply(request_id, message),
                    Err(e) => {
                        tracing::debug!(point = %key.point, error = %e, "request refused");
                        self.send_error(request_id, e.code(), e.to_string());
                    }
                }
                None
            }
        }
    }

    async fn join(&mut self, request_id: Option<RequestId>, token: &str) {
        if self.joined.is_some() {
            self.send_error(request_id, ErrorCode::AlreadyJoined, "this connection has already joined");
            return;
        }
        match self.ctx.registry.join(token, self.outbox.clone(), request_id.clone()).await {
            Ok(Joined { membership, kicked, expires }) => {
                let left = u64::try_from(expires.saturating_sub(crate::tokens::unix_now())).unwrap_or(0);
                let expires = tokio::time::Instant::now() + std::time::Duration::from_secs(left);
                self.joined = Some(JoinedState { membership, kicked, expires });
            }
            Err(e) => {
                tracing::info!(code = e.code().as_str(), error = %e, "join refused");
                self.send_error(request_id, e.code(), e.to_string());
            }
        }
    }
}

/// Whether a read error is a frame over the size limit (logged otherwise: a broken connection).
/// By type, not by message: tungstenite's `Capacity` error, which axum wraps. The workspace's
/// `tungstenite` is the version axum's WebSocket uses (one entry in Cargo.lock); should they part,
/// the downcast stops matching and over-limit frames only close the connection.
fn over_limit(error: axum::Error) -> bool {
    match error.into_inner().downcast::<tungstenite::Error>() {
        Ok(inner) if matches!(*inner, tungstenite::Error::Capacity(_)) => true,
        Ok(inner) => {
            tracing::debug!(error = %inner, "signaling connection failed");
            false
        }
        Err(other) => {
            tracing::debug!(error = %other, "signaling connection failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_capacity_error_is_an_over_limit_frame() {
        let too_long = tungstenite::error::CapacityError::MessageTooLong { size: 2, max_size: 1 };
        assert!(over_limit(axum::Error::new(tungstenite::Error::Capacity(too_long))));
        assert!(!over_limit(axum::Error::new(tungstenite::Error::ConnectionClosed)));
        // Not even a WebSocket error, though its text says "limit".
        assert!(!over_limit(axum::Error::new(std::io::Error::other("rate limit"))));
    }
}
