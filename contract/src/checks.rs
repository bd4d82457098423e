//! The connection checklist's wire types: what the console reports (`reportChecks`), what the
//! worker lists per point in `/v1/status` (`points[].checks`) and the operator copies into
//! `ReceptionSession.status.points[].checks`. The rules (which items a point needs, when it is
//! verified) are the worker's (`media-worker/src/checks.rs`).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// One item of the checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum CheckItem {
    /// The console's signaling connection is WSS (TLS), not plain WS.
    Signaling,
    /// ICE selected a candidate pair; which path it is (udp, tcp, turn-udp, turn-tls).
    IcePath,
    /// The local microphone has a real audio level (not muted, not a dead input).
    Microphone,
    /// The local camera shows non-black frames.
    Camera,
    /// This office's browser decodes the host's video (the host: some participant's).
    HostVideo,
    /// This office's browser receives the host's audio with energy (the host: some participant's).
    HostAudio,
    /// The SFU's audio level observer heard non-silence from the point's microphone.
    SfuAudio,
    /// The SFU received video keyframes from the point and scores its stream above zero.
    SfuVideo,
    /// Audio and video flowed both ways within the loss and RTT thresholds for the verify period.
    MediaFlow,
    /// After an interruption (forced by the worker once every other item passed, before the
    /// session starts; or a real one) the office's console came back by itself and its media
    /// transport connected again within the deadline.
    Reconnect,
}

impl CheckItem {
    /// Every item, in the order the checklist shows them.
    pub const ALL: [CheckItem; 10] = [
        Self::Signaling,
        Self::IcePath,
        Self::Microphone,
        Self::Camera,
        Self::HostVideo,
        Self::HostAudio,
        Self::SfuAudio,
        Self::SfuVideo,
        Self::MediaFlow,
        Self::Reconnect,
    ];

    /// Measured in the office's browser and reported over signaling; the others only the worker
    /// may set.
    pub fn from_console(self) -> bool {
        matches!(
            self,
            Self::Signaling | Self::IcePath | Self::Microphone | Self::Camera | Self::HostVideo | Self::HostAudio
        )
    }

    /// Whether a point must pass this item; an audio-only point has no camera to prove.
    pub fn required(self, audio_only: bool) -> bool {
        !(audio_only && matches!(self, Self::Camera | Self::HostVideo | Self::SfuVideo))
    }

    /// The wire spelling, also used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signaling => "signaling",
            Self::IcePath => "icePath",
            Self::Microphone => "microphone",
            Self::Camera => "camera",
            Self::HostVideo => "hostVideo",
            Self::HostAudio => "hostAudio",
            Self::SfuAudio => "sfuAudio",
            Self::SfuVideo => "sfuVideo",
            Self::MediaFlow => "mediaFlow",
            Self::Reconnect => "reconnect",
        }
    }
}

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum CheckState {
    /// Not measured yet, or still being measured.
    #[default]
    Pending,
    Passed,
    /// Measured long enough to say it does not work.
    Failed,
}

/// The ICE path a console got, from its selected candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
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

/// One item as the console reports it (`reportChecks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleCheck {
    pub item: CheckItem,
    pub state: CheckState,
    /// For `icePath` only: the path ICE selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub path: Option<IcePath>,
}

/// One item in `/v1/status` `points[].checks`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    pub item: CheckItem,
    pub state: CheckState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<IcePath>,
    /// When the item last changed, by the worker's clock; absent while it was never measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<jiff::Timestamp>,
}
