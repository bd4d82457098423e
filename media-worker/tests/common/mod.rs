//! Shared helpers for the integration tests: an in-process worker on an ephemeral port, tokens,
//! a minimal HTTP client and bounded waits.

#![allow(dead_code)] // each test binary uses a different subset

pub mod browser;
pub mod coturn;
pub mod firewall;
pub mod impairment;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use tiepdan_media_worker::config::ServeConfig;
use tiepdan_media_worker::ids::SessionId;
use tiepdan_media_worker::server::{self, RunningServer};
use tiepdan_media_worker::signaling::protocol::Role;
use tiepdan_media_worker::tokens::{generate_keys, unix_now, JoinClaims, PrivateKey, PublicKeys, SigningKeys};
use tiepdan_media_worker::verification::WorkerStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SESSION: &str = "ubnd-hanoi/tiep-dan-thang-6";

/// Upper bound for any wait on a condition in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// The pool's key pairs in this test process, generated once.
pub fn keys() -> &'static (SigningKeys, PublicKeys) {
    static KEYS: OnceLock<(SigningKeys, PublicKeys)> = OnceLock::new();
    KEYS.get_or_init(generate_keys)
}

/// The join private key: what the operator signs links and probe tokens with.
pub fn key() -> &'static PrivateKey {
    &keys().0.join
}

/// The admin private key: what the operator signs its admin calls with.
pub fn admin_key() -> &'static PrivateKey {
    &keys().0.admin
}

/// The public keys a worker is given.
pub fn public_keys() -> PublicKeys {
    keys().1.clone()
}

/// The key files in a directory: the public ones a `serve` process takes, the private ones the
/// `token` and `admin-token` subcommands take.
pub struct KeyFiles {
    pub join_public: PathBuf,
    pub admin_public: PathBuf,
    pub join_private: PathBuf,
    pub admin_private: PathBuf,
}

impl KeyFiles {
    /// Writes [`keys`] into `dir` as PEM.
    pub fn write(dir: &Path) -> Self {
        let files = Self {
            join_public: dir.join("join.pub.pem"),
            admin_public: dir.join("admin.pub.pem"),
            join_private: dir.join("join.pem"),
            admin_private: dir.join("admin.pem"),
        };
        let write = |path: &Path, pem: String| std::fs::write(path, pem).expect("write a key file");
        write(&files.join_public, key().public_pem().expect("pem"));
        write(&files.admin_public, admin_key().public_pem().expect("pem"));
        write(&files.join_private, key().to_pem().expect("pem"));
        write(&files.admin_private, admin_key().to_pem().expect("pem"));
        files
    }

    /// `serve`'s key flags.
    pub fn serve_args(&self) -> [std::ffi::OsString; 4] {
        [
            "--join-public-key-file".into(),
            self.join_public.clone().into(),
            "--admin-public-key-file".into(),
            self.admin_public.clone().into(),
        ]
    }
}

pub fn session() -> SessionId {
    SESSION.parse().expect("session id")
}

/// A worker bound to [`SESSION`], one mediasoup worker, fast statistics.
pub fn config() -> ServeConfig {
    let mut config = ServeConfig::local(public_keys());
    config.session = Some((session(), "Tiếp công dân định kỳ".to_owned()));
    config.stats_interval = Duration::from_millis(200);
    config
}

pub async fn start() -> RunningServer {
    start_with(config()).await
}

pub async fn start_with(config: ServeConfig) -> RunningServer {
    server::start(config).await.expect("worker starts")
}

pub fn claims(point: &str) -> JoinClaims {
    JoinClaims::for_point(
        &session(),
        &point.parse().expect("point name"),
        &format!("Điểm cầu {point}"),
        Role::Participant,
        "Tiếp công dân định kỳ",
        unix_now() - 5,
        3600,
    )
}

pub fn token(point: &str) -> String {
    key().mint_join(&claims(point)).expect("mint")
}

/// Claims of a probe token (role `probe`): plain RTP allowed, never a point.
pub fn probe_claims(name: &str) -> JoinClaims {
    JoinClaims { role: Role::Probe, ..claims(name) }
}

pub fn probe_token(name: &str) -> String {
    key().mint_join(&probe_claims(name)).expect("mint")
}

pub fn admin_token() -> String {
    admin_key().mint_admin(unix_now(), 30, None).expect("mint admin")
}

/// A point (role participant) joined over signaling with an audio producer on a WebRTC send
/// transport, as a console would have before its DTLS handshake; returns its connection and the
/// producer's id.
pub async fn point_with_audio(
    url: &str,
    point: &str,
) -> (tiepdan_media_worker::probe::client::SignalingClient, mediasoup::prelude::ProducerId) {
    use tiepdan_media_worker::probe::client::SignalingClient;
    use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, ServerMessage};
    let mut client = SignalingClient::connect(url).await.expect("connect");
    client.request(ClientMessage::Join { token: token(point) }).await.expect("point joins");
    let ServerMessage::WebRtcTransportCreated { transport_id, .. } =
        client.request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send }).await.expect("transport")
    else {
        panic!("expected webRtcTransportCreated");
    };
    let rtp_parameters = serde_json::from_value(serde_json::json!({
        "codecs": [{"mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2,
                    "parameters": {}, "rtcpFeedback": []}],
        "headerExtensions": [], "encodings": [{"ssrc": 1111}], "rtcp": {"reducedSize": true}
    }))
    .expect("RTP parameters");
    let ServerMessage::Produced { producer_id } = client
        .request(ClientMessage::Produce {
            transport_id,
            kind: mediasoup::prelude::MediaKind::Audio,
            rtp_parameters,
            source: None,
        })
        .await
        .expect("produce")
    else {
        panic!("expected produced");
    };
    (client, producer_id)
}

/// A response from [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// A tiny HTTP/1.1 client (one request per connection), enough for the worker's endpoints.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.expect("response in time").expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_owned() };
    HttpResponse { status, head: head.to_owned(), body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path, None, None).await
}

pub async fn status(addr: SocketAddr) -> WorkerStatus {
    let response = http(addr, "GET", "/v1/status", Some(&admin_token()), None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    serde_json::from_str(&response.body).expect("status JSON")
}

pub async fn assert_healthy(addr: SocketAddr) {
    let response = get(addr, "/healthz").await;
    assert_eq!(response.status, 200);
}

/// Polls `check` until it returns `Some`, failing the test after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/v1/status` until `check` accepts it.
pub async fn status_until(addr: SocketAddr, what: &str, check: impl Fn(&WorkerStatus) -> bool) -> WorkerStatus {
    eventually(what, || async {
        let status = status(addr).await;
        check(&status).then_some(status)
    })
    .await
}
