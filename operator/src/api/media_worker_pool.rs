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
    /// The UDP/TCP port range mediasoup uses for RTC. In the pod network every worker uses all
    /// of it; with `hostNetwork` each worker takes its own `perWorker` ports of it.
    #[serde(default)]
    pub rtc_ports: RtcPorts,
    /// The public IP address or host name every worker announces to points in ICE candidates,
    /// whatever node it runs on (one NAT or load balancer in front of all nodes). Unset with
    /// `hostNetwork`: each worker announces its own node's address, from the node annotation
    /// `tiepdan.io/public-address` (an IP or a host name), else the node's ExternalIP, else its
    /// InternalIP. Unset in the pod network: the pod's IP.
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

/// The RTC port range of a pool.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RtcPorts {
    /// The lowest RTC port.
    #[schemars(range(min = 1024, max = 65535))]
    pub min: i32,
    /// The highest RTC port.
    #[schemars(range(min = 1024, max = 65535))]
    pub max: i32,
    /// With `hostNetwork`: how many consecutive ports of the range each worker takes (its
    /// sub-range), declared as host ports (UDP and TCP) so the scheduler never puts two workers
    /// with overlapping sub-ranges on one node. Each point's browser takes about two (a send and
    /// a receive transport), so the default 100 serves about 50 points. Ignored in the pod
    /// network, where every worker has its own IP and uses the whole range.
    #[serde(default = "default_rtc_ports_per_worker")]
    #[schemars(range(min = 1, max = 1000))]
    pub per_worker: i32,
}

/// The default size of a hostNetwork worker's RTC sub-range.
pub const DEFAULT_RTC_PORTS_PER_WORKER: i32 = 100;

fn default_rtc_ports_per_worker() -> i32 {
    DEFAULT_RTC_PORTS_PER_WORKER
}

impl Default for RtcPorts {
    fn default() -> Self {
        Self { min: 40000, max: 40999, per_worker: DEFAULT_RTC_PORTS_PER_WORKER }
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
