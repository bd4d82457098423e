//! The error codes of the signaling protocol, which the worker also uses for refused tokens.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Stable, machine-readable error codes. They are part of the protocol (clients switch on them)
/// and a bounded metric label, so add variants rather than renaming them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object with the fields its action needs.
    MalformedMessage,
    UnknownAction,
    FrameTooLarge,
    /// The signature, issuer or claims of the token are wrong.
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    /// The token's epoch is below the worker's revocation epoch.
    TokenRevoked,
    /// The token was issued for a session other than the one this worker serves.
    WrongSession,
    /// The worker is not bound to any session yet.
    SessionNotAllocated,
    /// The worker is shutting down and takes no new joins.
    Draining,
    NotJoined,
    AlreadyJoined,
    TransportNotFound,
    /// E.g. `produce` on a receive transport.
    WrongTransportDirection,
    ProducerNotFound,
    ConsumerNotFound,
    /// The client's RTP capabilities cannot receive the producer's codec.
    CannotConsume,
    /// Another connection joined as the same point; this one is closed.
    Replaced,
    /// The operator deallocated the session.
    SessionClosed,
    /// Too many transports, producers or consumers for one point.
    LimitExceeded,
    /// mediasoup refused the request (bad RTP parameters, DTLS parameters, ...).
    MediaRejected,
    Internal,
    /// A point's token asked for a plain (unencrypted) RTP transport; only probe tokens may.
    PlainTransportForbidden,
    /// A client named the remote address of a plain transport; the worker learns it from the
    /// first incoming packet instead.
    RemoteAddressForbidden,
    /// The worker closed the connection on purpose to prove the office reconnects by itself
    /// (the checklist's `reconnect` item, during the rehearsal): rejoin at once.
    ReconnectCheck,
    /// Only the host's console may mute a point or ask it to unmute.
    NotHost,
    /// The host muted this point; its audio resumes once the host asks it to unmute.
    MutedByHost,
    /// The point named in a moderation request is not in the room now.
    PointNotPresent,
    /// Another point is sharing a document; one share at a time.
    ShareInProgress,
    /// `stopShare` while nobody shares.
    NoShare,
}

impl ErrorCode {
    /// Every code, in declaration order (checked against the enum by a test in
    /// `console_types`, which also generates the console's `ErrorCode` union from the enum).
    pub const ALL: [ErrorCode; 30] = [
        Self::MalformedMessage,
        Self::UnknownAction,
        Self::FrameTooLarge,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::TokenNotYetValid,
        Self::TokenRevoked,
        Self::WrongSession,
        Self::SessionNotAllocated,
        Self::Draining,
        Self::NotJoined,
        Self::AlreadyJoined,
        Self::TransportNotFound,
        Self::WrongTransportDirection,
        Self::ProducerNotFound,
        Self::ConsumerNotFound,
        Self::CannotConsume,
        Self::Replaced,
        Self::SessionClosed,
        Self::LimitExceeded,
        Self::MediaRejected,
        Self::Internal,
        Self::PlainTransportForbidden,
        Self::RemoteAddressForbidden,
        Self::ReconnectCheck,
        Self::NotHost,
        Self::MutedByHost,
        Self::PointNotPresent,
        Self::ShareInProgress,
        Self::NoShare,
    ];

    /// The wire spelling, also used as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedMessage => "malformed_message",
            Self::UnknownAction => "unknown_action",
            Self::FrameTooLarge => "frame_too_large",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenRevoked => "token_revoked",
            Self::WrongSession => "wrong_session",
            Self::SessionNotAllocated => "session_not_allocated",
            Self::Draining => "draining",
            Self::NotJoined => "not_joined",
            Self::AlreadyJoined => "already_joined",
            Self::TransportNotFound => "transport_not_found",
            Self::WrongTransportDirection => "wrong_transport_direction",
            Self::ProducerNotFound => "producer_not_found",
            Self::ConsumerNotFound => "consumer_not_found",
            Self::CannotConsume => "cannot_consume",
            Self::Replaced => "replaced",
            Self::SessionClosed => "session_closed",
            Self::LimitExceeded => "limit_exceeded",
            Self::MediaRejected => "media_rejected",
            Self::Internal => "internal",
            Self::PlainTransportForbidden => "plain_transport_forbidden",
            Self::RemoteAddressForbidden => "remote_address_forbidden",
            Self::ReconnectCheck => "reconnect_check",
            Self::NotHost => "not_host",
            Self::MutedByHost => "muted_by_host",
            Self::PointNotPresent => "point_not_present",
            Self::ShareInProgress => "share_in_progress",
            Self::NoShare => "no_share",
        }
    }
}
