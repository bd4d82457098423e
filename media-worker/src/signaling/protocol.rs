//! The WebSocket signaling protocol of `/v1/ws`, both directions, in one place.
//!
//! Every frame is one JSON object with an `action` field. A client may add `requestId` (string or
//! number) to any message; the worker echoes it on the reply (or on the error) so browser code can
//! match replies to requests. Pushes the client did not ask for (`newProducer`, `peerJoined`, ...)
//! carry no `requestId`.
//!
//! ```text
//! client                                   worker
//!   join {token}                      ->   joined {point, session, title, routerRtpCapabilities, peers, producers}
//!   createWebRtcTransport {direction} ->   webRtcTransportCreated {transportId, iceParameters, iceCandidates, dtlsParameters}
//!   connectWebRtcTransport {...}      ->   transportConnected {transportId}
//!   createPlainTransport {direction}  ->   plainTransportCreated {transportId, ip, port}   (probe tokens only)
//!   connectPlainTransport {...}       ->   error remote_address_forbidden                  (see below)
//!   produce {transportId, kind, ...}  ->   produced {producerId}
//!   closeProducer {producerId}        ->   producerClosed {producerId, point}
//!   consume {transportId, producerId} ->   consumed {consumerId, ..., paused: true}
//!   resumeConsumer {consumerId}       ->   consumerResumed {consumerId}
//!   reportChecks {checks}             ->   checksRecorded
//!   setViewport {tiles}               ->   viewportApplied
//!   reportQuality {freezes, ...}      ->   qualityRecorded
//!   leave                             ->   left
//!                                     <-   newProducer | producerClosed | consumerClosed | peerJoined | peerLeft
//!   (anything wrong)                  <-   error {code, message}
//! ```

use crate::checks::ConsoleCheck;
use crate::ids::{PointName, SessionId};
use mediasoup::prelude::{
    ConsumerId, DtlsParameters, IceCandidate, IceParameters, MediaKind, ProducerId, RtpCapabilities,
    RtpCapabilitiesFinalized, RtpParameters, TransportId,
};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
pub use tiepdan_contract::{ErrorCode, Role, VideoCaps};
use ts_rs::TS;

/// Frames larger than this are refused with `frame_too_large`. Real messages are a few KiB (RTP
/// capabilities are the largest); the cap bounds what one connection can make the worker parse.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A client-chosen correlation id, echoed verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(untagged)]
pub enum RequestId {
    Number(u64),
    Text(String),
}

/// Whether a transport carries media from the client (`send`) or to it (`recv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Send,
    Recv,
}

/// A client message together with its optional correlation id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEnvelope {
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    #[serde(flatten)]
    pub message: ClientMessage,
}

/// What a client may ask of the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "action", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    /// Authenticate with a join token; must come first.
    Join {
        token: String,
    },
    CreateWebRtcTransport {
        direction: Direction,
    },
    ConnectWebRtcTransport {
        #[ts(type = "string")]
        transport_id: TransportId,
        #[ts(type = "types.DtlsParameters")]
        dtls_parameters: DtlsParameters,
    },
    /// A transport without ICE/DTLS (so without SRTP), for probe tokens only. The worker learns
    /// the client's address from the first packet that arrives on it (comedia): send RTP (send
    /// direction) or any RTCP packet (recv direction) from the socket that should get media.
    CreatePlainTransport {
        direction: Direction,
    },
    /// New ICE credentials for one of the client's WebRTC transports, after a network change or
    /// when the path failed: media resumes on the same transports, producers and consumers,
    /// without a rejoin.
    RestartIce {
        #[ts(type = "string")]
        transport_id: TransportId,
    },
    /// Always refused with `remote_address_forbidden`: the worker never sends media to an
    /// address a client names (that made it a reflector). Kept in the protocol so older probes
    /// get that reason rather than `unknown_action`.
    ConnectPlainTransport {
        #[ts(type = "string")]
        transport_id: TransportId,
        ip: IpAddr,
        port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtcp_port: Option<u16>,
    },
    Produce {
        #[ts(type = "string")]
        transport_id: TransportId,
        #[ts(type = "types.MediaKind")]
        kind: MediaKind,
        #[ts(type = "types.RtpParameters")]
        rtp_parameters: RtpParameters,
        /// `screen` for a shared screen or window (video only, one share per room at a time);
        /// absent: the camera or microphone, by `kind`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        source: Option<MediaSource>,
    },
    CloseProducer {
        #[ts(type = "string")]
        producer_id: ProducerId,
    },
    /// Consumers start paused; send `resumeConsumer` once the client side is ready.
    Consume {
        #[ts(type = "string")]
        transport_id: TransportId,
        #[ts(type = "string")]
        producer_id: ProducerId,
        #[ts(type = "types.RtpCapabilities")]
        rtp_capabilities: RtpCapabilities,
    },
    ResumeConsumer {
        #[ts(type = "string")]
        consumer_id: ConsumerId,
    },
    /// The console's connection checklist, measured in the office's browser: every item it
    /// measures, each time one changes. `verified` needs every item passed (see `checks`).
    ReportChecks {
        checks: Vec<ConsoleCheck>,
    },
    /// Where the console shows each other point's picture: the worker picks each video
    /// consumer's simulcast layer from its tile's height, and pauses it while the tile is hidden
    /// (see `layers`). Each message replaces the previous one; a point left out keeps the default.
    SetViewport {
        tiles: Vec<TileView>,
    },
    /// What the office's browser measured of the pictures it received since its previous report
    /// (`inbound-rtp` `freezeCount` and `totalFreezesDuration`): the worker counts them in its
    /// metrics.
    ReportQuality {
        freezes: u32,
        freeze_seconds: f64,
    },
    /// Resumes one of the sender's own producers in the SFU (after the host muted it and then
    /// asked it to unmute). Refused with `muted_by_host` while the host holds the mute.
    ResumeProducer {
        #[ts(type = "string")]
        producer_id: ProducerId,
    },
    /// The host only: pause `point`'s microphone in the SFU for everyone (see `moderation`).
    MutePoint {
        point: PointName,
    },
    /// The host only: ask a point it muted to unmute; the office then decides when to speak.
    AskToUnmute {
        point: PointName,
    },
    /// The host only: show `point` (where the citizen sits) large for everyone, whoever speaks;
    /// `null` takes the floor back.
    GiveFloor {
        point: Option<PointName>,
    },
    /// The host only: stop whichever point's screen share is on.
    StopShare,
    Leave,
}

impl ClientMessage {
    /// The message's `action`, e.g. for span names and bounded metric labels.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Join { .. } => "join",
            Self::CreateWebRtcTransport { .. } => "createWebRtcTransport",
            Self::ConnectWebRtcTransport { .. } => "connectWebRtcTransport",
            Self::CreatePlainTransport { .. } => "createPlainTransport",
            Self::RestartIce { .. } => "restartIce",
            Self::ConnectPlainTransport { .. } => "connectPlainTransport",
            Self::Produce { .. } => "produce",
            Self::CloseProducer { .. } => "closeProducer",
            Self::Consume { .. } => "consume",
            Self::ResumeConsumer { .. } => "resumeConsumer",
            Self::ReportChecks { .. } => "reportChecks",
            Self::SetViewport { .. } => "setViewport",
            Self::ReportQuality { .. } => "reportQuality",
            Self::ResumeProducer { .. } => "resumeProducer",
            Self::MutePoint { .. } => "mutePoint",
            Self::AskToUnmute { .. } => "askToUnmute",
            Self::GiveFloor { .. } => "giveFloor",
            Self::StopShare => "stopShare",
            Self::Leave => "leave",
        }
    }

    /// Every `action` a client may send. Kept next to the enum (and checked against it by tests
    /// here and in `console_types`) so an unknown action can be told apart from a known one with
    /// bad fields.
    pub const ACTIONS: &'static [&'static str] = &[
        "join",
        "createWebRtcTransport",
        "connectWebRtcTransport",
        "createPlainTransport",
        "restartIce",
        "connectPlainTransport",
        "produce",
        "closeProducer",
        "consume",
        "resumeConsumer",
        "reportChecks",
        "setViewport",
        "reportQuality",
        "resumeProducer",
        "mutePoint",
        "askToUnmute",
        "giveFloor",
        "stopShare",
        "leave",
    ];
}

/// A server message together with the correlation id of the request it answers, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerEnvelope {
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    #[serde(flatten)]
    pub message: ServerMessage,
}

impl ServerEnvelope {
    /// A push, not an answer to any request.
    pub fn push(message: ServerMessage) -> Self {
        Self { request_id: None, message }
    }
}

/// Another point in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    pub point: PointName,
    pub display_name: String,
    pub role: Role,
}

/// A producer that can be consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ProducerInfo {
    #[ts(type = "string")]
    pub producer_id: ProducerId,
    pub point: PointName,
    #[ts(type = "types.MediaKind")]
    pub kind: MediaKind,
    pub source: MediaSource,
}

/// What a producer carries: a point's camera and microphone, or a shared screen or window
/// (a document shown large to everyone; one at a time in a room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum MediaSource {
    Camera,
    Microphone,
    Screen,
}

impl MediaSource {
    /// What a producer that named no source carries: its kind's device.
    pub fn of_kind(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Audio => Self::Microphone,
            MediaKind::Video => Self::Camera,
        }
    }
}

/// One tile of the console: the point whose picture it shows, its height in device pixels, and
/// whether any of it is on screen (not scrolled away, the window not minimised or hidden).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct TileView {
    pub point: PointName,
    pub height: u32,
    pub visible: bool,
}

/// A TURN server as `RTCIceServer` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// `RTCIceTransportPolicy`: which local candidates the browser may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum IceTransportPolicy {
    /// Host, then relay: UDP, ICE-TCP, then TURN, as the candidates' priorities order them.
    #[default]
    All,
    /// Relay candidates only: the point's firewall lets nothing else through.
    Relay,
}

/// What the worker sends: replies, pushes and errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "action", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    Joined {
        point: PointName,
        session: SessionId,
        title: String,
        #[ts(type = "types.RtpCapabilities")]
        router_rtp_capabilities: RtpCapabilitiesFinalized,
        /// The other points present now.
        peers: Vec<PeerInfo>,
        /// Producers of every point present now, the joining point's own included (none yet,
        /// unless it rejoined).
        producers: Vec<ProducerInfo>,
        /// TURN relays with this point's credentials (valid until its token expires), for
        /// `createSendTransport`/`createRecvTransport`. Empty when the worker has none.
        ice_servers: Vec<IceServer>,
        /// `relay` when the point's token says its firewall needs TURN (`turnRequired`): the
        /// browser then uses relay candidates only.
        ice_transport_policy: IceTransportPolicy,
        /// The most the point may send, in kbit/s (`uplinkKbps`), enforced on its send
        /// transport; absent means no cap.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        uplink_kbps: Option<u32>,
        /// The session's video caps (`spec.media.video`), which the worker enforces on the
        /// point's video producers; absent means none.
        #[serde(default, skip_serializing_if = "VideoCaps::is_unset")]
        #[ts(as = "Option<VideoCaps>", optional)]
        video: VideoCaps,
        /// Points the host has muted now; the joining point's own name means its microphone is
        /// muted by the host (its new audio starts paused in the SFU).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[ts(as = "Option<Vec<PointName>>", optional)]
        muted_points: Vec<PointName>,
        /// Who speaks now (see `activeSpeaker`), if anyone has yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        active_speaker: Option<PointName>,
        /// The point the host gave the floor to, if any (see `floorGiven`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        floor: Option<PointName>,
    },
    WebRtcTransportCreated {
        #[ts(type = "string")]
        transport_id: TransportId,
        direction: Direction,
        #[ts(type = "types.IceParameters")]
        ice_parameters: IceParameters,
        #[ts(type = "Array<IceCandidate>")]
        ice_candidates: Vec<IceCandidate>,
        #[ts(type = "types.DtlsParameters")]
        dtls_parameters: DtlsParameters,
    },
    PlainTransportCreated {
        #[ts(type = "string")]
        transport_id: TransportId,
        direction: Direction,
        /// Where to send RTP (send direction) or RTCP (recv direction): the first packet's source
        /// becomes the transport's remote address.
        ip: IpAddr,
        port: u16,
    },
    TransportConnected {
        #[ts(type = "string")]
        transport_id: TransportId,
    },
    /// The reply to `restartIce`: the transport's new ICE credentials.
    IceRestarted {
        #[ts(type = "string")]
        transport_id: TransportId,
        #[ts(type = "types.IceParameters")]
        ice_parameters: IceParameters,
    },
    Produced {
        #[ts(type = "string")]
        producer_id: ProducerId,
    },
    Consumed {
        #[ts(type = "string")]
        consumer_id: ConsumerId,
        #[ts(type = "string")]
        producer_id: ProducerId,
        point: PointName,
        #[ts(type = "types.MediaKind")]
        kind: MediaKind,
        #[ts(type = "types.RtpParameters")]
        rtp_parameters: RtpParameters,
        paused: bool,
    },
    ConsumerResumed {
        #[ts(type = "string")]
        consumer_id: ConsumerId,
    },
    /// The reply to `reportChecks`: the report was recorded.
    ChecksRecorded,
    /// The reply to `setViewport`: every consumer's layer and pause follow the tiles now.
    ViewportApplied,
    /// The reply to `reportQuality`.
    QualityRecorded,
    /// The reply to `resumeProducer`.
    ProducerResumed {
        #[ts(type = "string")]
        producer_id: ProducerId,
    },
    /// The host (`by`, its display name) muted `point`'s microphone: to every point (the muted
    /// office shows who muted it) and as the reply to `mutePoint`.
    PointMuted {
        point: PointName,
        by: String,
    },
    /// `point` resumed its audio after the host's mute: to every point.
    PointUnmuted {
        point: PointName,
    },
    /// The SFU's audio levels say `point` speaks now (`null`: the speaker left): to every point.
    ActiveSpeaker {
        point: Option<PointName>,
    },
    /// The host gave the floor to `point` (`null`: took it back): to every point, and as the
    /// reply to `giveFloor`.
    FloorGiven {
        point: Option<PointName>,
    },
    /// The host (`by`) asks `point` to unmute: to that point, and as the reply to `askToUnmute`.
    UnmuteAsked {
        point: PointName,
        by: String,
    },
    NewProducer {
        #[ts(type = "string")]
        producer_id: ProducerId,
        point: PointName,
        #[ts(type = "types.MediaKind")]
        kind: MediaKind,
        source: MediaSource,
    },
    /// The host (`by`) stopped `point`'s screen share: to the sharing point (its console stops
    /// the capture and says so) and as the reply to `stopShare`. The others get `producerClosed`.
    ShareStopped {
        point: PointName,
        by: String,
    },
    ProducerClosed {
        #[ts(type = "string")]
        producer_id: ProducerId,
        point: PointName,
    },
    /// A consumer stopped because its producer went away.
    ConsumerClosed {
        #[ts(type = "string")]
        consumer_id: ConsumerId,
        #[ts(type = "string")]
        producer_id: ProducerId,
    },
    PeerJoined {
        point: PointName,
        display_name: String,
        role: Role,
    },
    PeerLeft {
        point: PointName,
    },
    Left,
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error { code, message: message.into() }
    }
}

/// How a raw frame failed to become a [`ClientEnvelope`]; the reply still echoes the request id
/// when one could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseFailure {
    pub request_id: Option<RequestId>,
    pub code: ErrorCode,
    pub message: String,
}

/// Parses one text frame. Separating "not JSON", "unknown action" and "known action, bad fields"
/// gives clients precise error codes instead of serde's one-size-fits-all message.
pub fn parse_client_frame(text: &str) -> Result<ClientEnvelope, ParseFailure> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ParseFailure {
            request_id: None,
            code: ErrorCode::FrameTooLarge,
            message: format!("frames are limited to {MAX_MESSAGE_BYTES} bytes"),
        });
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ParseFailure {
        request_id: None,
        code: ErrorCode::MalformedMessage,
        message: format!("the frame is not valid JSON: {e}"),
    })?;
    let Some(object) = value.as_object() else {
        return Err(ParseFailure {
            request_id: None,
            code: ErrorCode::MalformedMessage,
            message: "the frame must be a JSON object".to_owned(),
        });
    };
    let request_id = object.get("requestId").and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
    let action = match object.get("action") {
        Some(serde_json::Value::String(action)) => action.clone(),
        Some(_) => {
            return Err(ParseFailure {
                request_id,
                code: ErrorCode::MalformedMessage,
                message: "\"action\" must be a string".to_owned(),
            })
        }
        None => {
            return Err(ParseFailure {
                request_id,
                code: ErrorCode::MalformedMessage,
                message: "the frame has no \"action\"".to_owned(),
            })
        }
    };
    if !ClientMessage::ACTIONS.contains(&action.as_str()) {
        // Echo a bounded prefix only: the action is client-controlled text.
        let shown: String = action.chars().take(64).collect();
        return Err(ParseFailure {
            request_id,
            code: ErrorCode::UnknownAction,
            message: format!("unknown action {shown:?}"),
        });
    }
    serde_json::from_value::<ClientEnvelope>(value).map_err(|e| ParseFailure {
        request_id,
        code: ErrorCode::MalformedMessage,
        message: format!("invalid {action} message: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip_client(envelope: &ClientEnvelope) {
        let text = serde_json::to_string(envelope).expect("serialize");
        let back = parse_client_frame(&text).expect("parse");
        assert_eq!(&back, envelope, "{text}");
    }

    fn round_trip_server(envelope: &ServerEnvelope) {
        let text = serde_json::to_string(envelope).expect("serialize");
        let back: ServerEnvelope = serde_json::from_str(&text).expect("parse");
        assert_eq!(&back, envelope, "{text}");
    }

    /// mediasoup's id types can only be made by mediasoup or by deserializing a UUID.
    fn fresh_id<T: serde::de::DeserializeOwned>() -> T {
        let uuid = format!("{:08x}-0000-4000-8000-000000000000", rand::random::<u32>());
        serde_json::from_value(serde_json::Value::String(uuid)).expect("uuid")
    }

    fn point(name: &str) -> PointName {
        name.parse().expect("valid point name")
    }

    #[test]
    fn join_uses_the_documented_wire_shape() {
        let parsed = parse_client_frame(r#"{"action":"join","token":"abc","requestId":7}"#).expect("parse");
        assert_eq!(parsed.request_id, Some(RequestId::Number(7)));
        assert_eq!(parsed.message, ClientMessage::Join { token: "abc".to_owned() });
    }

    #[test]
    fn client_messages_round_trip() {
        let transport_id = fresh_id::<TransportId>();
        let producer_id = fresh_id::<ProducerId>();
        let messages = [
            ClientMessage::Join { token: "t".to_owned() },
            ClientMessage::CreateWebRtcTransport { direction: Direction::Send },
            ClientMessage::CreatePlainTransport { direction: Direction::Recv },
            ClientMessage::ConnectPlainTransport {
                transport_id,
                ip: "127.0.0.1".parse().expect("ip"),
                port: 5004,
                rtcp_port: None,
            },
            ClientMessage::Produce {
                transport_id,
                kind: MediaKind::Audio,
                rtp_parameters: RtpParameters::default(),
                source: None,
            },
            ClientMessage::CloseProducer { producer_id },
            ClientMessage::Consume { transport_id, producer_id, rtp_capabilities: RtpCapabilities::default() },
            ClientMessage::ResumeConsumer { consumer_id: fresh_id::<ConsumerId>() },
            ClientMessage::Leave,
        ];
        for (i, message) in messages.into_iter().enumerate() {
            let request_id = if i % 2 == 0 { Some(RequestId::Text(format!("r{i}"))) } else { None };
            round_trip_client(&ClientEnvelope { request_id, message });
        }
    }

    #[test]
    fn every_action_is_listed_and_every_listed_action_exists() {
        let samples = [
            json!({"action": "join", "token": "t"}),
            json!({"action": "createWebRtcTransport", "direction": "send"}),
            json!({"action": "connectWebRtcTransport", "transportId": fresh_id::<TransportId>(),
                   "dtlsParameters": {"role": "client", "fingerprints": []}}),
            json!({"action": "createPlainTransport", "direction": "send"}),
            json!({"action": "connectPlainTransport", "transportId": fresh_id::<TransportId>(),
                   "ip": "127.0.0.1", "port": 1}),
            json!({"action": "produce", "transportId": fresh_id::<TransportId>(), "kind": "video",
                   "rtpParameters": {"codecs": [], "headerExtensions": [], "encodings": [],
                                     "rtcp": {"reducedSize": true}}}),
            json!({"action": "closeProducer", "producerId": fresh_id::<ProducerId>()}),
            json!({"action": "consume", "transportId": fresh_id::<TransportId>(),
                   "producerId": fresh_id::<ProducerId>(),
                   "rtpCapabilities": {"codecs": [], "headerExtensions": []}}),
            json!({"action": "resumeConsumer", "consumerId": fresh_id::<ConsumerId>()}),
            json!({"action": "reportChecks", "checks": [{"item": "icePath", "state": "passed", "path": "turn-tls"}]}),
            json!({"action": "setViewport", "tiles": [{"point": "xa-a", "height": 360, "visible": true}]}),
            json!({"action": "reportQuality", "freezes": 1, "freezeSeconds": 0.5}),
            json!({"action": "resumeProducer", "producerId": fresh_id::<ProducerId>()}),
            json!({"action": "mutePoint", "point": "xa-a"}),
            json!({"action": "askToUnmute", "point": "xa-a"}),
            json!({"action": "giveFloor", "point": null}),
            json!({"action": "stopShare"}),
            json!({"action": "restartIce", "transportId": fresh_id::<TransportId>()}),
            json!({"action": "leave"}),
        ];
        assert_eq!(samples.len(), ClientMessage::ACTIONS.len());
        for sample in samples {
            let parsed = parse_client_frame(&sample.to_string()).unwrap_or_else(|e| panic!("{sample}: {e:?}"));
            let action = serde_json::to_value(&parsed.message).expect("serialize")["action"]
                .as_str()
                .expect("action")
                .to_owned();
            assert!(ClientMessage::ACTIONS.contains(&action.as_str()));
            assert_eq!(parsed.message.action(), action.as_str(), "action() agrees with the wire name");
        }
    }

    #[test]
    fn bad_frames_get_precise_codes() {
        let code = |text: &str| parse_client_frame(text).map(|_| ()).map_err(|e| e.code);
        assert_eq!(code("{not json"), Err(ErrorCode::MalformedMessage));
        assert_eq!(code("[1,2]"), Err(ErrorCode::MalformedMessage));
        assert_eq!(code(r#"{"token":"x"}"#), Err(ErrorCode::MalformedMessage));
        assert_eq!(code(r#"{"action":42}"#), Err(ErrorCode::MalformedMessage));
        assert_eq!(code(r#"{"action":"dance"}"#), Err(ErrorCode::UnknownAction));
        assert_eq!(code(r#"{"action":"join"}"#), Err(ErrorCode::MalformedMessage));
        assert_eq!(
            code(r#"{"action":"createWebRtcTransport","direction":"sideways"}"#),
            Err(ErrorCode::MalformedMessage)
        );
        let big = format!(r#"{{"action":"join","token":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(code(&big), Err(ErrorCode::FrameTooLarge));
    }

    #[test]
    fn parse_failures_keep_the_request_id() {
        let failure = parse_client_frame(r#"{"action":"dance","requestId":"abc"}"#).expect_err("unknown action");
        assert_eq!(failure.request_id, Some(RequestId::Text("abc".to_owned())));
    }

    #[test]
    fn server_messages_round_trip() {
        let messages = [
            ServerMessage::Joined {
                point: point("p1"),
                session: "ns/s".parse().expect("session"),
                title: "Tiếp công dân".to_owned(),
                router_rtp_capabilities: RtpCapabilitiesFinalized::default(),
                peers: vec![PeerInfo {
                    point: point("p2"),
                    display_name: "UBND xã Phú Diễn".to_owned(),
                    role: Role::Participant,
                }],
                producers: vec![ProducerInfo {
                    producer_id: fresh_id::<ProducerId>(),
                    point: point("p2"),
                    kind: MediaKind::Video,
                    source: MediaSource::Screen,
                }],
                ice_servers: vec![IceServer {
                    urls: vec!["turns:turn.example:443?transport=tcp".to_owned()],
                    username: "1750000000:ns/s/p1".to_owned(),
                    credential: "c2VjcmV0".to_owned(),
                }],
                ice_transport_policy: IceTransportPolicy::Relay,
                uplink_kbps: Some(512),
                video: VideoCaps { max_bitrate_kbps: 500, max_height: 360 },
                muted_points: vec![point("p2")],
                active_speaker: Some(point("p2")),
                floor: None,
            },
            ServerMessage::ActiveSpeaker { point: Some(point("p2")) },
            ServerMessage::FloorGiven { point: None },
            ServerMessage::PointMuted { point: point("p2"), by: "UBND tỉnh".to_owned() },
            ServerMessage::UnmuteAsked { point: point("p2"), by: "UBND tỉnh".to_owned() },
            ServerMessage::PointUnmuted { point: point("p2") },
            ServerMessage::ProducerResumed { producer_id: fresh_id::<ProducerId>() },
            ServerMessage::PlainTransportCreated {
                transport_id: fresh_id::<TransportId>(),
                direction: Direction::Send,
                ip: "127.0.0.1".parse().expect("ip"),
                port: 40000,
            },
            ServerMessage::Produced { producer_id: fresh_id::<ProducerId>() },
            ServerMessage::PeerLeft { point: point("p2") },
            ServerMessage::Left,
            ServerMessage::error(ErrorCode::WrongSession, "nope"),
        ];
        for message in messages {
            round_trip_server(&ServerEnvelope { request_id: Some(RequestId::Number(1)), message });
        }
    }

    #[test]
    fn errors_have_the_documented_shape() {
        let envelope = ServerEnvelope {
            request_id: Some(RequestId::Text("q".to_owned())),
            message: ServerMessage::error(ErrorCode::TokenExpired, "the token has expired"),
        };
        let value = serde_json::to_value(&envelope).expect("serialize");
        assert_eq!(
            value,
            json!({"action": "error", "code": "token_expired",
                   "message": "the token has expired", "requestId": "q"})
        );
        let push = serde_json::to_value(ServerEnvelope::push(ServerMessage::Left)).expect("ser");
        assert_eq!(push, json!({"action": "left"}));
    }

    #[test]
    fn error_code_labels_match_the_wire() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).expect("serialize"),
                serde_json::Value::String(code.as_str().to_owned())
            );
        }
    }
}
