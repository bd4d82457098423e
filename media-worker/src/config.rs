//! Command line (with `TIEPDAN_*` environment fallbacks) and the validated serve configuration.

use crate::ids::{PointName, SessionId};
use crate::signaling::protocol::Role;
use crate::tokens::{KeyUse, PrivateKey, PublicKey, PublicKeys, TokenError};
use crate::turn::{TurnConfig, TurnError, TurnUrl};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "tiepdan-media-worker",
    version,
    about = "tiepdan media worker: a mediasoup SFU for online citizen reception sessions",
    long_about = "tiepdan media worker: a mediasoup SFU for online citizen reception sessions.\n\n\
        `serve` runs the worker (WebSocket signaling on /v1/ws, status, metrics and admin \
        endpoints). `probe` measures a running worker with synthetic RTP. `token` mints a join \
        token for manual testing."
)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, env = "TIEPDAN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the media worker.
    Serve(Box<ServeArgs>),
    /// Join a worker with plain RTP transports, loop synthetic audio and video through it and
    /// report loss, jitter and latency.
    Probe(ProbeArgs),
    /// Mint a join token with a join private key (for manual testing; the operator mints real ones).
    Token(TokenArgs),
    /// Mint a short-lived admin token, as the operator sends with its admin calls (for reading
    /// `/v1/status` by hand).
    AdminToken(AdminTokenArgs),
}

#[derive(Debug, Args)]
pub struct AdminTokenArgs {
    /// The admin private key (PKCS#8 PEM) whose public key is the worker's --admin-public-key-file.
    #[arg(long)]
    pub private_key_file: PathBuf,

    /// Validity from now (at most 30 s are accepted).
    #[arg(long, default_value_t = 30)]
    pub ttl_seconds: i64,

    /// The worker pod it is for (the worker's --pod-name).
    #[arg(long)]
    pub pod: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for HTTP: the console (/, /join), signaling (/v1/ws), /v1/status, /v1/allocation,
    /// /metrics, /healthz, /readyz. With --signaling-listen only the admin part: /healthz,
    /// /readyz, /metrics, /v1/status, /v1/allocation (signaling paths answer 421).
    #[arg(long, env = "TIEPDAN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address for signaling over HTTPS/WSS: the console, /v1/ws, /v1/join-check, /healthz. Its
    /// certificate comes from --tls-dir and may arrive (and change) while the worker runs.
    #[arg(
        long,
        env = "TIEPDAN_SIGNALING_LISTEN",
        requires = "tls_dir",
        conflicts_with_all = ["tls_cert", "tls_key"]
    )]
    pub signaling_listen: Option<SocketAddr>,

    /// Directory with tls.crt (PEM chain, leaf first) and tls.key (PEM key: PKCS#8, SEC1 or
    /// PKCS#1) for --signaling-listen, e.g. a kubernetes.io/tls Secret volume. May be empty or
    /// missing at start; re-read every --tls-reload-interval-ms.
    #[arg(
        long,
        env = "TIEPDAN_TLS_DIR",
        requires = "signaling_listen",
        conflicts_with_all = ["tls_cert", "tls_key"]
    )]
    pub tls_dir: Option<PathBuf>,

    /// How often --tls-dir is checked for a new certificate (at least 100).
    #[arg(long, env = "TIEPDAN_TLS_RELOAD_INTERVAL_MS", default_value_t = 2000)]
    pub tls_reload_interval_ms: u64,

    /// IP that mediasoup binds RTC (UDP) sockets to.
    #[arg(long, env = "TIEPDAN_RTC_LISTEN_IP", default_value = "127.0.0.1")]
    pub rtc_listen_ip: IpAddr,

    /// IP or host name announced to clients in ICE candidates when it differs from
    /// --rtc-listen-ip (NAT). A host name is resolved once at start, to an address of
    /// --rtc-listen-ip's family; one that does not resolve stops the worker.
    #[arg(long, env = "TIEPDAN_ANNOUNCED_ADDRESS")]
    pub announced_address: Option<AnnouncedAddress>,

    /// The address to announce comes with the operator's allocation call (`announcedAddress`:
    /// the node's public address, unknown before the pod is scheduled). Until then joins are
    /// refused, so no browser is ever told a wrong address.
    #[arg(long, env = "TIEPDAN_ANNOUNCED_ADDRESS_FROM_ALLOCATION", conflicts_with = "announced_address")]
    pub announced_address_from_allocation: bool,

    /// Lowest UDP port for RTC.
    #[arg(long, env = "TIEPDAN_RTC_MIN_PORT", default_value_t = 40000)]
    pub rtc_min_port: u16,

    /// Highest UDP port for RTC.
    #[arg(long, env = "TIEPDAN_RTC_MAX_PORT", default_value_t = 40999)]
    pub rtc_max_port: u16,

    /// A TURN relay offered to every point, e.g. `turn:turn.example:3478?transport=udp` or
    /// `turns:turn.example:443?transport=tcp` (TURN over TLS, what a firewall allowing only 443
    /// lets through). Repeat the flag, or separate URLs with commas in the variable. Browsers try
    /// the worker's own UDP and ICE-TCP candidates first and relay only when those fail.
    #[arg(long = "turn-url", env = "TIEPDAN_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<TurnUrl>,

    /// File holding the TURN server's shared secret (coturn `static-auth-secret` with
    /// `use-auth-secret`); each point gets credentials derived from it that expire with its
    /// join token. Required with --turn-url.
    #[arg(long, env = "TIEPDAN_TURN_SECRET_FILE")]
    pub turn_secret_file: Option<PathBuf>,

    /// Receive buffer for each RTC socket, in bytes; 0 leaves the kernel's default
    /// (net.core.rmem_default, 212,992 B unless the node changes it), which short bursts
    /// overflow. Without CAP_NET_ADMIN the kernel caps it at the node's net.core.rmem_max.
    #[arg(long, env = "TIEPDAN_RTC_RECEIVE_BUFFER_BYTES", default_value_t = DEFAULT_RTC_RECEIVE_BUFFER)]
    pub rtc_receive_buffer_bytes: usize,

    /// Number of mediasoup workers (threads); defaults to the available parallelism.
    #[arg(long, env = "TIEPDAN_WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// Bind to this session (`<namespace>/<name>`) from the start instead of waiting for
    /// PUT /v1/allocation.
    #[arg(long, env = "TIEPDAN_SESSION_ID")]
    pub session_id: Option<SessionId>,

    /// Title of the --session-id session.
    #[arg(long, env = "TIEPDAN_SESSION_TITLE", default_value = "")]
    pub session_title: String,

    /// The operator's public key for join tokens (Ed25519, SPKI PEM).
    #[arg(long, env = "TIEPDAN_JOIN_PUBLIC_KEY_FILE")]
    pub join_public_key_file: PathBuf,

    /// The operator's public key for admin tokens (Ed25519, SPKI PEM).
    #[arg(long, env = "TIEPDAN_ADMIN_PUBLIC_KEY_FILE")]
    pub admin_public_key_file: PathBuf,

    /// This worker's pod name (the downward API's metadata.name): admin calls must carry a token
    /// minted for it. Unset outside a pod, where any pod's admin token is accepted (once).
    #[arg(long, env = "TIEPDAN_POD_NAME")]
    pub pod_name: Option<String>,

    /// PEM certificate chain; with --tls-key, serve everything on --listen over HTTPS/WSS (read
    /// once at start).
    #[arg(long, env = "TIEPDAN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "TIEPDAN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A point is verified after sending and receiving audio and video this long without a break.
    #[arg(long, env = "TIEPDAN_VERIFY_SECONDS", default_value_t = 10)]
    pub verify_seconds: u64,

    /// Highest packet loss (percent) that still counts as healthy during verification.
    #[arg(long, env = "TIEPDAN_MAX_LOSS_PERCENT", default_value_t = 2.0)]
    pub max_loss_percent: f64,

    /// Highest round-trip time (milliseconds) that still counts as healthy during verification.
    #[arg(long, env = "TIEPDAN_MAX_RTT_MS", default_value_t = 300.0)]
    pub max_rtt_ms: f64,

    /// On SIGTERM/SIGINT, wait this long for points to leave before closing their connections.
    #[arg(long, env = "TIEPDAN_DRAIN_TIMEOUT_SECONDS", default_value_t = 30)]
    pub drain_timeout_seconds: u64,

    /// How often mediasoup statistics are polled for verification and metrics.
    #[arg(long, env = "TIEPDAN_STATS_INTERVAL_MS", default_value_t = 1000)]
    pub stats_interval_ms: u64,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Signaling URL of the worker (ws:// or, with --ca-file, wss://).
    #[arg(long, env = "TIEPDAN_PROBE_URL", default_value = "ws://127.0.0.1:8080/v1/ws")]
    pub url: String,

    /// PEM CA bundle for a wss:// URL; the only certificates trusted.
    #[arg(long, env = "TIEPDAN_PROBE_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Name to verify the worker's certificate for (and send as SNI) instead of the URL's host,
    /// e.g. the signaling Service's DNS name when connecting to a pod IP.
    #[arg(long, env = "TIEPDAN_PROBE_SERVER_NAME", requires = "ca_file")]
    pub server_name: Option<String>,

    /// A probe token (role `probe`: `token --role probe`, or `tiepdan-operator links --probe`);
    /// a point's link is refused plain RTP.
    #[arg(long, env = "TIEPDAN_PROBE_TOKEN")]
    pub token: String,

    /// How long to send media.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,

    /// Packets per second for each of the audio and video streams.
    #[arg(long, default_value_t = 50)]
    pub rate_pps: u32,

    /// Local IP to send RTP from and receive it on; must reach the worker's RTC address.
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: IpAddr,

    /// Print the report as JSON instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The join private key (PKCS#8 PEM) whose public key is the worker's --join-public-key-file.
    #[arg(long)]
    pub private_key_file: PathBuf,

    /// Session id, `<namespace>/<name>` (the token's audience).
    #[arg(long)]
    pub session: SessionId,

    /// Point name (the token's subject).
    #[arg(long)]
    pub point: PointName,

    /// Display name; defaults to the point name.
    #[arg(long)]
    pub name: Option<String>,

    /// host, participant, or probe (the synthetic prober: plain RTP, never a point).
    #[arg(long, value_enum, default_value_t = RoleArg::Participant)]
    pub role: RoleArg,

    /// Session title claim.
    #[arg(long, default_value = "")]
    pub title: String,

    /// Revocation epoch claim.
    #[arg(long, default_value_t = 0)]
    pub epoch: u64,

    /// Validity from now.
    #[arg(long, default_value_t = 120)]
    pub ttl_minutes: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Host,
    Participant,
    Probe,
}

impl From<RoleArg> for Role {
    fn from(value: RoleArg) -> Self {
        match value {
            RoleArg::Host => Role::Host,
            RoleArg::Participant => Role::Participant,
            RoleArg::Probe => Role::Probe,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--rtc-min-port ({min}) must not be above --rtc-max-port ({max})")]
    PortRange { min: u16, max: u16 },
    #[error("--max-loss-percent and --max-rtt-ms must be finite and not negative")]
    Thresholds,
    #[error("--stats-interval-ms must be at least 100")]
    StatsInterval,
    #[error("--tls-reload-interval-ms must be at least 100 (got {0})")]
    TlsReloadInterval(u64),
    #[error("--signaling-listen ({0}) must differ from --listen")]
    SameListener(SocketAddr),
    #[error(transparent)]
    Turn(#[from] TurnError),
    #[error("invalid {flag}")]
    Key {
        flag: &'static str,
        #[source]
        source: TokenError,
    },
    /// Reported by clap, which names the flag before it.
    #[error("{0:?} is neither an IP address nor a host name")]
    AnnouncedSyntax(String),
    #[error("--announced-address {0:?} does not resolve: names under .invalid never do (RFC 6761)")]
    AnnouncedInvalidDomain(String),
    #[error("--announced-address {name:?} does not resolve")]
    AnnouncedLookup {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--announced-address {name:?} did not resolve within {timeout:?}")]
    AnnouncedTimeout { name: String, timeout: Duration },
    #[error("--announced-address {name:?} resolves to no {family} address for --rtc-listen-ip {listen_ip}, only to {found:?}")]
    AnnouncedFamily { name: String, family: &'static str, listen_ip: IpAddr, found: Vec<IpAddr> },
}

/// How long a host name in --announced-address may take to resolve: a stuck resolver must not
/// keep the worker starting forever (the kubelet would only see a pod that never listens).
pub const ANNOUNCED_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the worker announces in ICE candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    /// `--rtc-listen-ip` itself.
    ListenIp,
    /// `--announced-address`, resolved at start.
    Fixed(AnnouncedStatus),
    /// `--announced-address-from-allocation`: what the operator's allocation call says; joins
    /// wait for it.
    FromAllocation,
}

pub use tiepdan_contract::admin::AnnouncedStatus;

impl std::fmt::Display for AnnouncedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Host(name) => f.write_str(name),
        }
    }
}

/// `--announced-address`: what the points' browsers are told to send media to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnouncedAddress {
    Ip(IpAddr),
    /// Resolved once at start, by [`AnnouncedAddress::resolve`].
    Host(String),
}

impl FromStr for AnnouncedAddress {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse() {
            return Ok(Self::Ip(ip));
        }
        if is_host_name(s) {
            Ok(Self::Host(s.to_owned()))
        } else {
            Err(ConfigError::AnnouncedSyntax(s.to_owned()))
        }
    }
}

/// RFC 1123 syntax: dot-separated labels of 1 to 63 letters, digits and inner hyphens, 253
/// characters at most, an optional final dot. A numeric last label is refused: the system
/// resolver would read `10.1` as the IP 10.0.0.1 rather than look a name up.
fn is_host_name(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= 253
        && name.split('.').all(label_ok)
        && name.rsplit('.').next().is_some_and(|last| !last.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 6761 §6.4: names under `.invalid` never resolve, and resolvers should answer so at once
/// instead of asking DNS.
fn is_under_invalid(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "invalid" || name.ends_with(".invalid")
}

impl AnnouncedAddress {
    /// The IP to announce: this one, or the first address of the host name (in the resolver's
    /// order) of `listen_ip`'s family. A candidate of the other family would name an address the
    /// RTC sockets do not have. Resolved once: a later DNS change needs a restart.
    pub async fn resolve(&self, listen_ip: IpAddr) -> Result<IpAddr, ConfigError> {
        let name = match self {
            Self::Ip(ip) => return Ok(*ip),
            Self::Host(name) => name,
        };
        if is_under_invalid(name) {
            return Err(ConfigError::AnnouncedInvalidDomain(name.clone()));
        }
        let found = tokio::time::timeout(ANNOUNCED_LOOKUP_TIMEOUT, lookup_detached(name.clone()))
            .await
            .map_err(|_| ConfigError::AnnouncedTimeout { name: name.clone(), timeout: ANNOUNCED_LOOKUP_TIMEOUT })?
            .map_err(|source| ConfigError::AnnouncedLookup { name: name.clone(), source })?;
        let ip = pick_announced(name, listen_ip, found)?;
        tracing::info!(name = %name, ip = %ip, "resolved --announced-address");
        Ok(ip)
    }
}

fn pick_announced(name: &str, listen_ip: IpAddr, found: Vec<IpAddr>) -> Result<IpAddr, ConfigError> {
    match found.iter().find(|ip| ip.is_ipv4() == listen_ip.is_ipv4()) {
        Some(ip) => Ok(*ip),
        None => Err(ConfigError::AnnouncedFamily {
            name: name.to_owned(),
            family: if listen_ip.is_ipv4() { "IPv4" } else { "IPv6" },
            listen_ip,
            found,
        }),
    }
}

/// The system resolver (`/etc/hosts`, then DNS, as `getaddrinfo` does) on a thread of its own.
/// Not `spawn_blocking`: a runtime waits for its blocking tasks when it shuts down, so a lookup
/// stuck past the timeout would keep the failed worker from exiting.
async fn lookup_detached(name: String) -> std::io::Result<Vec<IpAddr>> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("announced-lookup".to_owned()).spawn(move || {
        let found = (name.as_str(), 0).to_socket_addrs().map(|addrs| addrs.map(|a| a.ip()).collect());
        let _ = answer.send(found);
    })?;
    answered.await.unwrap_or_else(|_| Err(std::io::Error::other("the resolver thread ended without an answer")))
}

/// When a point counts as verified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub verify_for: Duration,
    pub max_loss_percent: f64,
    pub max_rtt_ms: f64,
}

/// A validated configuration for [`crate::server::start`].
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub rtc_listen_ip: IpAddr,
    pub announce: Announce,
    pub rtc_ports: RangeInclusive<u16>,
    /// `--rtc-receive-buffer-bytes`; `None` leaves the kernel's default.
    pub rtc_receive_buffer: Option<usize>,
    pub workers: NonZeroUsize,
    pub session: Option<(SessionId, String)>,
    /// The operator's public keys for join and admin tokens.
    pub public_keys: PublicKeys,
    /// `--pod-name`: admin tokens must name it.
    pub pod_name: Option<String>,
    /// `--tls-cert`/`--tls-key`: everything on `listen` over TLS, certificate read once.
    pub tls: Option<TlsPaths>,
    /// `--signaling-listen`/`--tls-dir`: signaling on its own TLS listener, certificate reloaded;
    /// `listen` keeps the admin surface over plain HTTP. Exclusive with `tls`.
    pub signaling: Option<SignalingTls>,
    pub thresholds: Thresholds,
    pub drain_timeout: Duration,
    pub stats_interval: Duration,
    /// `--turn-url`/`--turn-secret-file`: the relays points are offered.
    pub turn: Option<TurnConfig>,
}

#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The signaling listener of a worker in a pod: its own port, its certificate from a Secret
/// volume that the operator fills (and rotates) after the worker started.
#[derive(Debug, Clone)]
pub struct SignalingTls {
    pub listen: SocketAddr,
    /// Holds `tls.crt` and `tls.key` (or will).
    pub tls_dir: PathBuf,
    pub reload_interval: Duration,
}

impl SignalingTls {
    /// Loopback, an ephemeral port, the default reload interval.
    pub fn local(tls_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tls_dir: tls_dir.into(),
            reload_interval: Duration::from_millis(DEFAULT_TLS_RELOAD_INTERVAL_MS),
        }
    }
}

const DEFAULT_TLS_RELOAD_INTERVAL_MS: u64 = 2000;
/// 4 MiB: at the ~300k packets/s one worker forwards, room for ~10 ms of a stalled worker thread
/// even with VP8-sized packets (docs/BENCHMARKS.md, "Media forwarding").
pub const DEFAULT_RTC_RECEIVE_BUFFER: usize = 4 << 20;
const MIN_TLS_RELOAD_INTERVAL_MS: u64 = 100;

impl ServeConfig {
    /// Defaults suited to tests and local runs: loopback, an ephemeral HTTP port, one worker.
    pub fn local(public_keys: PublicKeys) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            rtc_listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            announce: Announce::ListenIp,
            rtc_ports: 40000..=49999,
            rtc_receive_buffer: Some(DEFAULT_RTC_RECEIVE_BUFFER),
            workers: NonZeroUsize::MIN,
            session: None,
            public_keys,
            pod_name: None,
            tls: None,
            signaling: None,
            thresholds: Thresholds { verify_for: Duration::from_secs(10), max_loss_percent: 2.0, max_rtt_ms: 300.0 },
            drain_timeout: Duration::from_secs(30),
            stats_interval: Duration::from_secs(1),
            turn: None,
        }
    }
}

impl ServeConfig {
    /// Validates the command line, then resolves a host name in --announced-address.
    pub async fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let announced = args.announced_address.clone();
        let mut config = Self::validate(args)?;
        if let Some(announced) = announced {
            let ip = announced.resolve(config.rtc_listen_ip).await?;
            config.announce = Announce::Fixed(AnnouncedStatus { address: announced.to_string(), ip });
        }
        Ok(config)
    }

    /// Everything but the announced address, which may need the resolver.
    fn validate(args: ServeArgs) -> Result<Self, ConfigError> {
        if args.rtc_min_port > args.rtc_max_port {
            return Err(ConfigError::PortRange { min: args.rtc_min_port, max: args.rtc_max_port });
        }
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        if !valid(args.max_loss_percent) || !valid(args.max_rtt_ms) {
            return Err(ConfigError::Thresholds);
        }
        if args.stats_interval_ms < 100 {
            return Err(ConfigError::StatsInterval);
        }
        if args.tls_reload_interval_ms < MIN_TLS_RELOAD_INTERVAL_MS {
            return Err(ConfigError::TlsReloadInterval(args.tls_reload_interval_ms));
        }
        // Both ports at 0 would be two ephemeral ports, which is fine.
        if args.signaling_listen.is_some_and(|s| s == args.listen && s.port() != 0) {
            return Err(ConfigError::SameListener(args.listen));
        }
        let public_keys = PublicKeys {
            join: public_key("--join-public-key-file", &args.join_public_key_file, KeyUse::Join)?,
            admin: public_key("--admin-public-key-file", &args.admin_public_key_file, KeyUse::Admin)?,
        };
        let turn = TurnConfig::from_flags(args.turn_urls, args.turn_secret_file.as_deref())?;
        let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN));
        // clap's `requires` guarantees both or neither.
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsPaths { cert, key }),
            _ => None,
        };
        // Likewise --signaling-listen and --tls-dir, and neither with --tls-cert/--tls-key.
        let signaling = match (args.signaling_listen, args.tls_dir) {
            (Some(listen), Some(tls_dir)) => Some(SignalingTls {
                listen,
                tls_dir,
                reload_interval: Duration::from_millis(args.tls_reload_interval_ms),
            }),
            _ => None,
        };
        Ok(Self {
            listen: args.listen,
            rtc_listen_ip: args.rtc_listen_ip,
            announce: if args.announced_address_from_allocation {
                Announce::FromAllocation
            } else {
                Announce::ListenIp
            },
            rtc_ports: args.rtc_min_port..=args.rtc_max_port,
            rtc_receive_buffer: (args.rtc_receive_buffer_bytes > 0).then_some(args.rtc_receive_buffer_bytes),
            workers,
            session: args.session_id.map(|id| (id, args.session_title)),
            public_keys,
            pod_name: args.pod_name.filter(|p| !p.is_empty()),
            tls,
            signaling,
            thresholds: Thresholds {
                verify_for: Duration::from_secs(args.verify_seconds),
                max_loss_percent: args.max_loss_percent,
                max_rtt_ms: args.max_rtt_ms,
            },
            drain_timeout: Duration::from_secs(args.drain_timeout_seconds),
            stats_interval: Duration::from_millis(args.stats_interval_ms),
            turn,
        })
    }
}

fn public_key(flag: &'static str, path: &Path, key_use: KeyUse) -> Result<PublicKey, ConfigError> {
    PublicKey::from_file(path, key_use).map_err(|source| ConfigError::Key { flag, source })
}

/// The private key of a `token` or `admin-token` subcommand, the error naming the flag.
pub fn private_key(path: &Path, key_use: KeyUse) -> Result<PrivateKey, ConfigError> {
    PrivateKey::from_file(path, key_use).map_err(|source| ConfigError::Key { flag: "--private-key-file", source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The operator builds worker pods from `tiepdan_contract::worker_flags`; a flag renamed here
    /// but not there would crash-loop every worker.
    #[test]
    fn every_flag_the_operator_passes_exists() {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        let longs: Vec<&str> = cli.get_arguments().chain(serve.get_arguments()).filter_map(|a| a.get_long()).collect();
        for flag in tiepdan_contract::worker_flags::ALL {
            assert!(longs.contains(&flag), "the operator passes --{flag}, which `serve` does not have: {longs:?}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults_match_the_contract() {
        let cli = Cli::try_parse_from([
            "tiepdan-media-worker",
            "serve",
            "--join-public-key-file",
            "/dev/null",
            "--admin-public-key-file",
            "/dev/null",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!((args.rtc_min_port, args.rtc_max_port), (40000, 40999));
        assert_eq!(args.verify_seconds, 10);
        assert_eq!(args.drain_timeout_seconds, 30);
        assert_eq!(args.tls_reload_interval_ms, DEFAULT_TLS_RELOAD_INTERVAL_MS);
        assert!(args.signaling_listen.is_none() && args.tls_dir.is_none());
    }

    #[test]
    fn a_missing_or_wrong_public_key_file_is_refused_naming_the_flag() {
        let dir = std::env::temp_dir().join(format!("tiepdan-config-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (keys, _) = crate::tokens::generate_keys();
        let good = dir.join("admin.pub.pem");
        std::fs::write(&good, keys.admin.public_pem().expect("pem")).expect("write");
        // The private key, and an HS256 key as an older operator wrote it, are not public keys.
        let private = dir.join("join.pem");
        std::fs::write(&private, keys.join.to_pem().expect("pem")).expect("write");
        let hex = dir.join("signing.key");
        std::fs::write(&hex, "ab".repeat(32)).expect("write");
        let missing = dir.join("missing.pem");
        for bad in [&private, &hex, &missing] {
            let args = |join: &Path, admin: &Path| {
                let cli = Cli::try_parse_from([
                    "tiepdan-media-worker".as_ref(),
                    "serve".as_ref(),
                    "--join-public-key-file".as_ref(),
                    join.as_os_str(),
                    "--admin-public-key-file".as_ref(),
                    admin.as_os_str(),
                ])
                .expect("parse");
                let Command::Serve(args) = cli.command else { panic!("expected serve") };
                *args
            };
            for (flag, args) in
                [("--join-public-key-file", args(bad, &good)), ("--admin-public-key-file", args(&good, bad))]
            {
                let error = ServeConfig::validate(args).expect_err("refused");
                assert!(matches!(&error, ConfigError::Key { flag: f, .. } if *f == flag), "{error:?}");
                let message = format!("{error}: {}", std::error::Error::source(&error).expect("source"));
                assert!(message.contains(flag) && message.contains(&bad.display().to_string()), "{message}");
            }
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn tls_needs_both_files() {
        let parsed = Cli::try_parse_from([
            "tiepdan-media-worker",
            "serve",
            "--join-public-key-file",
            "k",
            "--admin-public-key-file",
            "k",
            "--tls-cert",
            "c.pem",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn the_announced_address_is_an_ip_or_a_host_name() {
        let parse = |s: &str| s.parse::<AnnouncedAddress>();
        assert_eq!(parse("203.0.113.7").ok(), Some(AnnouncedAddress::Ip("203.0.113.7".parse().expect("ip"))));
        assert_eq!(parse("2001:db8::7").ok(), Some(AnnouncedAddress::Ip("2001:db8::7".parse().expect("ip"))));
        for name in ["localhost", "media.hungyen.gov.vn", "xa-1.example.", "a1"] {
            assert_eq!(parse(name).ok(), Some(AnnouncedAddress::Host(name.to_owned())), "{name}");
        }
        for bad in ["", ".", "http://media.example", "a..b", "-a.example", "a-.example", "10.1", "a b", "a_b.example"] {
            assert!(matches!(parse(bad), Err(ConfigError::AnnouncedSyntax(_))), "{bad:?} accepted");
        }
        let too_long = format!("{}.example", "a".repeat(64));
        assert!(parse(&too_long).is_err());
    }

    #[test]
    fn a_malformed_announced_address_is_refused_naming_the_flag() {
        let parsed = Cli::try_parse_from([
            "tiepdan-media-worker",
            "serve",
            "--join-public-key-file",
            "k",
            "--admin-public-key-file",
            "k",
            "--announced-address",
            "http://media.example",
        ]);
        let error = parsed.expect_err("refused").to_string();
        assert!(error.contains("--announced-address") && error.contains("http://media.example"), "{error}");
    }

    #[test]
    fn an_address_from_allocation_waits_and_excludes_a_fixed_one() {
        let parse = |extra: &[&str]| {
            let base = ["tiepdan-media-worker", "serve", "--join-public-key-file", "k", "--admin-public-key-file", "k"];
            Cli::try_parse_from(base.iter().chain(extra))
        };
        let both = parse(&["--announced-address", "203.0.113.7", "--announced-address-from-allocation"]);
        let error = both.expect_err("one or the other").to_string();
        assert!(error.contains("--announced-address-from-allocation"), "{error}");
        let Command::Serve(args) = parse(&["--announced-address-from-allocation"]).expect("parse").command else {
            panic!("serve");
        };
        assert!(args.announced_address_from_allocation);
    }

    #[test]
    fn a_malformed_turn_url_is_refused_naming_the_flag() {
        let parsed = Cli::try_parse_from([
            "tiepdan-media-worker",
            "serve",
            "--join-public-key-file",
            "k",
            "--admin-public-key-file",
            "k",
            "--turn-url",
            "turn:127.0.0.1:3478",
            "--turn-url",
            "stun:127.0.0.1:3478",
        ]);
        let error = parsed.expect_err("refused").to_string();
        assert!(error.contains("--turn-url") && error.contains("stun:127.0.0.1:3478"), "{error}");
    }

    #[test]
    fn turn_urls_come_from_the_flag_or_a_comma_separated_variable() {
        let cli = Cli::try_parse_from([
            "tiepdan-media-worker",
            "serve",
            "--join-public-key-file",
            "k",
            "--admin-public-key-file",
            "k",
            "--turn-url",
            "turn:127.0.0.1:3478?transport=udp,turns:127.0.0.1:5349?transport=tcp",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else { panic!("expected serve") };
        let urls: Vec<&str> = args.turn_urls.iter().map(TurnUrl::as_str).collect();
        assert_eq!(urls, ["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp"]);
    }

    #[tokio::test]
    async fn a_host_name_resolves_to_an_address_of_the_rtc_family() {
        let localhost = AnnouncedAddress::Host("localhost".to_owned());
        let ip = localhost.resolve(IpAddr::V4(Ipv4Addr::LOCALHOST)).await.expect("localhost resolves");
        assert_eq!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        // An IP is announced as given, whatever the family.
        let v6: IpAddr = "2001:db8::7".parse().expect("ip");
        assert_eq!(AnnouncedAddress::Ip(v6).resolve(IpAddr::V4(Ipv4Addr::LOCALHOST)).await.expect("ip"), v6);
    }

    #[tokio::test]
    async fn names_under_invalid_fail_without_a_lookup() {
        for name in ["no-such-host.invalid", "x.INVALID."] {
            let error = AnnouncedAddress::Host(name.to_owned())
                .resolve(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .await
                .expect_err("never resolves");
            assert!(matches!(&error, ConfigError::AnnouncedInvalidDomain(n) if n == name), "{error:?}");
            let message = error.to_string();
            assert!(message.contains("--announced-address") && message.contains(name), "{message}");
        }
    }

    #[test]
    fn the_first_address_of_the_listen_family_is_announced() {
        let found: Vec<IpAddr> = vec![
            "2001:db8::7".parse().expect("ip"),
            "203.0.113.7".parse().expect("ip"),
            "203.0.113.8".parse().expect("ip"),
        ];
        let v4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(pick_announced("m", v4, found.clone()).expect("v4"), found[1]);
        let v6: IpAddr = "::".parse().expect("ip");
        assert_eq!(pick_announced("m", v6, found.clone()).expect("v6"), found[0]);
        let only_v6 = vec![found[0]];
        let error = pick_announced("m", v4, only_v6).expect_err("no IPv4 address");
        assert!(matches!(error, ConfigError::AnnouncedFamily { family: "IPv4", .. }), "{error:?}");
    }

    #[test]
    fn session_ids_are_validated_on_the_command_line() {
        let parsed = Cli::try_parse_from([
            "tiepdan-media-worker",
            "serve",
            "--join-public-key-file",
            "k",
            "--admin-public-key-file",
            "k",
            "--session-id",
            "no-namespace",
        ]);
        assert!(parsed.is_err());
    }
}
