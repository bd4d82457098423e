//! `ReceptionPoint`: one reception office (điểm cầu) at the province, a town or a commune/ward.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reception office that joins online citizen reception sessions.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "tiepdan.io",
    version = "v1alpha1",
    kind = "ReceptionPoint",
    namespaced,
    status = "ReceptionPointStatus",
    shortname = "rp",
    category = "tiepdan",
    doc = "A reception office (điểm cầu) at the province, a town or a commune/ward that joins online citizen reception sessions.",
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Level", type_ = "string", json_path = ".spec.level"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parent"),
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type==\"Valid\")].status"),
    printcolumn(name = "Last Verified", type_ = "date", json_path = ".status.lastVerification.time"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ReceptionPointSpec {
    /// The name officers and citizens read, in Vietnamese (UTF-8), e.g. "Ban Tiếp công dân thị xã Mỹ Hào".
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,
    /// The administrative level of the office: Province, Town or Commune (communes and wards).
    pub level: Level,
    /// The name of the parent ReceptionPoint in the same namespace. Required for every level except Province.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Who to call about this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    /// The point's network link, used to size media and to decide on TURN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkProfile>,
    /// What the point sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<PointMedia>,
}

/// What a point sends.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PointMedia {
    /// Whether the point has no camera (a telephone-style office). Its connection check then skips
    /// the camera and video items; any other point must prove its camera to be verified. It rides
    /// in the point's join link, so a change takes effect with the next link (`links --rotate`).
    #[serde(default)]
    pub audio_only: bool,
}

/// The administrative level of a reception point.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Ban Tiếp công dân tỉnh.
    Province,
    /// A town or district (thị xã, huyện).
    Town,
    /// A commune or ward (xã, phường).
    Commune,
}

impl Level {
    /// Whether a point of this level may have a point of `parent` level as its parent.
    pub fn may_have_parent(self, parent: Level) -> bool {
        matches!((self, parent), (Level::Town, Level::Province) | (Level::Commune, Level::Town | Level::Province))
    }
}

/// A contact person at the point.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// The officer's full name.
    pub name: String,
    /// A phone number to reach the officer during set-up and sessions.
    #[schemars(length(max = 32))]
    pub phone: String,
}

/// The network link of a point.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// Upstream bandwidth of the point's link in kbit/s (at least 256). Signed into the point's
    /// join token: the worker caps what the point sends at this (mediasoup's max incoming bitrate
    /// on its send transport) and the console sizes its video under it.
    #[schemars(range(min = 256))]
    pub uplink_kbps: i64,
    /// Whether the link is shared with other office traffic or dedicated to reception.
    #[serde(default)]
    pub link: LinkType,
    /// Whether the point sits behind a firewall that needs media relayed over TURN. Signed into
    /// the point's join token: its browser then uses TURN relay candidates only (the pool's
    /// `turn`; TURN over TLS on 443 passes firewalls that allow nothing else).
    #[serde(default)]
    pub turn_required: bool,
}

/// The kind of a point's network link.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum LinkType {
    /// Shared with other office traffic.
    #[default]
    Shared,
    /// A dedicated line (kênh đường truyền riêng).
    Dedicated,
}

/// The observed state of a reception point.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceptionPointStatus {
    /// kstatus conditions: Valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The most recent successful verification of this point's media path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<Verification>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A verification result: the point sent and received audio and video within thresholds.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// When the point was verified.
    pub time: Time,
    /// The session (name) in which it was verified.
    pub session: String,
    /// Round-trip time in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Packet loss in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<f64>,
    /// Interarrival jitter in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
}
