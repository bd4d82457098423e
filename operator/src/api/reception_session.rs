//! `ReceptionSession`: one online citizen reception (buổi tiếp công dân trực tuyến).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The time zone used when a session does not name one.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Ho_Chi_Minh";

/// One online citizen reception session linking a host point with other reception points.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "tiepdan.io",
    version = "v1alpha1",
    kind = "ReceptionSession",
    namespaced,
    status = "ReceptionSessionStatus",
    shortname = "rsess",
    category = "tiepdan",
    doc = "An online citizen reception session (buổi tiếp công dân trực tuyến): a host point and the points that join it, verified before the readiness deadline.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Start", type_ = "string", json_path = ".spec.schedule.start"),
    printcolumn(name = "Deadline", type_ = "string", json_path = ".status.readinessDeadline"),
    printcolumn(name = "Verified", type_ = "string", json_path = ".status.verified"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ReceptionSessionSpec {
    /// What the session is about, shown to officers (Vietnamese).
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// The ReceptionPoint that chairs the session. It always takes part.
    #[schemars(length(min = 1))]
    pub host: String,
    /// ReceptionPoint names that take part, in the session's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<String>>,
    /// Selects further ReceptionPoints by label, added to `points`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_selector: Option<LabelSelector>,
    /// When the session takes place.
    pub schedule: Schedule,
    /// When and how the connection is verified before the session.
    #[serde(default)]
    pub readiness: Readiness,
    /// The MediaWorkerPool to take the session's media worker from.
    #[serde(default = "default_pool")]
    pub worker_pool: String,
    /// Media limits for the session.
    #[serde(default)]
    pub media: MediaSpec,
    /// TLS for the session's signaling endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

fn default_pool() -> String {
    "default".to_owned()
}

/// When the session is held.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// The start of the session, an RFC 3339 date-time, e.g. 2025-06-12T08:00:00+07:00.
    pub start: Time,
    /// How long the session lasts, in minutes (15 to 480).
    #[schemars(range(min = 15, max = 480))]
    pub duration_minutes: i32,
    /// The IANA time zone in which the default readiness deadline (15:00 the day before) is computed.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    DEFAULT_TIME_ZONE.to_owned()
}

/// Readiness rules: every point verified before the deadline.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// When every point must be verified. Defaults to 15:00 local time on the day before the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// How long the rehearsal (chạy thử) before the deadline lasts, in minutes.
    #[serde(default = "default_rehearsal_minutes")]
    #[schemars(range(min = 10, max = 1440))]
    pub rehearsal_minutes: i32,
}

fn default_rehearsal_minutes() -> i32 {
    60
}

impl Default for Readiness {
    fn default() -> Self {
        Self { deadline: None, rehearsal_minutes: default_rehearsal_minutes() }
    }
}

/// Media limits.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MediaSpec {
    /// Video limits for every point.
    #[serde(default)]
    pub video: VideoSpec,
}

/// Video limits.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VideoSpec {
    /// The highest video bitrate a point sends, in kbit/s.
    #[serde(default = "default_bitrate")]
    #[schemars(range(min = 100, max = 8000))]
    pub max_bitrate_kbps: i32,
    /// The highest video height a point sends, in pixels.
    #[serde(default = "default_height")]
    #[schemars(range(min = 144, max = 2160))]
    pub max_height: i32,
}

fn default_bitrate() -> i32 {
    1500
}

fn default_height() -> i32 {
    720
}

impl Default for VideoSpec {
    fn default() -> Self {
        Self { max_bitrate_kbps: default_bitrate(), max_height: default_height() }
    }
}

/// TLS settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A cert-manager issuer for the signaling certificate. Without it the operator's own CA signs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A reference to a cert-manager Issuer or ClusterIssuer.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// The issuer's name.
    pub name: String,
    /// Issuer or ClusterIssuer.
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
}

fn default_issuer_kind() -> String {
    "Issuer".to_owned()
}

/// Where a session is in its timeline.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum SessionPhase {
    /// Accepted; nothing is provisioned yet.
    Scheduled,
    /// The worker, signaling Service and join tokens are being set up.
    Provisioning,
    /// The test run (chạy thử): points join and are verified.
    Rehearsal,
    /// Every point was verified.
    Ready,
    /// The deadline passed with points still unverified.
    NotReady,
    /// The session is in progress.
    Live,
    /// The session ended; its tokens and worker are gone.
    Completed,
    /// The session cannot run as specified (see the Valid condition).
    Failed,
}

impl SessionPhase {
    pub const ALL: [SessionPhase; 8] = [
        Self::Scheduled,
        Self::Provisioning,
        Self::Rehearsal,
        Self::Ready,
        Self::NotReady,
        Self::Live,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::Provisioning => "Provisioning",
            Self::Rehearsal => "Rehearsal",
            Self::Ready => "Ready",
            Self::NotReady => "NotReady",
            Self::Live => "Live",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for SessionPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The condition types a session's status carries (kstatus style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionCondition {
    /// The spec, its points and its schedule are valid.
    Valid,
    /// The worker, signaling Service, join tokens and certificate are in place.
    Provisioned,
    /// The session's worker is serving it.
    WorkerReady,
    /// The worker serves the session's current certificate.
    CertificateReady,
    /// The session's dashboard (and PodMonitor, PrometheusRule) are in place.
    MonitoringReady,
    /// Every point still in the session is verified.
    PointsVerified,
    /// Every point was verified before the readiness deadline.
    ReadyByDeadline,
    /// The session lost its worker and runs on a replacement that is not serving yet.
    Degraded,
}

impl SessionCondition {
    pub const ALL: [SessionCondition; 8] = [
        Self::Valid,
        Self::Provisioned,
        Self::WorkerReady,
        Self::CertificateReady,
        Self::MonitoringReady,
        Self::PointsVerified,
        Self::ReadyByDeadline,
        Self::Degraded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "Valid",
            Self::Provisioned => "Provisioned",
            Self::WorkerReady => "WorkerReady",
            Self::CertificateReady => "CertificateReady",
            Self::MonitoringReady => "MonitoringReady",
            Self::PointsVerified => "PointsVerified",
            Self::ReadyByDeadline => "ReadyByDeadline",
            Self::Degraded => "Degraded",
        }
    }
}

/// The observed state of a session.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceptionSessionStatus {
    /// Where the session is in its timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SessionPhase>,
    /// kstatus conditions: Valid, Provisioned, WorkerReady, CertificateReady, MonitoringReady, PointsVerified,
    /// ReadyByDeadline, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When every point must be verified (the deadline in effect, defaulted or explicit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_deadline: Option<Time>,
    /// When the rehearsal starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal_start: Option<Time>,
    /// When the session ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
    /// Verified points over all points, e.g. "3/15".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    /// The media worker serving the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerStatus>,
    /// The stable entry offices reach the session through (the operator's --entry-url): the
    /// points' links name it (`<entryUrl>/join#token=…`) and survive a worker replacement.
    /// Absent: no entry is deployed, and links name the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_url: Option<String>,
    /// Per-point connection and verification state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<PointStatus>,
    /// What happened, kept after the session ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SessionSummary>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revocation epoch of the session's join tokens. It rises when the schedule changes after
    /// provisioning: links are issued again, older ones are refused, and points verify again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub token_epoch: u64,
    /// When the per-point quality figures (rttMs, lossPercent, jitterMs) were last copied into
    /// status. Live figures are in the metrics; status carries them at most once a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_sampled_at: Option<Time>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// The session's media worker.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// The worker pod's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The WebSocket signaling URL the points' consoles connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signaling_url: Option<String>,
    /// The node the worker runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The IP or host name the worker announces to points in ICE candidates; absent while it
    /// announces its pod IP, or before the operator has read its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_address: Option<String>,
    /// Where `announcedAddress` came from: `spec.announcedAddress` (the pool's),
    /// `tiepdan.io/public-address` (the node's annotation), `ExternalIP` or `InternalIP` (the
    /// node's addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_from: Option<String>,
    /// The RTC ports (UDP and TCP) the worker binds, e.g. `40100-40199`: a hostNetwork worker's
    /// own sub-range of the pool's `rtcPorts`, which the node's firewall must let in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtc_ports: Option<String>,
}

/// One point's state in a session.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PointStatus {
    /// The ReceptionPoint's name.
    pub name: String,
    /// Whether the point sent and received audio and video within thresholds.
    #[serde(default)]
    pub verified: bool,
    /// When the point passed verification, on the worker's clock (or, from a worker that does
    /// not report it, when the operator first saw it verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
    /// Whether the point was verified only after the readiness deadline. A late verification is
    /// recorded but never makes the session Ready.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified_late: bool,
    /// Whether the point left the session (its ReceptionPoint was deleted, or it was edited out
    /// of the spec): it no longer counts towards verification and its join token was withdrawn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// When a second connection last took over this point with its link while one was open (the
    /// worker's time). Either the office opened it twice, or someone else holds the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_reused_at: Option<Time>,
    /// The generation of the point's current link. It rises when ops rotate the link
    /// (`tiepdan-operator links <session> --rotate <point>`) or when the point comes back after
    /// being taken out; the worker then refuses the point's older links.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub link_generation: u32,
    /// Whether the point is connected now.
    #[serde(default)]
    pub connected: bool,
    /// Whether the point has joined at least once.
    #[serde(default)]
    pub joined: bool,
    /// Round-trip time in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Packet loss in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<f64>,
    /// Jitter in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    /// The highest video layer the SFU forwards to the point (0 the lowest of the three).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_layer: Option<u8>,
    /// What the point sends to and receives from the SFU, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_kbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_kbps: Option<u32>,
    /// The SFU's bandwidth estimate towards the point, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_kbps: Option<u32>,
    /// Video freezes the point's browser reported while served by the current worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freezes: Option<u64>,
    /// The connection check `verified` requires, item by item, as the worker last reported it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<PointCheck>,
}

/// One item of a point's connection check.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PointCheck {
    /// What is checked.
    pub item: CheckItem,
    /// Pending (being measured), Passed or Failed.
    pub state: CheckState,
    /// For `icePath`: the path the office's browser got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<IcePath>,
    /// When the item last changed, on the worker's clock; absent while never measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// An item of the connection check: the first six are measured in the office's browser, the
/// last four by the media worker.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum CheckItem {
    /// Signaling runs over WSS.
    Signaling,
    /// ICE selected a path (udp, tcp, turn-udp, turn-tcp, turn-tls).
    IcePath,
    /// The microphone has a real audio level.
    Microphone,
    /// The camera sends non-black frames.
    Camera,
    /// The office decodes the host's video.
    HostVideo,
    /// The office hears the host's audio.
    HostAudio,
    /// The worker heard non-silence from the point's microphone.
    SfuAudio,
    /// The worker received the point's video keyframes.
    SfuVideo,
    /// Audio and video flowed both ways within the loss and RTT thresholds.
    MediaFlow,
    /// After an interruption (forced by the worker in the rehearsal, or a real one) the office
    /// came back by itself and its media connected again within 20 s.
    Reconnect,
}

/// Where a check item stands.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CheckState {
    /// Not measured yet, or still being measured.
    Pending,
    /// Proved.
    Passed,
    /// Measured long enough to say it does not work.
    Failed,
}

/// The ICE path an office's browser got.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IcePath {
    /// Direct UDP to the worker.
    Udp,
    /// ICE-TCP to the worker.
    Tcp,
    /// Relayed by TURN over UDP.
    TurnUdp,
    /// Relayed by TURN over TCP.
    TurnTcp,
    /// Relayed by TURN over TLS.
    TurnTls,
}

/// A summary that outlives the session's resources.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// When the session went Live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_start: Option<Time>,
    /// When the session completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_end: Option<Time>,
    /// How many points joined at least once.
    #[serde(default)]
    pub points_joined: i32,
    /// Average packet loss over points, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_loss_percent: Option<f64>,
    /// Average round-trip time over points, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_rtt_ms: Option<f64>,
}
