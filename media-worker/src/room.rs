//! The media plane of one session: a Room owns the session's mediasoup Router and, per point, the
//! transports, producers and consumers that point created.
//!
//! ```text
//! Room ── Router
//!  └─ members: (class, point) ─> Member { conn, peer, outbox, kick, media }
//!                                                       └─ transports / producers / consumers
//! ```
//!
//! Points and probes are two classes that never see each other (see [`Class`]); only probes may
//! open plain-RTP transports, and those learn their remote address from the first packet.
//!
//! Ownership is the lifecycle: mediasoup objects close when their last handle drops, so removing
//! a member closes everything it created, and the Router closes when the last `Arc<Room>` (held
//! by the members' signaling sessions) goes. The registry only keeps a `Weak` reference.
//!
//! Locking: `state` is a plain mutex that is never held across an `.await`. Each operation looks
//! up the handles it needs, releases the lock, awaits mediasoup, then re-locks to store the result
//! (dropping it if the member left meanwhile, which closes it).

use crate::active_speaker::{FloorError, Speakers};
use crate::ids::{PointName, SessionId};
use crate::layers::{self, SendCapError, VideoChoice, AUDIO_PRIORITY, DEFAULT_TOP_HEIGHT};
use crate::local_runner::{LocalRunner, LocalRunnerError};
use crate::moderation::{Moderation, ModerationError};
use crate::sfu_evidence::{Evidence, VOICE_THRESHOLD_DBOV};
use crate::signaling::protocol::{
    Direction, ErrorCode, MediaSource, PeerInfo, ProducerInfo, Role, ServerEnvelope, ServerMessage, TileView, VideoCaps,
};
use crate::tokens::TokenVersion;
use crate::workers::media_codecs;
use mediasoup::audio_level_observer::{AudioLevelObserver, AudioLevelObserverOptions};
use mediasoup::consumer::ConsumerLayers;
use mediasoup::data_structures::TransportProtocol;
use mediasoup::prelude::{
    Consumer, ConsumerId, ConsumerOptions, DtlsParameters, MediaKind, PlainTransport, PlainTransportOptions, Producer,
    ProducerId, ProducerOptions, Router, RouterOptions, RtpCapabilities, RtpCapabilitiesFinalized, RtpParameters,
    Transport, TransportId, TransportListenIp, TransportListenIps, WebRtcTransport, WebRtcTransportOptions,
    WebRtcTransportRemoteParameters, Worker,
};
use mediasoup::producer::{ProducerTraceEventData, ProducerTraceEventType};
use mediasoup::rtp_observer::{RtpObserver, RtpObserverAddProducerOptions};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};

/// Per-member caps, so one connection cannot exhaust ports or worker memory.
const MAX_TRANSPORTS: usize = 8;
const MAX_PRODUCERS: usize = 8;
const MAX_CONSUMERS: usize = 64;
/// Key frame requests for a producer closer together than this are merged (see `produce`).
const KEY_FRAME_REQUEST_DELAY_MS: u32 = 1000;

/// Identifies one signaling connection; a newer connection for the same point gets a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Which name space a member is in. Points and probes never see each other:
/// - a probe cannot consume a point's media, which plain RTP would carry unencrypted to wherever
///   the probe is;
/// - a point never receives a probe's synthetic media, so a probe cannot make a point look as if
///   it received another point's audio and video (verification);
/// - a probe token naming a point cannot replace that point's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Point,
    Probe,
}

impl Class {
    pub fn of(role: Role) -> Self {
        if role.is_probe() {
            Self::Probe
        } else {
            Self::Point
        }
    }
}

/// A member's identity in the room: the same name in the two classes is two members.
type MemberId = (Class, PointName);

/// A member as seen by one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKey {
    pub class: Class,
    pub point: PointName,
    pub conn: ConnectionId,
}

impl MemberKey {
    fn id(&self) -> MemberId {
        (self.class, self.point.clone())
    }
}

/// Messages the room pushes to a member's connection.
pub type Outbox = mpsc::UnboundedSender<ServerEnvelope>;

/// Why the room ends a member's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Another connection joined as the same point.
    Replaced,
    /// The session was deallocated.
    SessionClosed,
    /// The revocation epoch moved past the member's token.
    TokenRevoked,
    /// The member's token expired: a link stops working at its expiry, even for a connection
    /// that joined before.
    TokenExpired,
    /// The worker is shutting down after draining.
    Shutdown,
    /// The worker cuts the point on purpose to prove its console comes back by itself (the
    /// checklist's `reconnect` item).
    ReconnectCheck,
}

impl Kick {
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Replaced => ErrorCode::Replaced,
            Self::SessionClosed => ErrorCode::SessionClosed,
            Self::TokenRevoked => ErrorCode::TokenRevoked,
            Self::TokenExpired => ErrorCode::TokenExpired,
            Self::Shutdown => ErrorCode::Draining,
            Self::ReconnectCheck => ErrorCode::ReconnectCheck,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Replaced => "another connection joined as this point",
            Self::SessionClosed => "the session was closed by the operator",
            Self::TokenRevoked => "the token of this connection was revoked",
            Self::TokenExpired => "the token of this connection expired",
            Self::Shutdown => "the worker is shutting down",
            Self::ReconnectCheck => "the worker interrupted this connection to check the point reconnects; join again",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("the session's room is closed")]
    Closed,
    #[error("this connection is no longer a member of the room")]
    NotMember,
    #[error("no such transport")]
    TransportNotFound,
    #[error("the transport is for the other direction")]
    WrongDirection,
    #[error("no such producer")]
    ProducerNotFound,
    #[error("no such consumer")]
    ConsumerNotFound,
    #[error("the RTP capabilities cannot receive this producer")]
    CannotConsume,
    #[error("too many {0} for one point")]
    Limit(&'static str),
    #[error("plain RTP transports (no DTLS/SRTP) are only for probe tokens; a point's console connects over WebRTC")]
    PlainTransportForbidden,
    #[error(
        "the worker never sends to an address a client names: it learns a plain transport's remote address \
         from the first packet that arrives on it (send RTP or RTCP to the transport's ip and port)"
    )]
    RemoteAddressForbidden,
    #[error("a probe consumes each producer at most once, so it cannot multiply traffic")]
    AlreadyConsuming,
    #[error(transparent)]
    SendCap(#[from] SendCapError),
    #[error("a viewport names at most {MAX_CONSUMERS} tiles")]
    TooManyTiles,
    #[error("failed to {what}: {detail}")]
    Media { what: &'static str, detail: String },
    #[error("failed to reach the media thread")]
    MediaThread(#[from] LocalRunnerError),
    #[error(transparent)]
    Moderation(#[from] ModerationError),
    #[error(transparent)]
    Floor(#[from] FloorError),
    #[error("source: {what:?} is not a {kind:?} source, or not one this member may send")]
    WrongSource { kind: MediaKind, what: MediaSource },
    #[error("{0} is sharing a document now; one share at a time")]
    ShareInProgress(String),
    #[error("nobody is sharing a document")]
    NoShare,
}

impl RoomError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Closed => ErrorCode::SessionClosed,
            Self::NotMember => ErrorCode::NotJoined,
            Self::TransportNotFound => ErrorCode::TransportNotFound,
            Self::WrongDirection => ErrorCode::WrongTransportDirection,
            Self::ProducerNotFound => ErrorCode::ProducerNotFound,
            Self::ConsumerNotFound => ErrorCode::ConsumerNotFound,
            Self::CannotConsume => ErrorCode::CannotConsume,
            Self::Limit(_) | Self::AlreadyConsuming | Self::SendCap(_) | Self::TooManyTiles => ErrorCode::LimitExceeded,
            Self::PlainTransportForbidden => ErrorCode::PlainTransportForbidden,
            Self::RemoteAddressForbidden => ErrorCode::RemoteAddressForbidden,
            Self::Media { .. } => ErrorCode::MediaRejected,
            Self::MediaThread(_) => ErrorCode::Internal,
            Self::Moderation(e) => match e {
                ModerationError::NotHost => ErrorCode::NotHost,
                ModerationError::NotPresent(_) => ErrorCode::PointNotPresent,
                ModerationError::HeldByHost { .. } => ErrorCode::MutedByHost,
            },
            Self::WrongSource { .. } => ErrorCode::MalformedMessage,
            Self::ShareInProgress(_) => ErrorCode::ShareInProgress,
            Self::NoShare => ErrorCode::NoShare,
            Self::Floor(e) => match e {
                FloorError::NotHost => ErrorCode::NotHost,
                FloorError::NotPresent(_) => ErrorCode::PointNotPresent,
            },
        }
    }

    fn media(what: &'static str) -> impl FnOnce(&dyn std::fmt::Display) -> Self {
        move |e| Self::Media { what, detail: e.to_string() }
    }
}

/// A transport and the direction the client asked for.
#[derive(Debug, Clone)]
pub struct TransportEntry {
    pub direction: Direction,
    pub transport: MediaTransport,
}

#[derive(Debug, Clone)]
pub enum MediaTransport {
    WebRtc(WebRtcTransport),
    Plain(PlainTransport),
}

#[derive(Debug, Clone)]
pub struct ConsumerEntry {
    pub consumer: Consumer,
    /// Whose producer this consumes (may be the member itself: self-test loopback).
    pub producer_point: PointName,
    /// The client said it is ready (`resumeConsumer`); the consumer still stays paused while
    /// its tile is hidden.
    pub ready: bool,
}

/// What one member created.
#[derive(Debug, Default)]
pub struct PeerMedia {
    pub transports: HashMap<TransportId, TransportEntry>,
    pub producers: HashMap<ProducerId, Producer>,
    pub consumers: HashMap<ConsumerId, ConsumerEntry>,
    /// The member's screen share, if it has one on (its other producers are its devices).
    pub screen: Option<ProducerId>,
}

impl PeerMedia {
    fn source(&self, producer: &Producer) -> MediaSource {
        if self.screen == Some(producer.id()) {
            MediaSource::Screen
        } else {
            MediaSource::of_kind(producer.kind())
        }
    }
}

#[derive(Debug)]
struct Member {
    class: Class,
    conn: ConnectionId,
    peer: PeerInfo,
    held: TokenVersion,
    outbox: Outbox,
    kick: Option<oneshot::Sender<Kick>>,
    uplink_kbps: Option<NonZeroU32>,
    video: VideoCaps,
    /// The member's tiles, by the point they show (`setViewport`).
    viewport: HashMap<PointName, TileView>,
    /// The SFU's latest bandwidth estimate towards the member (bits per second).
    estimate_bps: Option<u32>,
    media: PeerMedia,
}

impl Member {
    /// The most this member may send as video, all layers together, in kbit/s.
    fn video_budget_kbps(&self) -> Option<u32> {
        self.video.video_budget_kbps(self.uplink_kbps.map_or(0, NonZeroU32::get))
    }

    fn push(&self, message: ServerMessage) {
        // A closed outbox means the connection is ending; it will leave the room shortly.
        let _ = self.outbox.send(ServerEnvelope::push(message));
    }

    fn kick(&mut self, why: Kick) {
        if let Some(kick) = self.kick.take() {
            let _ = kick.send(why);
        }
    }
}

#[derive(Debug, Default)]
struct RoomState {
    closed: bool,
    members: BTreeMap<MemberId, Member>,
    /// Who the host muted; kept across reconnects for the room's life.
    moderation: Moderation,
    /// The active speaker and the floor.
    speakers: Speakers,
}

impl RoomState {
    /// The point whose screen share is on, if any: one at a time in a room.
    fn sharing(&self) -> Option<&Member> {
        self.class(Class::Point).find(|m| m.media.screen.is_some())
    }
}

impl RoomState {
    /// The members `class` sees (itself included).
    fn class(&self, class: Class) -> impl Iterator<Item = &Member> {
        self.members.values().filter(move |m| m.class == class)
    }
}

/// Everything a newly joined member needs to start.
#[derive(Debug, Clone)]
pub struct JoinSnapshot {
    pub router_rtp_capabilities: RtpCapabilitiesFinalized,
    pub peers: Vec<PeerInfo>,
    pub producers: Vec<ProducerInfo>,
    /// Points the host muted (see [`Moderation`]).
    pub muted_points: Vec<PointName>,
    pub active_speaker: Option<PointName>,
    pub floor: Option<PointName>,
}

/// A copy of one point's media handles, for the statistics poller.
#[derive(Debug, Clone)]
pub struct MemberMedia {
    pub point: PointName,
    pub transports: Vec<MediaTransport>,
    /// The receive-direction ones among `transports`: the SFU's bandwidth estimate is theirs.
    pub receiving: Vec<MediaTransport>,
    pub producers: Vec<Producer>,
    pub consumers: Vec<ConsumerEntry>,
}

/// Values a joining member brings.
#[derive(Debug)]
pub struct NewMember {
    pub peer: PeerInfo,
    pub conn: ConnectionId,
    /// What the member's token may be revoked by.
    pub held: TokenVersion,
    pub outbox: Outbox,
    pub kick: oneshot::Sender<Kick>,
    /// The most the member may send, in kbit/s: the cap on its send transports.
    pub uplink_kbps: Option<NonZeroU32>,
    /// The session's video caps, enforced on the member's video producers.
    pub video: VideoCaps,
}

#[derive(Debug)]
pub struct Room {
    session: SessionId,
    router: Router,
    /// Hears which audio producers carry sound (the checklist's `sfuAudio`); kept alive here.
    audio_levels: AudioLevelObserver,
    evidence: Evidence,
    media: LocalRunner,
    listen_ip: TransportListenIp,
    receive_buffer: Option<usize>,
    /// The audio-level reports, until [`Room::take_volumes`] hands them to the speaker task.
    volumes: Mutex<Option<mpsc::UnboundedReceiver<Vec<ProducerId>>>>,
    state: Mutex<RoomState>,
}

/// Where and how the room's transports bind their UDP sockets.
#[derive(Debug, Clone, Copy)]
pub struct RtcSockets {
    pub listen_ip: IpAddr,
    pub announced_ip: Option<IpAddr>,
    /// See [`crate::rtc_socket`]; `None` leaves the kernel's default.
    pub receive_buffer: Option<usize>,
}

impl Drop for Room {
    fn drop(&mut self) {
        tracing::info!(session = %self.session, "room closed");
    }
}

impl Room {
    pub async fn open(
        session: SessionId,
        worker: Worker,
        media: LocalRunner,
        sockets: RtcSockets,
    ) -> Result<Self, RoomError> {
        let (router, audio_levels) = media
            .run(move || async move {
                let router = worker
                    .create_router(RouterOptions::new(media_codecs()))
                    .await
                    .map_err(|e| RoomError::media("create a router")(&e))?;
                let mut options = AudioLevelObserverOptions::default();
                // Every point may speak at once: report them all, twice a second, so the active
                // speaker (two reports in a row) follows in about a second.
                options.max_entries = NonZeroU16::new(64).unwrap_or(NonZeroU16::MIN);
                options.threshold = VOICE_THRESHOLD_DBOV;
                options.interval = 500;
                let observer = router
                    .create_audio_level_observer(options)
                    .await
                    .map_err(|e| RoomError::media("create an audio level observer")(&e))?;
                Ok::<_, RoomError>((router, observer))
            })
            .await??;
        let evidence = Evidence::default();
        let heard = evidence.clone();
        let (volumes_tx, volumes) = mpsc::unbounded_channel();
        let silence_tx = volumes_tx.clone();
        audio_levels
            .on_volumes(move |volumes| {
                for volume in volumes {
                    heard.heard(volume.producer.id());
                }
                // Loudest first, as mediasoup orders them; the room maps them to points.
                let _ = volumes_tx.send(volumes.iter().map(|v| v.producer.id()).collect());
            })
            .detach();
        audio_levels.on_silence(move || drop(silence_tx.send(Vec::new()))).detach();
        tracing::info!(session = %session, router = %router.id(), "room opened");
        Ok(Self {
            session,
            router,
            audio_levels,
            evidence,
            media,
            listen_ip: TransportListenIp { ip: sockets.listen_ip, announced_ip: sockets.announced_ip },
            receive_buffer: sockets.receive_buffer,
            volumes: Mutex::new(Some(volumes)),
            state: Mutex::default(),
        })
    }

    pub fn session(&self) -> &SessionId {
        &self.session
    }

    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than losing the whole room, so recover from poisoning instead of propagating it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a member. An existing member for the same point is removed and told it was replaced.
    /// `welcome` builds the reply to the join; it is queued before the member becomes visible, so
    /// no push can overtake it.
    pub fn join(&self, new: NewMember, welcome: impl FnOnce(&JoinSnapshot) -> ServerEnvelope) -> Result<(), RoomError> {
        let mut graveyard = Vec::new();
        let class = Class::of(new.peer.role);
        let id = (class, new.peer.point.clone());
        {
            let mut state = self.lock();
            if state.closed {
                return Err(RoomError::Closed);
            }
            if let Some(mut old) = remove_member(&mut state, &id) {
                old.kick(Kick::Replaced);
                graveyard.push(old);
            }
            let peers = state.class(class).map(|m| m.peer.clone()).collect();
            let producers = state.class(class).flat_map(producer_infos).collect();
            for member in state.class(class) {
                member.push(ServerMessage::PeerJoined {
                    point: new.peer.point.clone(),
                    display_name: new.peer.display_name.clone(),
                    role: new.peer.role,
                });
            }
            // Probes are never moderated and see no points' mutes.
            let points = class == Class::Point;
            let snapshot = JoinSnapshot {
                router_rtp_capabilities: self.router.rtp_capabilities().clone(),
                peers,
                producers,
                muted_points: if points { state.moderation.muted_points() } else { Vec::new() },
                active_speaker: state.speakers.speaker().filter(|_| points).cloned(),
                floor: state.speakers.floor().filter(|_| points).cloned(),
            };
            let _ = new.outbox.send(welcome(&snapshot));
            state.members.insert(
                id,
                Member {
                    class,
                    conn: new.conn,
                    peer: new.peer,
                    held: new.held,
                    outbox: new.outbox,
                    kick: Some(new.kick),
                    uplink_kbps: new.uplink_kbps,
                    video: new.video,
                    viewport: HashMap::new(),
                    estimate_bps: None,
                    media: PeerMedia::default(),
                },
            );
        }
        drop(graveyard);
        Ok(())
    }

    /// Removes the member if `key` is still the current connection of that point. Returns whether
    /// it was removed (false when a newer connection replaced it).
    pub fn leave(&self, key: &MemberKey) -> bool {
        let removed = {
            let mut state = self.lock();
            let removed = match state.members.get(&key.id()) {
                Some(member) if member.conn == key.conn => remove_member(&mut state, &key.id()),
                _ => None,
            };
            if removed.is_some() && key.class == Class::Point {
                let (speaker, floor) = state.speakers.left(&key.point);
                for member in state.class(Class::Point) {
                    if speaker {
                        member.push(ServerMessage::ActiveSpeaker { point: None });
                    }
                    if floor {
                        member.push(ServerMessage::FloorGiven { point: None });
                    }
                }
            }
            removed
        };
        removed.is_some()
    }

    /// Takes the stream of audio-level reports (once): [`follow_speakers`] feeds them back.
    pub fn take_volumes(&self) -> Option<mpsc::UnboundedReceiver<Vec<ProducerId>>> {
        self.volumes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// One audio-level report, loudest producer first (empty: silence): the active speaker
    /// follows it, and every point is told when it changes.
    pub fn on_volumes(&self, loudest_first: &[ProducerId]) {
        let mut state = self.lock();
        let state = &mut *state;
        let mut points: Vec<PointName> = Vec::new();
        for id in loudest_first {
            let owner = state.class(Class::Point).find(|m| m.media.producers.contains_key(id));
            if let Some(point) = owner.map(|m| m.peer.point.clone()) {
                // A muted point is paused in the SFU; never let a stale level bring it forward.
                if !points.contains(&point) && !state.moderation.is_muted(&point) {
                    points.push(point);
                }
            }
        }
        if let Some(speaker) = state.speakers.report(&points) {
            for member in state.class(Class::Point) {
                member.push(ServerMessage::ActiveSpeaker { point: Some(speaker.clone()) });
            }
        }
    }

    /// The host stops whichever point's screen share is on: the sharer is told who stopped it,
    /// the others that the producer closed.
    pub fn stop_share(&self, key: &MemberKey) -> Result<ServerMessage, RoomError> {
        let (reply, closed) = {
            let mut state = self.lock();
            let actor = state.members.get(&key.id()).filter(|m| m.conn == key.conn).ok_or(RoomError::NotMember)?;
            if actor.peer.role != Role::Host {
                return Err(RoomError::Moderation(ModerationError::NotHost));
            }
            let by = actor.peer.display_name.clone();
            let Some(sharer) = state.sharing().map(|m| m.peer.point.clone()) else {
                return Err(RoomError::NoShare);
            };
            let id = (Class::Point, sharer.clone());
            let member = state.members.get_mut(&id).ok_or(RoomError::NoShare)?;
            let producer_id = member.media.screen.take().ok_or(RoomError::NoShare)?;
            let producer = member.media.producers.remove(&producer_id);
            let reply = ServerMessage::ShareStopped { point: sharer, by };
            member.push(reply.clone());
            let consumers = announce_producer_closed(&mut state, &id, producer_id);
            (reply, (producer, consumers))
        };
        drop(closed);
        Ok(reply)
    }

    /// The host gives the floor to `point`, or takes it back (`None`).
    pub fn give_floor(&self, key: &MemberKey, point: Option<PointName>) -> Result<ServerMessage, RoomError> {
        let mut state = self.lock();
        let state = &mut *state;
        let actor = state.members.get(&key.id()).filter(|m| m.conn == key.conn).ok_or(RoomError::NotMember)?;
        let role = actor.peer.role;
        let present = point.as_ref().is_some_and(|p| state.members.contains_key(&(Class::Point, p.clone())));
        if state.speakers.give_floor(role, point.as_ref(), present)? {
            for member in state.class(Class::Point) {
                member.push(ServerMessage::FloorGiven { point: point.clone() });
            }
        }
        Ok(ServerMessage::FloorGiven { point })
    }

    /// Closes the room for good: every member is told why and removed.
    pub fn close(&self, why: Kick) {
        let members: Vec<Member> = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.members).into_values().collect()
        };
        for mut member in members {
            member.kick(why);
        }
    }

    /// Tells every member to disconnect, without closing the room.
    /// Disconnects the point's members (not probes that carry its name).
    pub fn kick_point(&self, point: &PointName, why: Kick) {
        for member in self.lock().members.values_mut() {
            if member.class == Class::Point && member.peer.point == *point {
                member.kick(why);
            }
        }
    }

    pub fn kick_all(&self, why: Kick) {
        for member in self.lock().members.values_mut() {
            member.kick(why);
        }
    }

    /// Disconnects every member for which `revoked(its token's version, class, point)` holds:
    /// tokens below a raised epoch, rotated links, and points taken out of the session.
    pub fn revoke(&self, revoked: impl Fn(TokenVersion, Class, &PointName) -> bool) {
        for member in self.lock().members.values_mut() {
            if revoked(member.held, member.class, &member.peer.point) {
                member.kick(Kick::TokenRevoked);
            }
        }
    }

    pub fn member_count(&self) -> usize {
        self.lock().members.len()
    }

    /// What the SFU saw of each producer (voice, keyframes), for the statistics poller.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// A producer of any member, probes' included, by id.
    pub fn producer(&self, id: &ProducerId) -> Option<Producer> {
        self.lock().members.values().find_map(|m| m.media.producers.get(id).cloned())
    }

    /// Copies of every point's media handles (cheap: they are reference-counted). Probes are left
    /// out: their traffic is synthetic and must not show in, or verify, any point's figures.
    pub fn media_snapshot(&self) -> Vec<MemberMedia> {
        self.lock()
            .class(Class::Point)
            .map(|m| MemberMedia {
                point: m.peer.point.clone(),
                transports: m.media.transports.values().map(|t| t.transport.clone()).collect(),
                receiving: m
                    .media
                    .transports
                    .values()
                    .filter(|t| t.direction == Direction::Recv)
                    .map(|t| t.transport.clone())
                    .collect(),
                producers: m.media.producers.values().cloned().collect(),
                consumers: m.media.consumers.values().cloned().collect(),
            })
            .collect()
    }

    /// Runs `f` on the member's state if `key` is still current.
    fn with_member<R>(
        &self,
        key: &MemberKey,
        f: impl FnOnce(&mut Member) -> Result<R, RoomError>,
    ) -> Result<R, RoomError> {
        let mut state = self.lock();
        match state.members.get_mut(&key.id()) {
            Some(member) if member.conn == key.conn => f(member),
            _ => Err(RoomError::NotMember),
        }
    }

    fn transport(&self, key: &MemberKey, id: TransportId) -> Result<TransportEntry, RoomError> {
        self.with_member(key, |m| m.media.transports.get(&id).cloned().ok_or(RoomError::TransportNotFound))
    }

    fn check_transport_room(&self, key: &MemberKey) -> Result<(), RoomError> {
        self.with_member(key, |m| {
            if m.media.transports.len() >= MAX_TRANSPORTS {
                Err(RoomError::Limit("transports"))
            } else {
                Ok(())
            }
        })
    }

    fn store_transport(&self, key: &MemberKey, id: TransportId, entry: TransportEntry) -> Result<(), RoomError> {
        // On failure the entry is dropped after the lock is released, closing the transport.
        let mut entry = Some(entry);
        let stored = self.with_member(key, |m| {
            if let Some(entry) = entry.take() {
                m.media.transports.insert(id, entry);
            }
            Ok(())
        });
        drop(entry);
        stored
    }

    /// Gives the socket on `port` the configured receive buffer ([`crate::rtc_socket`]). A
    /// failure leaves the kernel's default: the transport works, with less room for bursts, so it
    /// is logged, not refused. Under a container runtime's default seccomp profile (the worker
    /// pod's `RuntimeDefault`) `pidfd_getfd` is refused without CAP_SYS_PTRACE: that is said once
    /// and not tried again; the node's `net.core.rmem_default` is then what counts
    /// (docs/media-worker.md, "Media nodes").
    async fn size_receive_buffer(&self, port: u16) {
        static REFUSED: AtomicBool = AtomicBool::new(false);
        let Some(bytes) = self.receive_buffer else { return };
        if REFUSED.load(Ordering::Relaxed) {
            return;
        }
        match tokio::task::spawn_blocking(move || crate::rtc_socket::set_receive_buffer(port, bytes)).await {
            Ok(Ok(size)) => tracing::debug!(port, size, "RTC socket receive buffer set"),
            Ok(Err(error @ crate::rtc_socket::RtcSocketError::Duplicate { .. })) => {
                if !REFUSED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error,
                        "RTC sockets keep the kernel's receive buffer (net.core.rmem_default); not tried again"
                    );
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(port, error = %error, "failed to set an RTC socket's receive buffer; bursts may be dropped")
            }
            Err(error) => tracing::warn!(port, error = %error, "the receive buffer task failed"),
        }
    }

    pub async fn create_webrtc_transport(
        &self,
        key: &MemberKey,
        direction: Direction,
    ) -> Result<ServerMessage, RoomError> {
        self.check_transport_room(key)?;
        // `uplinkKbps` and the session's video cap limit what the point sends, so they only
        // concern the send direction.
        let cap = match direction {
            Direction::Send => self.with_member(key, |m| {
                Ok(m.video.send_cap_kbps(m.uplink_kbps.map_or(0, NonZeroU32::get)).and_then(NonZeroU32::new))
            })?,
            Direction::Recv => None,
        };
        let router = self.router.clone();
        let listen_ip = self.listen_ip;
        let transport = self
            .media
            .run(move || async move {
                let mut options = WebRtcTransportOptions::new(TransportListenIps::new(listen_ip));
                // TCP as a fallback for office networks that block UDP.
                options.enable_tcp = true;
                options.prefer_udp = true;
                let transport = router.create_webrtc_transport(options).await.map_err(|e| e.to_string())?;
                if let Some(kbps) = cap {
                    // mediasoup reports the cap to the browser's congestion control (REMB and
                    // transport-cc), so the point's encoder backs off to it.
                    transport
                        .set_max_incoming_bitrate(kbps.get().saturating_mul(1000))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(transport)
            })
            .await?
            .map_err(|e| RoomError::media("create a WebRTC transport")(&e))?;
        for candidate in transport.ice_candidates() {
            if candidate.protocol == TransportProtocol::Udp {
                self.size_receive_buffer(candidate.port).await;
            }
        }
        let reply = ServerMessage::WebRtcTransportCreated {
            transport_id: transport.id(),
            direction,
            ice_parameters: transport.ice_parameters().clone(),
            ice_candidates: transport.ice_candidates().clone(),
            dtls_parameters: transport.dtls_parameters(),
        };
        let entry = TransportEntry { direction, transport: MediaTransport::WebRtc(transport.clone()) };
        self.store_transport(key, transport.id(), entry)?;
        Ok(reply)
    }

    pub async fn connect_webrtc_transport(
        &self,
        key: &MemberKey,
        transport_id: TransportId,
        dtls_parameters: DtlsParameters,
    ) -> Result<ServerMessage, RoomError> {
        let MediaTransport::WebRtc(transport) = self.transport(key, transport_id)?.transport else {
            return Err(RoomError::TransportNotFound);
        };
        self.media
            .run(move || async move { transport.connect(WebRtcTransportRemoteParameters { dtls_parameters }).await })
            .await?
            .map_err(|e| RoomError::media("connect the WebRTC transport")(&e))?;
        Ok(ServerMessage::TransportConnected { transport_id })
    }

    /// New ICE credentials for one of the member's WebRTC transports (an ICE restart).
    pub async fn restart_ice(&self, key: &MemberKey, transport_id: TransportId) -> Result<ServerMessage, RoomError> {
        let MediaTransport::WebRtc(transport) = self.transport(key, transport_id)?.transport else {
            return Err(RoomError::TransportNotFound);
        };
        let ice_parameters = self
            .media
            .run(move || async move { transport.restart_ice().await })
            .await?
            .map_err(|e| RoomError::media("restart ICE")(&e))?;
        Ok(ServerMessage::IceRestarted { transport_id, ice_parameters })
    }

    /// A plain RTP transport, for probes only. It is always created in comedia mode: the worker
    /// sends only to the address the first incoming packet came from, never to one a client
    /// names, so a leaked token cannot turn the worker into a reflector aimed at a third party.
    /// (Binding an address in the probe's token was the alternative; comedia needs no address
    /// known when the token is issued, which the prober, often behind NAT, cannot know.)
    /// mediasoup 0.8.5 logs an error when it fails to parse the resulting `tuple` notification;
    /// the C++ worker has learnt the address all the same, and the statistics poller reads it
    /// from the transport's stats.
    pub async fn create_plain_transport(
        &self,
        key: &MemberKey,
        direction: Direction,
    ) -> Result<ServerMessage, RoomError> {
        if key.class != Class::Probe {
            return Err(RoomError::PlainTransportForbidden);
        }
        self.check_transport_room(key)?;
        let router = self.router.clone();
        let listen_ip = self.listen_ip;
        let transport = self
            .media
            .run(move || async move {
                let mut options = PlainTransportOptions::new(listen_ip);
                options.comedia = true;
                options.rtcp_mux = true;
                router.create_plain_transport(options).await
            })
            .await?
            .map_err(|e| RoomError::media("create a plain transport")(&e))?;
        let tuple = transport.tuple();
        self.size_receive_buffer(tuple.local_port()).await;
        let reply = ServerMessage::PlainTransportCreated {
            transport_id: transport.id(),
            direction,
            ip: listen_ip.announced_ip.unwrap_or(tuple.local_ip()),
            port: tuple.local_port(),
        };
        let entry = TransportEntry { direction, transport: MediaTransport::Plain(transport.clone()) };
        self.store_transport(key, transport.id(), entry)?;
        Ok(reply)
    }

    pub async fn produce(
        &self,
        key: &MemberKey,
        transport_id: TransportId,
        kind: MediaKind,
        rtp_parameters: RtpParameters,
        source: Option<MediaSource>,
    ) -> Result<ProducerId, RoomError> {
        let entry = self.transport(key, transport_id)?;
        if entry.direction != Direction::Send {
            return Err(RoomError::WrongDirection);
        }
        let source = source.unwrap_or(MediaSource::of_kind(kind));
        let screen = source == MediaSource::Screen;
        if source != MediaSource::of_kind(kind) && !screen || screen && kind != MediaKind::Video {
            return Err(RoomError::WrongSource { kind, what: source });
        }
        if screen {
            if key.class != Class::Point {
                return Err(RoomError::WrongSource { kind, what: source });
            }
            if let Some(sharer) = self.lock().sharing() {
                return Err(RoomError::ShareInProgress(sharer.peer.display_name.clone()));
            }
        }
        self.with_member(key, |m| {
            if m.media.producers.len() >= MAX_PRODUCERS {
                return Err(RoomError::Limit("producers"));
            }
            if kind == MediaKind::Video {
                layers::check_send(&rtp_parameters.encodings, m.video_budget_kbps())?;
            }
            Ok(())
        })?;
        let observer = self.audio_levels.clone();
        let evidence = self.evidence.clone();
        let producer = self
            .media
            .run(move || async move {
                let mut options = ProducerOptions::new(kind, rtp_parameters);
                // One receiver on a lossy line asks for key frames over and over; forwarding each
                // request would make the camera send key frames (several times a normal frame)
                // back to back, which pushes its encoder down for every other receiver too.
                options.key_frame_request_delay = KEY_FRAME_REQUEST_DELAY_MS;
                let producer = match entry.transport {
                    MediaTransport::WebRtc(t) => t.produce(options).await,
                    MediaTransport::Plain(t) => t.produce(options).await,
                }
                .map_err(|e| RoomError::media("produce")(&e))?;
                watch_producer(&producer, &observer, evidence).await?;
                Ok::<_, RoomError>(producer)
            })
            .await??;
        let producer_id = producer.id();
        let mut leftover = Some(producer);
        let stored = {
            let mut state = self.lock();
            let state = &mut *state;
            // Another point's share may have got in while mediasoup created this one.
            let raced = if screen { state.sharing().map(|m| m.peer.display_name.clone()) } else { None };
            match state.members.get_mut(&key.id()) {
                Some(_) if raced.is_some() => Err(RoomError::ShareInProgress(raced.unwrap_or_default())),
                Some(member) if member.conn == key.conn => {
                    if let Some(producer) = leftover.take() {
                        member.media.producers.insert(producer_id, producer);
                    }
                    if screen {
                        member.media.screen = Some(producer_id);
                    }
                    for ((class, point), other) in &state.members {
                        if *class == key.class && point != &key.point {
                            other.push(ServerMessage::NewProducer {
                                producer_id,
                                point: key.point.clone(),
                                kind,
                                source,
                            });
                        }
                    }
                    // Checked under the lock that stored it, so a mute racing this produce
                    // either sees the producer or is seen here.
                    let muted =
                        kind == MediaKind::Audio && key.class == Class::Point && state.moderation.is_muted(&key.point);
                    let stored = member_producer(state, key, producer_id);
                    Ok((producer_id, stored.filter(|_| muted)))
                }
                _ => Err(RoomError::NotMember),
            }
        };
        drop(leftover);
        let (producer_id, muted) = stored?;
        if let Some(producer) = muted {
            self.pause_all(vec![producer]).await?;
        }
        Ok(producer_id)
    }

    pub fn close_producer(&self, key: &MemberKey, producer_id: ProducerId) -> Result<ServerMessage, RoomError> {
        let closed = {
            let mut state = self.lock();
            let owns = matches!(
                state.members.get(&key.id()),
                Some(m) if m.conn == key.conn && m.media.producers.contains_key(&producer_id)
            );
            if !owns {
                return Err(RoomError::ProducerNotFound);
            }
            let producer = state.members.get_mut(&key.id()).and_then(|m| {
                if m.media.screen == Some(producer_id) {
                    m.media.screen = None;
                }
                m.media.producers.remove(&producer_id)
            });
            let consumers = announce_producer_closed(&mut state, &key.id(), producer_id);
            (producer, consumers)
        };
        drop(closed);
        Ok(ServerMessage::ProducerClosed { producer_id, point: key.point.clone() })
    }

    pub async fn consume(
        &self,
        key: &MemberKey,
        transport_id: TransportId,
        producer_id: ProducerId,
        rtp_capabilities: RtpCapabilities,
    ) -> Result<ServerMessage, RoomError> {
        let entry = self.transport(key, transport_id)?;
        if entry.direction != Direction::Recv {
            return Err(RoomError::WrongDirection);
        }
        let (owner, kind, choice) = {
            let state = self.lock();
            let Some(me) = state.members.get(&key.id()) else {
                return Err(RoomError::NotMember);
            };
            if me.media.consumers.len() >= MAX_CONSUMERS {
                return Err(RoomError::Limit("consumers"));
            }
            // One consumer per producer for a probe: with comedia a spoofed first packet could
            // aim a receive transport at someone else, and many consumers of one stream would
            // multiply what the probe sends. Browsers' consoles are not limited this way.
            if key.class == Class::Probe && me.media.consumers.values().any(|c| c.consumer.producer_id() == producer_id)
            {
                return Err(RoomError::AlreadyConsuming);
            }
            let (owner, kind) = find_producer(&state, key.class, producer_id).ok_or(RoomError::ProducerNotFound)?;
            let choice = video_choice(&state, me, producer_id, &owner);
            (owner, kind, choice)
        };
        if !self.router.can_consume(&producer_id, &rtp_capabilities) {
            return Err(RoomError::CannotConsume);
        }
        let consumer = self
            .media
            .run(move || async move {
                let mut options = ConsumerOptions::new(producer_id, rtp_capabilities);
                // Paused until the client says it is ready, so the first video frame it gets
                // is a key frame it can render.
                options.paused = true;
                if let Some(VideoChoice::Layer { spatial, .. }) = choice {
                    options.preferred_layers = Some(ConsumerLayers { spatial_layer: spatial, temporal_layer: None });
                }
                let consumer = match entry.transport {
                    MediaTransport::WebRtc(t) => t.consume(options).await,
                    MediaTransport::Plain(t) => t.consume(options).await,
                }
                .map_err(|e| e.to_string())?;
                let priority = match choice {
                    None => AUDIO_PRIORITY,
                    Some(VideoChoice::Layer { priority, .. }) => priority,
                    Some(VideoChoice::Paused) => 1,
                };
                consumer.set_priority(priority).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(consumer)
            })
            .await?
            .map_err(|e| RoomError::media("consume")(&e))?;
        let reply = ServerMessage::Consumed {
            consumer_id: consumer.id(),
            producer_id,
            point: owner.clone(),
            kind,
            rtp_parameters: consumer.rtp_parameters().clone(),
            paused: consumer.paused(),
        };
        let mut leftover = Some(ConsumerEntry { consumer, producer_point: owner, ready: false });
        let stored = {
            let mut state = self.lock();
            // The producer may have closed while mediasoup created the consumer; its
            // producerClosed announcement would then have missed this consumer.
            if find_producer(&state, key.class, producer_id).is_none() {
                Err(RoomError::ProducerNotFound)
            } else {
                match state.members.get_mut(&key.id()) {
                    Some(member) if member.conn == key.conn => {
                        if let Some(entry) = leftover.take() {
                            member.media.consumers.insert(entry.consumer.id(), entry);
                        }
                        Ok(reply)
                    }
                    _ => Err(RoomError::NotMember),
                }
            }
        };
        drop(leftover);
        stored
    }

    /// The host mutes `target`: its audio producers are paused in the SFU, so nobody hears it
    /// whatever its browser sends, and every point is told who muted it.
    pub async fn mute_point(&self, key: &MemberKey, target: &PointName) -> Result<ServerMessage, RoomError> {
        let (by, audio) = {
            let mut state = self.lock();
            let state = &mut *state;
            let actor = state.members.get(&key.id()).filter(|m| m.conn == key.conn).ok_or(RoomError::NotMember)?;
            let by = actor.peer.display_name.clone();
            let role = actor.peer.role;
            let target_member = state.members.get(&(Class::Point, target.clone()));
            state.moderation.mute(role, &by, target, target_member.is_some())?;
            let audio: Vec<Producer> = target_member
                .map(|m| m.media.producers.values().filter(|p| p.kind() == MediaKind::Audio).cloned().collect())
                .unwrap_or_default();
            for member in state.class(Class::Point) {
                member.push(ServerMessage::PointMuted { point: target.clone(), by: by.clone() });
            }
            (by, audio)
        };
        tracing::info!(point = %target, by = %by, "muted by the host");
        self.pause_all(audio).await?;
        Ok(ServerMessage::PointMuted { point: target.clone(), by })
    }

    /// The host asks `target` to unmute: the hold is lifted and the office is told; its audio
    /// stays paused until it resumes it (`resumeProducer`).
    pub fn ask_to_unmute(&self, key: &MemberKey, target: &PointName) -> Result<ServerMessage, RoomError> {
        let mut state = self.lock();
        let state = &mut *state;
        let actor = state.members.get(&key.id()).filter(|m| m.conn == key.conn).ok_or(RoomError::NotMember)?;
        let (role, by) = (actor.peer.role, actor.peer.display_name.clone());
        let target_member = state.members.get(&(Class::Point, target.clone()));
        state.moderation.ask_to_unmute(role, target, target_member.is_some())?;
        let asked = ServerMessage::UnmuteAsked { point: target.clone(), by };
        if let Some(member) = target_member {
            member.push(asked.clone());
        }
        Ok(asked)
    }

    /// Resumes one of the member's own producers in the SFU; its audio only once the host's
    /// hold is lifted. Every point is told when a muted point speaks again.
    pub async fn resume_producer(&self, key: &MemberKey, producer_id: ProducerId) -> Result<ServerMessage, RoomError> {
        let producer =
            self.with_member(key, |m| m.media.producers.get(&producer_id).cloned().ok_or(RoomError::ProducerNotFound))?;
        if producer.kind() == MediaKind::Audio {
            let mut state = self.lock();
            state.moderation.may_resume_audio(&key.point)?;
            if state.moderation.resumed(&key.point) {
                for member in state.class(Class::Point) {
                    member.push(ServerMessage::PointUnmuted { point: key.point.clone() });
                }
            }
        }
        self.media
            .run(move || async move { producer.resume().await })
            .await?
            .map_err(|e| RoomError::media("resume the producer")(&e))?;
        Ok(ServerMessage::ProducerResumed { producer_id })
    }

    async fn pause_all(&self, producers: Vec<Producer>) -> Result<(), RoomError> {
        if producers.is_empty() {
            return Ok(());
        }
        self.media
            .run(move || async move {
                for producer in producers {
                    producer.pause().await.map_err(|e| RoomError::media("pause the producer")(&e))?;
                }
                Ok::<_, RoomError>(())
            })
            .await?
    }

    /// The client is ready for the consumer's media. A video consumer whose tile is hidden stays
    /// paused until the tile shows again (`set_viewport`).
    pub async fn resume_consumer(&self, key: &MemberKey, consumer_id: ConsumerId) -> Result<ServerMessage, RoomError> {
        let consumer = {
            let mut state = self.lock();
            // A shared document is never hidden with its sharer's camera tile.
            let screens: Vec<ProducerId> = state.class(key.class).filter_map(|m| m.media.screen).collect();
            let m = state.members.get_mut(&key.id()).filter(|m| m.conn == key.conn).ok_or(RoomError::NotMember)?;
            let entry = m.media.consumers.get_mut(&consumer_id).ok_or(RoomError::ConsumerNotFound)?;
            entry.ready = true;
            let hidden = entry.consumer.kind() == MediaKind::Video
                && !screens.contains(&entry.consumer.producer_id())
                && m.viewport.get(&entry.producer_point).is_some_and(|t| !t.visible || t.height == 0);
            (!hidden).then(|| entry.consumer.clone())
        };
        if let Some(consumer) = consumer {
            self.media
                .run(move || async move { consumer.resume().await })
                .await?
                .map_err(|e| RoomError::media("resume the consumer")(&e))?;
        }
        Ok(ServerMessage::ConsumerResumed { consumer_id })
    }

    /// Follows the member's tiles: each video consumer gets the layer its tile needs and the
    /// priority its size earns, or is paused while its tile is hidden (see [`layers`]).
    pub async fn set_viewport(&self, key: &MemberKey, tiles: Vec<TileView>) -> Result<ServerMessage, RoomError> {
        if tiles.len() > MAX_CONSUMERS {
            return Err(RoomError::TooManyTiles);
        }
        let plan = {
            let mut state = self.lock();
            let Some(me) = state.members.get_mut(&key.id()).filter(|m| m.conn == key.conn) else {
                return Err(RoomError::NotMember);
            };
            me.viewport = tiles.into_iter().map(|t| (t.point.clone(), t)).collect();
            plan_member(&state, &key.id())
        };
        self.media
            .run(move || async move {
                for (consumer, ready, choice) in plan {
                    match choice {
                        VideoChoice::Paused => consumer.pause().await?,
                        VideoChoice::Layer { spatial, priority } => {
                            consumer
                                .set_preferred_layers(ConsumerLayers { spatial_layer: spatial, temporal_layer: None })
                                .await?;
                            consumer.set_priority(priority).await?;
                            if ready && consumer.paused() {
                                consumer.resume().await?;
                            }
                        }
                    }
                }
                Ok::<_, mediasoup::worker::RequestError>(())
            })
            .await?
            .map_err(|e| RoomError::media("apply the viewport")(&e))?;
        Ok(ServerMessage::ViewportApplied)
    }

    /// Takes the SFU's new bandwidth estimate towards `point` (from the statistics poller) and
    /// lowers or raises its pictures' layers to fit it ([`layers::fit_to_estimate`]). Only
    /// consumers whose preferred layer changes are touched.
    pub async fn fit_to_estimate(&self, point: &PointName, estimate_bps: Option<u32>) -> Result<(), RoomError> {
        let plan = {
            let mut state = self.lock();
            let id = (Class::Point, point.clone());
            let Some(member) = state.members.get_mut(&id) else {
                return Ok(());
            };
            member.estimate_bps = estimate_bps;
            plan_member(&state, &id)
        };
        let changed: Vec<_> = plan
            .into_iter()
            .filter_map(|(consumer, _, choice)| match choice {
                VideoChoice::Layer { spatial, .. }
                    if consumer.preferred_layers().map(|l| l.spatial_layer) != Some(spatial) =>
                {
                    Some((consumer, spatial))
                }
                _ => None,
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        self.media
            .run(move || async move {
                for (consumer, spatial) in changed {
                    consumer
                        .set_preferred_layers(ConsumerLayers { spatial_layer: spatial, temporal_layer: None })
                        .await?;
                }
                Ok::<_, mediasoup::worker::RequestError>(())
            })
            .await?
            .map_err(|e| RoomError::media("fit the layers to the estimate")(&e))
    }
}

/// Feeds the room's audio-level reports to [`Room::on_volumes`] until the room is gone (the task
/// holds only a weak reference, so it never keeps a closed room alive).
pub async fn follow_speakers(room: std::sync::Weak<Room>, mut volumes: mpsc::UnboundedReceiver<Vec<ProducerId>>) {
    while let Some(loudest_first) = volumes.recv().await {
        let Some(room) = room.upgrade() else { break };
        room.on_volumes(&loudest_first);
    }
}

/// Lets the SFU vouch for a new producer: audio joins the level observer, video reports its
/// keyframes. The handlers hold only the evidence map, so they keep nothing else alive.
async fn watch_producer(
    producer: &Producer,
    observer: &AudioLevelObserver,
    evidence: Evidence,
) -> Result<(), RoomError> {
    let id = producer.id();
    let closed = evidence.clone();
    producer.on_close(move || closed.forget(&id)).detach();
    match producer.kind() {
        MediaKind::Audio => observer
            .add_producer(RtpObserverAddProducerOptions::new(id))
            .await
            .map_err(|e| RoomError::media("observe audio levels")(&e))?,
        MediaKind::Video => {
            // One key frame is all the evidence needs (it never forgets a producer's), and every
            // packet of every key frame crosses from the C++ worker as a notification parsed here:
            // tens of packets per key frame at 720p, and in the forwarding benchmark, where every
            // packet is one, the tracing doubled the worker's CPU per VP8 packet. So it stops at
            // the first. Weak, so the handler does not keep its own producer alive.
            let (weak, runtime) = (producer.downgrade(), tokio::runtime::Handle::current());
            let stopping = std::sync::atomic::AtomicBool::new(false);
            producer
                .on_trace(move |event| {
                    if !matches!(event, ProducerTraceEventData::KeyFrame { .. }) {
                        return;
                    }
                    evidence.keyframe(id);
                    if stopping.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if let Some(producer) = weak.upgrade() {
                        // mediasoup calls this on its channel thread, outside the runtime.
                        runtime.spawn(async move {
                            if let Err(e) = producer.enable_trace_event(Vec::new()).await {
                                tracing::debug!(error = %e, "could not stop tracing key frames (the producer closed?)");
                            }
                        });
                    }
                })
                .detach();
            producer
                .enable_trace_event(vec![ProducerTraceEventType::KeyFrame])
                .await
                .map_err(|e| RoomError::media("trace keyframes")(&e))?;
        }
    }
    Ok(())
}

/// What each of the member's video consumers should get now: its tile's layer ([`layers::choose`])
/// lowered to fit the member's bandwidth estimate ([`layers::fit_to_estimate`]), or paused.
/// Returns the consumer, whether its client is ready, and the choice.
fn plan_member(state: &RoomState, id: &MemberId) -> Vec<(Consumer, bool, VideoChoice)> {
    let Some(me) = state.members.get(id) else {
        return Vec::new();
    };
    let mut shown = Vec::new();
    let mut demands = Vec::new();
    let mut plan = Vec::new();
    for entry in me.media.consumers.values().filter(|c| c.consumer.kind() == MediaKind::Video) {
        let Some(choice) = video_choice(state, me, entry.consumer.producer_id(), &entry.producer_point) else {
            continue;
        };
        match choice {
            VideoChoice::Paused => plan.push((entry.consumer.clone(), entry.ready, choice)),
            VideoChoice::Layer { spatial, priority } => {
                let layer_bps = producer_of(state, me.class, entry)
                    .map(|p| p.rtp_parameters().encodings.iter().map(|e| e.max_bitrate.unwrap_or(0)).collect())
                    .unwrap_or_default();
                demands.push(layers::Demand { wanted: spatial, priority, layer_bps });
                shown.push(entry);
            }
        }
    }
    let audio = me.media.consumers.values().filter(|c| c.consumer.kind() == MediaKind::Audio).count();
    let fitted = layers::fit_to_estimate(&demands, me.estimate_bps, audio);
    for ((entry, demand), spatial) in shown.into_iter().zip(&demands).zip(fitted) {
        plan.push((entry.consumer.clone(), entry.ready, VideoChoice::Layer { spatial, priority: demand.priority }));
    }
    plan
}

/// The producer a consumer entry consumes, if it is still there.
fn producer_of<'a>(state: &'a RoomState, class: Class, entry: &ConsumerEntry) -> Option<&'a Producer> {
    state.members.get(&(class, entry.producer_point.clone()))?.media.producers.get(&entry.consumer.producer_id())
}

/// What `me` gets of `producer_id` (owned by `owner`): `None` for audio, else the layer its
/// tile needs (see [`layers::choose`]).
fn video_choice(state: &RoomState, me: &Member, producer_id: ProducerId, owner: &PointName) -> Option<VideoChoice> {
    let owner_member = state.members.get(&(me.class, owner.clone()))?;
    let producer = owner_member.media.producers.get(&producer_id)?;
    if producer.kind() != MediaKind::Video {
        return None;
    }
    let top = match owner_member.video.max_height {
        0 => DEFAULT_TOP_HEIGHT,
        h => h,
    };
    let heights = layers::layer_heights(&producer.rtp_parameters().encodings, top);
    if owner_member.media.screen == Some(producer_id) {
        // A shared document has a tile of its own, first and across the row, whatever size or
        // visibility the sharer's camera tile has: its full picture, just below audio.
        return Some(VideoChoice::Layer {
            spatial: u8::try_from(heights.len().saturating_sub(1)).unwrap_or(0),
            priority: 254,
        });
    }
    Some(layers::choose(&heights, me.viewport.get(owner)))
}

fn member_producer(state: &RoomState, key: &MemberKey, producer_id: ProducerId) -> Option<Producer> {
    state.members.get(&key.id()).and_then(|m| m.media.producers.get(&producer_id)).cloned()
}

fn producer_infos(member: &Member) -> impl Iterator<Item = ProducerInfo> + '_ {
    member.media.producers.values().map(|p| ProducerInfo {
        producer_id: p.id(),
        point: member.peer.point.clone(),
        kind: p.kind(),
        source: member.media.source(p),
    })
}

/// A producer `class` may consume: only its own class's (see [`Class`]).
fn find_producer(state: &RoomState, class: Class, producer_id: ProducerId) -> Option<(PointName, MediaKind)> {
    state.class(class).find_map(|m| m.media.producers.get(&producer_id).map(|p| (m.peer.point.clone(), p.kind())))
}

/// Tells every other member the producer is gone and drops their consumers of it. Returns the
/// removed consumers so the caller can drop them outside the lock.
fn announce_producer_closed(state: &mut RoomState, owner: &MemberId, producer_id: ProducerId) -> Vec<ConsumerEntry> {
    let mut removed = Vec::new();
    for (id, member) in &mut state.members {
        let ids: Vec<ConsumerId> = member
            .media
            .consumers
            .iter()
            .filter(|(_, c)| c.consumer.producer_id() == producer_id)
            .map(|(id, _)| *id)
            .collect();
        for consumer_id in ids {
            if let Some(entry) = member.media.consumers.remove(&consumer_id) {
                member.push(ServerMessage::ConsumerClosed { consumer_id, producer_id });
                removed.push(entry);
            }
        }
        if id.0 == owner.0 && id != owner {
            member.push(ServerMessage::ProducerClosed { producer_id, point: owner.1.clone() });
        }
    }
    removed
}

/// Removes a member and announces its departure. The member (and its media) is returned so it is
/// dropped by the caller, after the lock.
fn remove_member(state: &mut RoomState, id: &MemberId) -> Option<Member> {
    let member = state.members.remove(id)?;
    for producer_id in member.media.producers.keys() {
        // The consumers are dropped here, under the lock; that only queues close requests.
        drop(announce_producer_closed(state, id, *producer_id));
    }
    for other in state.class(id.0) {
        other.push(ServerMessage::PeerLeft { point: id.1.clone() });
    }
    Some(member)
}
