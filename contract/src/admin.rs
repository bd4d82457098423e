//! The worker's admin surface, as the operator calls it: `PUT`/`GET /v1/allocation` and
//! `GET /v1/status`. The worker serves these types and the operator reads them, so a renamed field
//! fails to compile on both sides instead of silently reading as absent.

use crate::checks::CheckStatus;
use crate::ids::{PointName, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Body of `PUT /v1/allocation` (and of the `GET`/`PUT` answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationBody {
    pub session: SessionId,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub epoch: u64,
    /// The session's points: joins of any other point are refused, and its connections closed.
    /// Absent: every point named by a valid token is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<BTreeSet<PointName>>,
    /// Each point's lowest accepted link generation; absent points are at 0. Only raised: a
    /// lower value than the worker holds is ignored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub link_generations: BTreeMap<PointName, u32>,
    /// The IP or host name to announce in ICE candidates (its node's public address, which the
    /// operator learns once the pod is scheduled). A host name is resolved before the answer.
    /// Absent: the worker keeps what it announces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_address: Option<String>,
}

/// One point in `/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PointStatus {
    pub name: PointName,
    pub display_name: String,
    /// Joined at least once during this allocation.
    pub joined: bool,
    /// Has a signaling connection now (an addition to the contract's fields).
    pub present: bool,
    /// Present and with a connected media transport.
    pub connected: bool,
    pub sends_audio: bool,
    pub sends_video: bool,
    pub receives_audio: bool,
    pub receives_video: bool,
    pub verified: bool,
    /// When verification passed, by the worker's clock; absent (not null) until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<jiff::Timestamp>,
    /// When a second connection last took over this point while one was open, by the worker's
    /// clock: the operator warns ops that the link may have leaked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_reused_at: Option<jiff::Timestamp>,
    pub rtt_ms: Option<f64>,
    pub loss_percent: Option<f64>,
    pub jitter_ms: Option<f64>,
    /// The highest spatial layer (0 lowest) the SFU forwards to any of the point's video
    /// consumers; absent while it forwards none (paused, or nothing fits the estimate yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_layer: Option<u8>,
    /// What the point sent to the SFU and received from it over the last poll, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_kbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_kbps: Option<u32>,
    /// The SFU's bandwidth estimate towards the point (transport-cc), kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_kbps: Option<u32>,
    /// Video freezes the point's browser reported during this allocation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freezes: u64,
    /// The point has no camera by its spec: its checklist leaves out the video items.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audio_only: bool,
    /// The connection check `verified` requires, each item with the time it last changed; empty
    /// from a worker that predates it.
    #[serde(default)]
    pub checks: Vec<CheckStatus>,
}

/// The `/v1/status` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    pub session: Option<SessionId>,
    pub title: Option<String>,
    /// The session's points as the operator last gave them; absent until it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_points: Option<BTreeSet<PointName>>,
    /// Each point's lowest accepted link generation, as the operator last raised it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub link_generations: BTreeMap<PointName, u32>,
    pub draining: bool,
    pub points: Vec<PointStatus>,
    /// The certificate served over TLS; absent while there is none (plain HTTP, or a warm worker
    /// whose session's certificate has not arrived yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// What the worker announces in ICE candidates; absent while it announces its own RTC
    /// address, or, started with `--announced-address-from-allocation`, until it was told one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<AnnouncedStatus>,
}

/// `/v1/status` `announced`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncedStatus {
    /// As given: an IP or a host name.
    pub address: String,
    /// What it resolved to.
    pub ip: std::net::IpAddr,
}

/// `/v1/status` `tls`: which certificate new TLS connections get. The operator compares `sha256`
/// with its Secret's certificate to know the worker serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// Lowercase hex SHA-256 of the leaf certificate's DER.
    pub sha256: String,
    /// When the worker started serving it.
    pub loaded_at: jiff::Timestamp,
}

impl PointStatus {
    /// A point the worker knows nothing about yet: not joined, no media, unverified.
    pub fn new(name: PointName) -> Self {
        Self {
            name,
            display_name: String::new(),
            joined: false,
            present: false,
            connected: false,
            sends_audio: false,
            sends_video: false,
            receives_audio: false,
            receives_video: false,
            verified: false,
            verified_at: None,
            link_reused_at: None,
            rtt_ms: None,
            loss_percent: None,
            jitter_ms: None,
            received_layer: None,
            send_kbps: None,
            receive_kbps: None,
            estimate_kbps: None,
            freezes: 0,
            audio_only: false,
            checks: Vec::new(),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
