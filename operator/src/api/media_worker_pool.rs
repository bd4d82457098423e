//! `MediaWorkerPool`: warm media-worker pods that sessions are allocated from (Agones-style).

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default media-worker image: the one `scripts/images.sh` builds (its name is in
/// `images/names.env`), tagged with the workspace version so that an operator release defaults to
/// the worker of the same release. `operator/tests/versions.rs` checks both.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/tiepdan/tiepdan-media-worker:", env!("CARGO_PKG_VERSION"));

/// A pool of warm media-worker pods. Sessions take an idle worker; the pool keeps `replicas` idle.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "tiepdan.io",
    version = "v1alpha1",
    kind = "MediaWorkerPool",
    namespaced,
    status = "MediaWorkerPoolStatus",
    shortname = "mwp",
    category = "tiepdan",
    doc = "A pool of warm media-worker pods from which sessions are allocated a worker.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Idle Wanted", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Allocated", type_ = "integer", json_path = ".status.allocated"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.available"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MediaWorkerPoolSpec {
    /// How many idle, warm workers to keep ready on top of the allocated ones.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// The media-worker container image.
    #[serde(default = "default_image")]
    pub image: String,
    /// Compute resources of each worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The UDP/TCP port range mediasoup uses for RTC on each worker.
    #[serde(default)]
    pub rtc_ports: RtcPorts,
    /// The public IP address or host name announced to points in ICE candidates (for NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_address: Option<String>,
    /// Run workers in the host's network namespace, so RTC ports are reachable on the node's address.
    #[serde(default)]
    pub host_network: bool,
    /// With `hostNetwork`: the range each worker takes its admin and signaling ports from (two
    /// consecutive ports per pod, declared as host ports so the scheduler keeps pods with the same
    /// port off one node), like Agones' Dynamic port policy. Ignored in the pod network, where
    /// every worker has its own IP and uses 8080 and 8443.
    #[serde(default)]
    pub host_ports: HostPorts,
    /// TURN relays offered to the pool's points, for offices whose firewalls block the workers'
    /// RTC ports (often everything but TCP/TLS 443). Browsers try the worker's own UDP and ICE-TCP
    /// candidates first and relay only when those fail; a point with `network.turnRequired`
    /// relays always. Each point gets credentials that expire with its link (the TURN REST API of
    /// coturn's `use-auth-secret`). Unset: no relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnRelay>,
}

/// The TURN server a pool's points relay through.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TurnRelay {
    /// TURN URLs as browsers take them (RFC 7065), e.g. `turn:turn.hungyen.gov.vn:3478?transport=udp`
    /// and `turns:turn.hungyen.gov.vn:443?transport=tcp` (TURN over TLS, which passes firewalls
    /// that allow only 443; its certificate must be one browsers trust for that name).
    #[schemars(
        length(min = 1, max = 8),
        inner(regex(pattern = r"^turns?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(\?transport=(udp|tcp))?$"))
    )]
    pub urls: Vec<String>,
    /// The Secret, in the pool's namespace, holding the shared secret the TURN server checks
    /// credentials with (coturn `static-auth-secret`). The chart's coturn uses the one the
    /// operator makes (`tiepdan-turn` by default).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The key of the shared secret in that Secret.
    #[serde(default = "default_turn_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_key: String,
}

/// The key the operator writes the shared secret under.
pub const TURN_SECRET_KEY: &str = "secret";

fn default_turn_secret_key() -> String {
    TURN_SECRET_KEY.to_owned()
}

/// The host port range of a hostNetwork pool.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct HostPorts {
    /// The lowest port.
    #[schemars(range(min = 1024, max = 65535))]
    pub min: i32,
    /// The highest port.
    #[schemars(range(min = 1024, max = 65535))]
    pub max: i32,
}

impl Default for HostPorts {
    fn default() -> Self {
        Self { min: 7000, max: 7999 }
    }
}

fn default_replicas() -> i32 {
    1
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

/// A port range.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct RtcPorts {
    /// The lowest RTC port.
    #[schemars(range(min = 1024, max = 65535))]
    pub min: i32,
    /// The highest RTC port.
    #[schemars(range(min = 1024, max = 65535))]
    pub max: i32,
}

impl Default for RtcPorts {
    fn default() -> Self {
        Self { min: 40000, max: 40999 }
    }
}

/// The observed state of a pool.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MediaWorkerPoolStatus {
    /// Worker pods of this pool, idle and allocated.
    #[serde(default)]
    pub replicas: i32,
    /// Worker pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Worker pods allocated to a session.
    #[serde(default)]
    pub allocated: i32,
    /// Idle worker pods that are Ready and can be allocated now.
    #[serde(default)]
    pub available: i32,
    /// The label selector of the pool's pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// kstatus conditions: Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
