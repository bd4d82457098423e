//! Signaling on its own TLS listener with a certificate from a Secret volume: a warm worker
//! binds before the certificate exists, serves it once it arrives, follows kubelet-style
//! rotations, keeps the last good certificate when the files are not usable, and its plain
//! listener serves only the admin surface.

mod common;

use clap::Parser as _;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tiepdan_media_worker::config::{Cli, Command, ConfigError, ServeConfig, SignalingTls, TlsPaths};
use tiepdan_media_worker::probe::client::{ClientError, SignalingClient};
use tiepdan_media_worker::probe::tls::{served_certificate_sha256, ClientTls, ClientTlsError};
use tiepdan_media_worker::probe::{run_probe, ProbeOptions};
use tiepdan_media_worker::server::RunningServer;
use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, ServerMessage};
use tiepdan_media_worker::tls::certificate_sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The name the operator's certificates are issued for (the signaling Service's DNS name).
const SERVICE_NAME: &str = "sig.example.svc";

/// A test CA and the leaf certificates it issues.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as a `kubernetes.io/tls` Secret holds them.
#[derive(Clone)]
struct Leaf {
    cert_pem: String,
    key_pem: String,
    sha256: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Pki { ca: CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA") }
    }

    /// A leaf for the Service name and 127.0.0.1.
    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec![SERVICE_NAME.to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, SERVICE_NAME);
        let cert = params.signed_by(&key, &self.ca).expect("sign the leaf");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), sha256: certificate_sha256(cert.der()) }
    }

    /// Trusts only this CA and verifies [`SERVICE_NAME`], whatever address is connected to.
    fn client(&self) -> ClientTls {
        ClientTls::from_pem(self.ca.pem().as_bytes(), Some(SERVICE_NAME.to_owned())).expect("CA bundle")
    }
}

/// A directory written the way the kubelet writes a Secret volume: the files live in a
/// timestamped directory, `..data` points at it, and `tls.crt`/`tls.key` are symlinks through
/// `..data`; an update swaps `..data` atomically (a rename) and removes the old directory.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(test: &str) -> SecretVolume {
        let dir = std::env::temp_dir().join(format!("tiepdan-tls-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("volume dir");
        SecretVolume { dir, version: 0 }
    }

    fn publish_leaf(&mut self, leaf: &Leaf) {
        self.publish(&[("tls.crt", leaf.cert_pem.as_bytes()), ("tls.key", leaf.key_pem.as_bytes())]);
    }

    /// Replaces the whole payload; files not in it disappear, as keys removed from a Secret do.
    fn publish(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let version = format!("..2026_06_01_00_00_00.{}", self.version);
        let version_dir = self.dir.join(&version);
        std::fs::create_dir(&version_dir).expect("version dir");
        for (name, content) in files {
            std::fs::write(version_dir.join(name), content).expect("write a payload file");
        }
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        for name in ["tls.crt", "tls.key"] {
            let link = self.dir.join(name);
            let wanted = files.iter().any(|(n, _)| *n == name);
            let exists = std::fs::symlink_metadata(&link).is_ok();
            if wanted && !exists {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).expect("user-visible symlink");
            } else if !wanted && exists {
                std::fs::remove_file(&link).expect("remove a dropped file");
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove the old version");
        }
    }
}

impl Drop for SecretVolume {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Secret's data: file name and content.
type Payload<'a> = Vec<(&'a str, &'a [u8])>;

async fn start_split(volume: &SecretVolume) -> RunningServer {
    let mut config = config();
    config.signaling =
        Some(SignalingTls { reload_interval: Duration::from_millis(100), ..SignalingTls::local(volume.dir.clone()) });
    start_with(config).await
}

/// The value of an unlabelled or single-label series in `/metrics`, e.g.
/// `tiepdan_worker_tls_reloads_total{result="invalid"}`.
async fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let response = get(admin, "/metrics").await;
    assert_eq!(response.status, 200);
    response.body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

const LOADED: &str = r#"tiepdan_worker_tls_reloads_total{result="loaded"}"#;
const INVALID: &str = r#"tiepdan_worker_tls_reloads_total{result="invalid"}"#;
const CERTIFICATE_LOADED: &str = "tiepdan_worker_tls_certificate_loaded";
const EXPIRY: &str = "tiepdan_worker_tls_certificate_expiry_timestamp_seconds";

/// Waits until the status reports `sha256` as the served certificate.
async fn status_serves(admin: SocketAddr, sha256: &str) {
    status_until(admin, &format!("/v1/status to report certificate {sha256}"), |s| {
        s.tls.as_ref().is_some_and(|t| t.sha256 == sha256)
    })
    .await;
}

/// Waits until a verified handshake to the signaling port presents `sha256`.
async fn serves(server: &RunningServer, pki: &Pki, sha256: &str) {
    let trust = pki.client();
    eventually(&format!("the signaling listener to present {sha256}"), || async {
        let served = served_certificate_sha256(server.signaling_addr(), SERVICE_NAME, Some(&trust), None).await.ok()?;
        (served == sha256).then_some(())
    })
    .await;
}

/// Joins over wss as `point`, trusting only the CA and verifying the Service name.
async fn join_wss(server: &RunningServer, tls: &ClientTls, point: &str) -> Result<SignalingClient, ClientError> {
    let mut client = SignalingClient::connect_with(&server.ws_url(), Some(tls)).await?;
    client.request(ClientMessage::Join { token: token(point) }).await?;
    Ok(client)
}

/// A minimal HTTPS/1.1 GET; returns the status and the body.
async fn https_get(addr: SocketAddr, tls: &ClientTls, path: &str) -> (u16, String) {
    try_https_get(addr, tls, path).await.expect("TLS handshake")
}

/// [`https_get`] of an admin path, with the operator's admin token.
async fn https_get_admin(addr: SocketAddr, tls: &ClientTls, path: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {}\r\n", admin_token());
    https_request(addr, tls, path, &auth).await.expect("TLS handshake")
}

/// [`https_get`], or the handshake's error.
async fn try_https_get(addr: SocketAddr, tls: &ClientTls, path: &str) -> Result<(u16, String), ClientTlsError> {
    https_request(addr, tls, path, "").await
}

/// `GET path` over TLS with `extra_headers` (each ending in CRLF).
async fn https_request(
    addr: SocketAddr,
    tls: &ClientTls,
    path: &str,
    extra_headers: &str,
) -> Result<(u16, String), ClientTlsError> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut stream = tls.handshake(tcp, "127.0.0.1").await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {SERVICE_NAME}\r\n{extra_headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    // A server closing without close_notify ends the read with an error; what came is enough.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.expect("response in time");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_worker_listens_for_signaling_before_its_certificate_exists_and_refuses_handshakes() {
    let volume = SecretVolume::new("warm");
    let pki = Pki::new("warm CA");
    let server = start_split(&volume).await;
    let admin = server.local_addr();
    assert_ne!(server.signaling_addr(), admin);
    assert!(server.ws_url().starts_with(&format!("wss://{}", server.signaling_addr())), "{}", server.ws_url());
    assert_eq!(server.admin_url(), format!("http://{admin}"));

    // The port is open (no connection refused) but there is nothing to present.
    let refused = served_certificate_sha256(server.signaling_addr(), SERVICE_NAME, None, None)
        .await
        .expect_err("no certificate to present yet");
    assert!(matches!(refused, ClientTlsError::Handshake(_)), "{refused:?}");
    let join = join_wss(&server, &pki.client(), "xa-a").await.expect_err("no wss before the certificate");
    assert!(matches!(join, ClientError::Tls { source: ClientTlsError::Handshake(_), .. }), "{join:?}");

    let raw = http(admin, "GET", "/v1/status", Some(&admin_token()), None).await;
    assert_eq!(raw.status, 200);
    let value: serde_json::Value = serde_json::from_str(&raw.body).expect("status JSON");
    assert!(value.get("tls").is_none_or(serde_json::Value::is_null), "{value}");
    assert_eq!(metric(admin, CERTIFICATE_LOADED).await, Some(0.0));
    assert_eq!(metric(admin, LOADED).await, Some(0.0));
    assert_eq!(metric(admin, INVALID).await, Some(0.0), "an empty volume is not an invalid certificate");
    assert_eq!(metric(admin, EXPIRY).await, None, "no expiry without a certificate");
    assert_eq!(get(admin, "/readyz").await.status, 200, "a warm worker is ready without a certificate");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_arrives_then_rotates_and_open_connections_keep_working() {
    let mut volume = SecretVolume::new("rotate");
    let pki = Pki::new("rotate CA");
    let (a, b) = (pki.leaf(), pki.leaf());
    assert_ne!(a.sha256, b.sha256);
    let server = start_split(&volume).await;
    let admin = server.local_addr();
    let tls = pki.client();

    volume.publish_leaf(&a);
    let mut first = eventually("a wss join verified against the CA for the Service name", || async {
        join_wss(&server, &tls, "xa-a").await.ok()
    })
    .await;
    assert_eq!(first.peer_certificate_sha256().as_deref(), Some(a.sha256.as_str()));
    let status = status(admin).await;
    let served = status.tls.expect("status reports the certificate");
    assert_eq!(served.sha256, a.sha256);
    assert!(served.loaded_at <= jiff::Timestamp::now());
    assert_eq!(metric(admin, CERTIFICATE_LOADED).await, Some(1.0));
    assert_eq!(metric(admin, LOADED).await, Some(1.0));
    assert!(metric(admin, EXPIRY).await.is_some_and(|t| t > 1_700_000_000.0));

    // Verification is real: another name, or another CA, is refused.
    let wrong_name = pki.client().with_server_name("other.example.svc");
    assert!(matches!(join_wss(&server, &wrong_name, "xa-x").await, Err(ClientError::Tls { .. })));
    let stranger = Pki::new("another CA").client();
    assert!(matches!(join_wss(&server, &stranger, "xa-x").await, Err(ClientError::Tls { .. })));
    // Without a server name the URL's host is verified; the certificate names 127.0.0.1 too.
    let by_ip = ClientTls { server_name: None, ..pki.client() };
    join_wss(&server, &by_ip, "xa-c").await.expect("join verified for the IP").close().await;

    volume.publish_leaf(&b);
    serves(&server, &pki, &b.sha256).await;
    let second = join_wss(&server, &tls, "xa-b").await.expect("join after the rotation");
    assert_eq!(second.peer_certificate_sha256().as_deref(), Some(b.sha256.as_str()));
    status_serves(admin, &b.sha256).await;
    assert_eq!(metric(admin, LOADED).await, Some(2.0));

    // The connection opened before the rotation goes on, on its own certificate.
    let created = first
        .request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send })
        .await
        .expect("the old connection still works");
    assert!(matches!(created, ServerMessage::WebRtcTransportCreated { .. }), "{created:?}");
    assert_eq!(first.peer_certificate_sha256().as_deref(), Some(a.sha256.as_str()));

    // Media through a wss-signalled session: the probe end to end.
    first.close().await;
    second.close().await;
    let mut options = ProbeOptions::new(server.ws_url(), probe_token("probe"));
    options.tls = Some(tls.clone());
    options.duration = Duration::from_millis(500);
    let report = run_probe(&options).await.expect("the probe runs over wss");
    assert!(report.audio.received > 0 && report.video.received > 0, "{report:?}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_files_keep_the_current_certificate_and_are_counted() {
    let mut volume = SecretVolume::new("invalid");
    let pki = Pki::new("invalid CA");
    let (a, b) = (pki.leaf(), pki.leaf());
    let server = start_split(&volume).await;
    let admin = server.local_addr();
    volume.publish_leaf(&a);
    status_serves(admin, &a.sha256).await;
    let loaded_at = status(admin).await.tls.expect("tls").loaded_at;

    let refusals: [(&str, Payload); 4] = [
        ("garbage", vec![("tls.crt", b"not a certificate"), ("tls.key", a.key_pem.as_bytes())]),
        ("a key of another certificate", vec![("tls.crt", b.cert_pem.as_bytes()), ("tls.key", a.key_pem.as_bytes())]),
        (
            "a certificate cut short",
            vec![("tls.crt", &b.cert_pem.as_bytes()[..200]), ("tls.key", b.key_pem.as_bytes())],
        ),
        ("no key file", vec![("tls.crt", b.cert_pem.as_bytes())]),
    ];
    for (count, (what, files)) in refusals.iter().enumerate() {
        volume.publish(files);
        let expected = (count + 1) as f64;
        eventually(&format!("{what} to be counted as invalid"), || async {
            (metric(admin, INVALID).await == Some(expected)).then_some(())
        })
        .await;
        let status = status(admin).await;
        let served = status.tls.expect("a certificate is still served");
        assert_eq!((served.sha256.as_str(), served.loaded_at), (a.sha256.as_str(), loaded_at), "after {what}");
        let presented = served_certificate_sha256(server.signaling_addr(), SERVICE_NAME, Some(&pki.client()), None)
            .await
            .expect("handshakes still succeed");
        assert_eq!(presented, a.sha256, "after {what}");
    }
    assert_eq!(metric(admin, LOADED).await, Some(1.0));
    assert_eq!(metric(admin, CERTIFICATE_LOADED).await, Some(1.0));

    // A good pair after the bad ones is taken.
    volume.publish_leaf(&b);
    serves(&server, &pki, &b.sha256).await;
    status_serves(admin, &b.sha256).await;
    assert_eq!(metric(admin, INVALID).await, Some(4.0));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_listener_serves_only_the_admin_surface() {
    let mut volume = SecretVolume::new("split");
    let pki = Pki::new("split CA");
    let server = start_split(&volume).await;
    let admin = server.local_addr();
    let port = server.signaling_addr().port();

    for (method, path) in [
        ("GET", "/v1/ws"),
        ("GET", "/join?token=x"),
        ("GET", "/"),
        ("GET", "/assets/console.js"),
        ("POST", "/v1/join-check"),
    ] {
        let response = http(admin, method, path, None, Some(r#"{"token":"x"}"#)).await;
        assert_eq!(response.status, 421, "{method} {path}: {}", response.body);
        let body: serde_json::Value = serde_json::from_str(&response.body).expect("JSON error body");
        assert_eq!(
            body,
            serde_json::json!({"code": "tls_required",
                               "message": format!("signaling is served over HTTPS/WSS on port {port}")}),
            "{method} {path}"
        );
    }
    let plain = SignalingClient::connect(&format!("ws://{admin}/v1/ws")).await.expect_err("no ws on the admin port");
    assert!(matches!(plain, ClientError::Connect { .. }), "{plain:?}");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(admin, path).await.status, 200, "{path}");
    }
    let status = http(admin, "GET", "/v1/status", Some(&admin_token()), None).await;
    assert_eq!(status.status, 200, "/v1/status with the admin token");
    let unauthorized = get(admin, "/v1/allocation").await;
    assert_eq!(unauthorized.status, 401, "the allocation endpoint is on the admin port");

    volume.publish_leaf(&pki.leaf());
    let tls = pki.client();
    eventually("the signaling listener to serve", || async {
        let (status, _) = try_https_get(server.signaling_addr(), &tls, "/healthz").await.ok()?;
        (status == 200).then_some(())
    })
    .await;
    let signaling = server.signaling_addr();
    assert_eq!(https_get(signaling, &tls, "/join?token=x").await.0, 200);
    for path in ["/v1/status", "/metrics", "/readyz", "/v1/allocation"] {
        assert_eq!(https_get(signaling, &tls, path).await.0, 404, "{path} must not be on the signaling port");
    }
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_certificate_is_reported_in_status_and_serves_wss() {
    let volume = SecretVolume::new("static");
    let pki = Pki::new("static CA");
    let leaf = pki.leaf();
    let (cert, key) = (volume.dir.join("cert.pem"), volume.dir.join("key.pem"));
    std::fs::write(&cert, &leaf.cert_pem).expect("cert");
    std::fs::write(&key, &leaf.key_pem).expect("key");
    let mut config = config();
    config.tls = Some(TlsPaths { cert, key });
    let server = start_with(config).await;
    assert_eq!(server.signaling_addr(), server.local_addr());
    assert!(server.ws_url().starts_with("wss://") && server.admin_url().starts_with("https://"));

    let tls = pki.client();
    let (code, body) = https_get_admin(server.local_addr(), &tls, "/v1/status").await;
    assert_eq!(code, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(value["tls"]["sha256"], leaf.sha256.as_str(), "{value}");
    assert!(value["tls"]["loadedAt"].is_string(), "{value}");
    let client = join_wss(&server, &tls, "xa-a").await.expect("wss join");
    assert_eq!(client.peer_certificate_sha256(), Some(leaf.sha256.clone()));
    client.close().await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_and_reloading_tls_cannot_be_combined() {
    let volume = SecretVolume::new("both");
    let mut config = config();
    config.tls = Some(TlsPaths { cert: volume.dir.join("c"), key: volume.dir.join("k") });
    config.signaling = Some(SignalingTls::local(volume.dir.clone()));
    let error = tiepdan_media_worker::server::start(config).await.expect_err("both TLS modes");
    assert!(error.to_string().contains("--tls-dir"), "{error}");
}

async fn parse_serve(args: &[&str]) -> Result<ServeConfig, String> {
    let dir = std::env::temp_dir().join(format!("tiepdan-tls-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let keys = KeyFiles::write(&dir);
    let mut argv: Vec<std::ffi::OsString> = vec!["tiepdan-media-worker".into(), "serve".into()];
    argv.extend(keys.serve_args());
    argv.extend(args.iter().map(Into::into));
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let Command::Serve(args) = cli.command else {
        panic!("expected serve");
    };
    let config = ServeConfig::from_args(*args).await.map_err(|e: ConfigError| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    config
}

#[tokio::test]
async fn the_signaling_flags_need_each_other_and_exclude_static_tls() {
    let error = parse_serve(&["--signaling-listen", "127.0.0.1:8443"]).await.expect_err("no --tls-dir");
    assert!(error.contains("--tls-dir"), "{error}");
    let error = parse_serve(&["--tls-dir", "/var/run/tiepdan/tls"]).await.expect_err("no --signaling-listen");
    assert!(error.contains("--signaling-listen"), "{error}");
    let error = parse_serve(&[
        "--signaling-listen",
        "127.0.0.1:8443",
        "--tls-dir",
        "/var/run/tiepdan/tls",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
    ])
    .await
    .expect_err("both TLS modes");
    assert!(error.contains("--tls-cert") && error.contains("cannot be used with"), "{error}");
    let error = parse_serve(&[
        "--signaling-listen",
        "127.0.0.1:8443",
        "--tls-dir",
        "/var/run/tiepdan/tls",
        "--tls-reload-interval-ms",
        "50",
    ])
    .await
    .expect_err("too short an interval");
    assert!(error.contains("--tls-reload-interval-ms") && error.contains("at least 100"), "{error}");
    let error = parse_serve(&["--listen", "127.0.0.1:8443", "--signaling-listen", "127.0.0.1:8443", "--tls-dir", "d"])
        .await
        .expect_err("one address for both");
    assert!(error.contains("--signaling-listen") && error.contains("--listen"), "{error}");

    let config = parse_serve(&[
        "--listen",
        "10.0.0.7:8080",
        "--signaling-listen",
        "10.0.0.7:8443",
        "--tls-dir",
        "/var/run/tiepdan/tls",
    ])
    .await
    .expect("a pod's flags");
    let signaling = config.signaling.expect("split listeners");
    assert_eq!(signaling.listen, "10.0.0.7:8443".parse().expect("addr"));
    assert_eq!(signaling.tls_dir, Path::new("/var/run/tiepdan/tls"));
    assert_eq!(signaling.reload_interval, Duration::from_millis(2000));
    assert!(config.tls.is_none());
}

#[test]
fn help_documents_the_signaling_flags() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tiepdan-media-worker"))
        .args(["serve", "--help"])
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in
        ["--signaling-listen", "TIEPDAN_SIGNALING_LISTEN", "--tls-dir", "TIEPDAN_TLS_DIR", "--tls-reload-interval-ms"]
    {
        assert!(help.contains(flag), "--help misses {flag}");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tiepdan-media-worker"))
        .args(["probe", "--help"])
        .output()
        .expect("run probe --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--ca-file") && help.contains("--server-name"), "{help}");
}
