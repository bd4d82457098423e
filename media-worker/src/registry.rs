//! The worker's state: which session it is bound to (the allocation), the session's room (held
//! weakly), and what it knows about each point for the whole allocation.
//!
//! ```text
//! Registry ─ allocation: session, title, epoch, generation
//!          ─ room: Weak<Room>          (strong refs: the members' Memberships)
//!          ─ points: point -> PointRecord  (verification; survives the room)
//! ```

use crate::checks::{ChecksError, ConsoleCheck};
use crate::config::{Announce, AnnouncedStatus, Thresholds};
use crate::ids::{PointName, SessionId};
use crate::local_runner::LocalRunner;
use crate::metrics::Metrics;
use crate::room::{Class, ConnectionId, JoinSnapshot, Kick, MemberKey, NewMember, Outbox, Room, RoomError, RtcSockets};
use crate::signaling::protocol::{
    ErrorCode, IceServer, IceTransportPolicy, PeerInfo, RequestId, ServerEnvelope, ServerMessage,
};
use crate::tokens::{unix_now, JoinRules, PublicKeys, TokenError, TokenVersion, VerifiedJoin};
use crate::turn::TurnConfig;
use crate::verification::{MediaSample, PointRecord, WorkerStatus};
use crate::workers::WorkerPool;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;
use tokio::sync::{oneshot, Notify};

/// The session a worker is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub session: SessionId,
    pub title: String,
    /// Join tokens with a lower epoch are refused.
    pub epoch: u64,
    /// The session's points, when the operator has said: a point taken out of the session (its
    /// ReceptionPoint deleted, or edited out of the spec) has its link refused and its connections
    /// closed, although its token is still validly signed. `None` accepts every point a valid
    /// token names (a worker started bound, before the operator's first word).
    pub points: Option<BTreeSet<PointName>>,
    /// Each point's lowest accepted link generation (absent: 0). Raised when ops rotate a leaked
    /// link, or when a point comes back after being taken out: the point's older links are then
    /// refused and their connections closed.
    pub link_generations: BTreeMap<PointName, u32>,
}

impl Allocation {
    /// An allocation before the operator has named points or rotated links.
    pub fn new(session: SessionId, title: String, epoch: u64) -> Self {
        Self { session, title, epoch, points: None, link_generations: BTreeMap::new() }
    }

    /// Whether a member may be in the session: a point on the list (or any point without one)
    /// whose link is of its current generation, or any probe: the list names points, and a probe
    /// is never one (it is still bound to the session, the time window and the epoch like every
    /// token).
    fn admits(&self, class: Class, point: &PointName, link_generation: u32) -> bool {
        class == Class::Probe || (self.names(point) && link_generation >= self.link_generation(point))
    }

    /// Whether the point is in the session (any point, before the operator has said).
    fn names(&self, point: &PointName) -> bool {
        self.points.as_ref().is_none_or(|p| p.contains(point))
    }

    /// The point's lowest accepted link generation.
    fn link_generation(&self, point: &PointName) -> u32 {
        self.link_generations.get(point).copied().unwrap_or(0)
    }

    /// Whether `update` refuses a link this allocation accepts.
    fn narrowed_by(&self, update: &Allocation) -> bool {
        let points =
            update.points.as_ref().is_some_and(|new| self.points.as_ref().is_none_or(|old| !new.is_superset(old)));
        let links =
            update.link_generations.iter().any(|(p, g)| *g > self.link_generations.get(p).copied().unwrap_or(0));
        points || links
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    #[error("the worker is already allocated to session {current}")]
    AlreadyAllocated { current: SessionId },
    #[error("the worker is draining")]
    Draining,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the worker is draining and takes no new joins")]
    Draining,
    #[error("the worker is not allocated to any session")]
    NotAllocated,
    #[error("the worker does not know its public address yet (it comes with the operator's allocation call)")]
    NoAnnouncedAddress,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("no mediasoup worker is alive")]
    NoWorker,
    #[error("point {0} is no longer part of the session; its link was withdrawn")]
    PointRemoved(PointName),
    #[error("this link of point {point} was replaced by a newer one (generation {current}); ask the operator for the current link")]
    LinkRotated { point: PointName, current: u32 },
    #[error(transparent)]
    Room(#[from] RoomError),
}

impl JoinError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Draining => ErrorCode::Draining,
            // Not ready for the session yet, as far as a console can tell: it retries.
            Self::NotAllocated | Self::NoAnnouncedAddress => ErrorCode::SessionNotAllocated,
            Self::Token(e) => e.code(),
            Self::NoWorker => ErrorCode::Internal,
            Self::PointRemoved(_) | Self::LinkRotated { .. } => ErrorCode::TokenRevoked,
            // The room closed between lookup and join: the session was deallocated.
            Self::Room(RoomError::Closed) => ErrorCode::SessionNotAllocated,
            Self::Room(e) => e.code(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    allocation: Option<Allocation>,
    /// Bumped on every (de)allocation so late results for an old session are ignored.
    generation: u64,
    room: Weak<Room>,
    points: BTreeMap<PointName, PointRecord>,
}

/// Everything the signaling, HTTP and statistics parts share.
#[derive(Debug)]
pub struct Registry {
    state: Mutex<State>,
    /// Serialises room creation so two first joins do not create two routers.
    room_creation: tokio::sync::Mutex<()>,
    workers: WorkerPool,
    media: LocalRunner,
    public_keys: PublicKeys,
    rtc_listen_ip: IpAddr,
    /// Joins wait for an address from the allocation call.
    announce_from_allocation: bool,
    /// What ICE candidates name (`None`: the RTC listen IP). Rooms take it when they open.
    announced: Mutex<Option<AnnouncedStatus>>,
    rtc_receive_buffer: Option<usize>,
    thresholds: Thresholds,
    turn: Option<TurnConfig>,
    metrics: Metrics,
    next_connection: AtomicU64,
    draining: AtomicBool,
    /// Signalled whenever a point leaves, for the drain loop.
    left: Notify,
}

/// Membership of one connection in the room; dropping it leaves the room (closing the
/// connection's media) and records the point as gone.
#[derive(Debug)]
pub struct Membership {
    registry: Arc<Registry>,
    room: Arc<Room>,
    key: MemberKey,
    generation: u64,
}

impl Membership {
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    pub fn key(&self) -> &MemberKey {
        &self.key
    }

    /// Records this point's console checklist (`reportChecks`).
    pub fn report_checks(&self, checks: &[ConsoleCheck]) -> Result<(), ReportChecksError> {
        if self.key.class == Class::Probe {
            return Err(ReportChecksError::Probe);
        }
        self.registry.report_checks(self.generation, &self.key.point, checks, jiff::Timestamp::now())
    }
}

/// Why a checklist report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportChecksError {
    #[error("a probe is not a reception point and has no checklist")]
    Probe,
    #[error(transparent)]
    Invalid(#[from] ChecksError),
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.room.leave(&self.key) && self.key.class == Class::Point {
            self.registry.point_left(self.generation, &self.key.point);
        }
    }
}

/// A successful join; the `joined` reply is already queued on the connection's outbox.
#[derive(Debug)]
pub struct Joined {
    pub membership: Membership,
    pub kicked: oneshot::Receiver<Kick>,
    /// When (Unix seconds) the token stops being valid: the connection is closed then.
    pub expires: i64,
}

/// Settings the registry needs from the configuration.
#[derive(Debug)]
pub struct RegistrySettings {
    pub public_keys: PublicKeys,
    pub rtc_listen_ip: IpAddr,
    pub announce: Announce,
    pub rtc_receive_buffer: Option<usize>,
    pub thresholds: Thresholds,
    /// The TURN relays points are offered, with credentials per point.
    pub turn: Option<TurnConfig>,
}

impl Registry {
    pub fn new(settings: RegistrySettings, workers: WorkerPool, media: LocalRunner, metrics: Metrics) -> Self {
        Self {
            state: Mutex::default(),
            room_creation: tokio::sync::Mutex::new(()),
            workers,
            media,
            public_keys: settings.public_keys,
            rtc_listen_ip: settings.rtc_listen_ip,
            announce_from_allocation: settings.announce == Announce::FromAllocation,
            announced: Mutex::new(match settings.announce {
                Announce::Fixed(a) => Some(a),
                Announce::ListenIp | Announce::FromAllocation => None,
            }),
            rtc_receive_buffer: settings.rtc_receive_buffer,
            thresholds: settings.thresholds,
            turn: settings.turn,
            metrics,
            next_connection: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            left: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn workers(&self) -> &WorkerPool {
        &self.workers
    }

    pub fn allocation(&self) -> Option<Allocation> {
        self.lock().allocation.clone()
    }

    /// What ICE candidates name, if not the RTC listen IP.
    pub fn announced(&self) -> Option<AnnouncedStatus> {
        self.announced.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Announces `announced` from now on: in rooms opened from now on (the address of a node
    /// does not change under a running pod; an edited node annotation reaches the next room).
    pub fn announce(&self, announced: AnnouncedStatus) {
        let mut current = self.announced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref() != Some(&announced) {
            tracing::info!(address = %announced.address, ip = %announced.ip, "announcing the operator's address");
            *current = Some(announced);
        }
    }

    /// The RTC listen IP, for resolving a host name to an address of its family.
    pub fn rtc_listen_ip(&self) -> IpAddr {
        self.rtc_listen_ip
    }

    /// Binds the worker to `session`. Repeating it for the same session updates the title and
    /// the session's points, and raises (never lowers) the revocation epoch, disconnecting
    /// members with older tokens or of points no longer in the session.
    pub fn allocate(&self, wanted: Allocation) -> Result<Allocation, AllocationError> {
        if self.is_draining() {
            return Err(AllocationError::Draining);
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let (allocation, revoke) = match &mut state.allocation {
            Some(current) if current.session != wanted.session => {
                return Err(AllocationError::AlreadyAllocated { current: current.session.clone() });
            }
            Some(current) => {
                let raised = wanted.epoch > current.epoch;
                let narrowed = current.narrowed_by(&wanted);
                if narrowed {
                    tracing::info!(
                        session = %current.session,
                        points = ?wanted.points,
                        link_generations = ?wanted.link_generations,
                        "the session's points or links changed"
                    );
                }
                // Generations, like the epoch, only go up: a late or repeated call from an
                // operator that has not seen a rotation yet must not bring an old link back.
                let mut link_generations = std::mem::take(&mut current.link_generations);
                for (point, g) in wanted.link_generations {
                    let slot = link_generations.entry(point).or_default();
                    *slot = (*slot).max(g);
                }
                *current = Allocation { epoch: current.epoch.max(wanted.epoch), link_generations, ..wanted };
                let revoke = if raised || narrowed { state.room.upgrade() } else { None };
                (current.clone(), revoke)
            }
            None => {
                tracing::info!(session = %wanted.session, epoch = wanted.epoch, "allocated");
                state.generation += 1;
                state.points.clear();
                state.allocation = Some(wanted.clone());
                (wanted, None)
            }
        };
        // Kicking members takes the room's lock; never nest it inside the registry's.
        drop(guard);
        if let Some(room) = revoke {
            room.revoke(|held, class, point| {
                held.epoch < allocation.epoch || !allocation.admits(class, point, held.link_generation)
            });
        }
        Ok(allocation)
    }

    /// Returns the worker to idle: closes the room and forgets every point. Returns the session
    /// it was bound to, if any.
    pub fn deallocate(&self) -> Option<SessionId> {
        let (allocation, room, points) = {
            let mut state = self.lock();
            let allocation = state.allocation.take()?;
            state.generation += 1;
            let room = std::mem::take(&mut state.room).upgrade();
            let points = std::mem::take(&mut state.points);
            (allocation, room, points)
        };
        if let Some(room) = room {
            room.close(Kick::SessionClosed);
        }
        self.metrics.forget_session(&allocation.session, points.keys());
        self.metrics.sessions.set(0);
        self.left.notify_waiters();
        tracing::info!(session = %allocation.session, "deallocated");
        Some(allocation.session)
    }

    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.draining.set(1);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// How many points have a signaling connection now.
    pub fn present_count(&self) -> usize {
        self.lock().points.values().filter(|p| p.present()).count()
    }

    /// Completes when a point leaves (or the worker is deallocated). Interest is registered when
    /// this is called, not when it is first polled, so check-then-wait has no gap.
    pub fn point_left_notification(&self) -> tokio::sync::futures::Notified<'_> {
        self.left.notified()
    }

    /// Disconnects every member (shutdown after draining).
    pub fn kick_everyone(&self, why: Kick) {
        let room = self.lock().room.upgrade();
        if let Some(room) = room {
            room.kick_all(why);
        }
    }

    /// The open room, with the generation it belongs to.
    pub fn live_room(&self) -> Option<(u64, Arc<Room>)> {
        let state = self.lock();
        state.room.upgrade().map(|room| (state.generation, room))
    }

    /// Everything `join` checks before touching the room: the worker's state and the token. The
    /// console asks this (`POST /v1/join-check`) to explain a link before anyone presses "join".
    pub fn check_join(&self, token: &str, now: i64) -> Result<(Allocation, VerifiedJoin), JoinError> {
        if self.is_draining() {
            return Err(JoinError::Draining);
        }
        let allocation = self.allocation().ok_or(JoinError::NotAllocated)?;
        if self.announce_from_allocation && self.announced().is_none() {
            return Err(JoinError::NoAnnouncedAddress);
        }
        let verified = self
            .public_keys
            .verify_join(token, JoinRules { session: &allocation.session, min_epoch: allocation.epoch, now })?;
        if !allocation.admits(Class::of(verified.role), &verified.point, verified.link_generation) {
            if !allocation.names(&verified.point) {
                return Err(JoinError::PointRemoved(verified.point));
            }
            let current = allocation.link_generation(&verified.point);
            return Err(JoinError::LinkRotated { point: verified.point, current });
        }
        Ok((allocation, verified))
    }

    /// The TURN relays offered to a joining point, with credentials for `<session>/<point>` that
    /// expire with its token, and whether it must use them only.
    fn relay_for(&self, session: &SessionId, verified: &VerifiedJoin) -> (Vec<IceServer>, IceTransportPolicy) {
        let servers: Vec<IceServer> = self
            .turn
            .iter()
            .map(|turn| turn.ice_server(&format!("{session}/{}", verified.point), verified.expires_at))
            .collect();
        if !verified.relay {
            return (servers, IceTransportPolicy::All);
        }
        if servers.is_empty() {
            // Still relay-only: the point's firewall lets nothing else through, so offering host
            // candidates would only delay the failure the console reports ("no media path").
            tracing::warn!(point = %verified.point, "the point's token requires a TURN relay, but the worker has no --turn-url");
        }
        (servers, IceTransportPolicy::Relay)
    }

    /// Verifies the token and adds the connection to the session's room, opening the room on the
    /// first join.
    pub async fn join(
        self: &Arc<Self>,
        token: &str,
        outbox: Outbox,
        request_id: Option<RequestId>,
    ) -> Result<Joined, JoinError> {
        let (allocation, verified) = self.check_join(token, unix_now())?;
        let (generation, room) = self.room_for(&allocation.session).await?;
        let conn = ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed));
        let (kick, kicked) = oneshot::channel();
        let peer = PeerInfo {
            point: verified.point.clone(),
            display_name: verified.display_name.clone(),
            role: verified.role,
        };
        let (ice_servers, ice_transport_policy) = self.relay_for(&allocation.session, &verified);
        let uplink_kbps = verified.uplink_kbps;
        let video = verified.video;
        let welcome = |snapshot: &JoinSnapshot| ServerEnvelope {
            request_id,
            message: ServerMessage::Joined {
                point: verified.point.clone(),
                session: allocation.session.clone(),
                title: allocation.title.clone(),
                router_rtp_capabilities: snapshot.router_rtp_capabilities.clone(),
                peers: snapshot.peers.clone(),
                producers: snapshot.producers.clone(),
                ice_servers,
                ice_transport_policy,
                uplink_kbps: uplink_kbps.map(std::num::NonZeroU32::get),
                video,
                muted_points: snapshot.muted_points.clone(),
                active_speaker: snapshot.active_speaker.clone(),
                floor: snapshot.floor.clone(),
            },
        };
        let held = TokenVersion { epoch: verified.epoch, link_generation: verified.link_generation };
        room.join(NewMember { peer, conn, held, outbox, kick, uplink_kbps, video }, welcome)?;
        let class = Class::of(verified.role);
        let key = MemberKey { class, point: verified.point.clone(), conn };
        // From here on, dropping the membership undoes the join.
        let membership = Membership { registry: Arc::clone(self), room, key, generation };
        {
            let mut state = self.lock();
            if state.generation != generation {
                // Deallocated while joining; the membership's drop cleans up.
                return Err(JoinError::Room(RoomError::Closed));
            }
            // Only points have a record: a probe is never listed, present or verified, even
            // when its token names a point.
            if class == Class::Point {
                state
                    .points
                    .entry(verified.point.clone())
                    .or_insert_with(|| PointRecord::new(verified.display_name.clone()))
                    .on_join(verified.display_name.clone(), verified.audio_only, verified.starts_at);
            }
        }
        if class == Class::Point {
            // At 0 from the join on, so a dashboard's rate() shows "no freezes" rather than no data.
            let labels = [allocation.session.as_str(), verified.point.as_str()];
            self.metrics.video_freezes.with_label_values(&labels);
            self.metrics.video_freeze_seconds.with_label_values(&labels);
        }
        self.metrics.joins.inc();
        tracing::info!(
            session = %allocation.session, point = %verified.point, conn = conn.0, probe = verified.role.is_probe(),
            "point joined"
        );
        Ok(Joined { membership, kicked, expires: crate::tokens::refused_from(verified.expires_at) })
    }

    async fn room_for(&self, session: &SessionId) -> Result<(u64, Arc<Room>), JoinError> {
        let _creating = self.room_creation.lock().await;
        let generation = {
            let state = self.lock();
            if let Some(room) = state.room.upgrade() {
                return Ok((state.generation, room));
            }
            state.generation
        };
        let worker = self.workers.pick().ok_or(JoinError::NoWorker)?;
        let room = Arc::new(
            Room::open(
                session.clone(),
                worker,
                self.media.clone(),
                RtcSockets {
                    listen_ip: self.rtc_listen_ip,
                    announced_ip: self.announced().map(|a| a.ip),
                    receive_buffer: self.rtc_receive_buffer,
                },
            )
            .await?,
        );
        let mut state = self.lock();
        let still_same =
            state.generation == generation && state.allocation.as_ref().map(|a| &a.session) == Some(session);
        if !still_same {
            return Err(JoinError::Room(RoomError::Closed));
        }
        state.room = Arc::downgrade(&room);
        self.metrics.sessions.set(1);
        if let Some(volumes) = room.take_volumes() {
            tokio::spawn(crate::room::follow_speakers(Arc::downgrade(&room), volumes));
        }
        Ok((generation, room))
    }

    fn point_left(&self, generation: u64, point: &PointName) {
        {
            let mut state = self.lock();
            if state.generation == generation {
                if let Some(record) = state.points.get_mut(point) {
                    record.on_leave();
                }
                if let Some(allocation) = &state.allocation {
                    self.metrics.forget_point_quality(&allocation.session, point);
                }
            }
        }
        tracing::info!(point = %point, "point left");
        self.left.notify_waiters();
    }

    fn report_checks(
        &self,
        generation: u64,
        point: &PointName,
        checks: &[ConsoleCheck],
        wall_now: jiff::Timestamp,
    ) -> Result<(), ReportChecksError> {
        let mut state = self.lock();
        // A report from a deallocated session's connection has nothing left to prove.
        if state.generation != generation {
            return Ok(());
        }
        if let Some(record) = state.points.get_mut(point) {
            if record.report_checks(checks, wall_now)? {
                tracing::info!(point = %point, "point verified");
            }
        }
        Ok(())
    }

    /// Applies one statistics poll to the point records.
    pub fn record_samples(
        &self,
        generation: u64,
        samples: Vec<(PointName, MediaSample)>,
        now: Instant,
        wall_now: jiff::Timestamp,
    ) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        let session = state.allocation.as_ref().map(|a| a.session.clone());
        let mut interrupt = Vec::new();
        for (point, sample) in samples {
            if let Some(record) = state.points.get_mut(&point) {
                if record.observe(sample, now, wall_now, &self.thresholds) {
                    tracing::info!(point = %point, "point verified");
                }
                if record.interruption_due(now, wall_now) {
                    record.interrupted(now);
                    interrupt.push(point.clone());
                }
                if let Some(session) = &session {
                    self.metrics
                        .verified
                        .with_label_values(&[session.as_str(), point.as_str()])
                        .set(i64::from(record.verified()));
                }
            }
        }
        if let Some(session) = &session {
            let present = state.points.values().filter(|p| p.present()).count();
            self.metrics
                .connected_points
                .with_label_values(&[session.as_str()])
                .set(i64::try_from(present).unwrap_or(i64::MAX));
        }
        let room = state.room.upgrade();
        drop(state);
        if let Some(room) = room {
            for point in interrupt {
                tracing::info!(point = %point, "interrupting the point to prove it reconnects");
                room.kick_point(&point, Kick::ReconnectCheck);
            }
        }
    }

    /// The `/v1/status` document.
    pub fn status(&self) -> WorkerStatus {
        let state = self.lock();
        WorkerStatus {
            session: state.allocation.as_ref().map(|a| a.session.clone()),
            title: state.allocation.as_ref().map(|a| a.title.clone()),
            allowed_points: state.allocation.as_ref().and_then(|a| a.points.clone()),
            link_generations: state.allocation.as_ref().map(|a| a.link_generations.clone()).unwrap_or_default(),
            draining: self.is_draining(),
            points: state
                .points
                .iter()
                .map(|(name, record)| {
                    let mut status = record.status(name);
                    status.freezes = match &state.allocation {
                        // Counted where the browser's reports land; read only for a point that
                        // joined, whose series exists from its join on (reading creates one).
                        Some(a) if status.joined => self
                            .metrics
                            .video_freezes
                            .get_metric_with_label_values(&[a.session.as_str(), name.as_str()])
                            .map_or(0, |c| c.get()),
                        _ => 0,
                    };
                    status
                })
                .collect(),
            // The HTTP layer knows the served certificate; see `http::status`.
            tls: None,
            announced: self.announced(),
        }
    }
}
