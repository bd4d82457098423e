//! The real binary: its command line, graceful drain on SIGTERM, and TLS.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use tiepdan_media_worker::config::TlsPaths;
use tiepdan_media_worker::probe::client::SignalingClient;
use tiepdan_media_worker::signaling::protocol::{ClientMessage, ErrorCode};

const BINARY: &str = env!("CARGO_BIN_EXE_tiepdan-media-worker");

#[test]
fn help_documents_every_flag() {
    let output = Command::new(BINARY).args(["serve", "--help"]).output().expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--rtc-listen-ip",
        "--announced-address",
        "--rtc-min-port",
        "--rtc-max-port",
        "--workers",
        "--session-id",
        "--session-title",
        "--token-key-file",
        "--tls-cert",
        "--tls-key",
        "--verify-seconds",
        "--max-loss-percent",
        "--max-rtt-ms",
        "--drain-timeout-seconds",
        "--log-format",
        "TIEPDAN_LISTEN",
    ] {
        assert!(help.contains(flag), "--help misses {flag}");
    }
}

#[test]
fn the_token_subcommand_mints_tokens_the_worker_accepts() {
    let dir = std::env::temp_dir().join(format!("tiepdan-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key_file = dir.join("key");
    std::fs::write(&key_file, [KEY, b"\n"].concat()).expect("key");
    let output = Command::new(BINARY)
        .args(["token", "--key-file"])
        .arg(&key_file)
        .args(["--session", SESSION, "--point", "xa-a", "--name", "UBND xã A", "--role", "host"])
        .output()
        .expect("run token");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let verified = key()
        .verify_join(
            &token,
            tiepdan_media_worker::tokens::JoinRules {
                session: &session(),
                min_epoch: 0,
                now: tiepdan_media_worker::tokens::unix_now(),
            },
        )
        .expect("valid");
    assert_eq!(verified.display_name, "UBND xã A");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads the JSON log until the "listening" line and returns the address.
fn listening_address(stderr: impl Read) -> SocketAddr {
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("log line");
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if value["fields"]["message"] == "listening" {
            return value["fields"]["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .expect("address in the listening line");
        }
    }
    panic!("the worker exited before listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let dir = std::env::temp_dir().join(format!("tiepdan-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key_file = dir.join("key");
    std::fs::write(&key_file, KEY).expect("key");
    let mut child = Command::new(BINARY)
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(["--session-id", SESSION, "--drain-timeout-seconds", "60"])
        .args(["--rtc-min-port", "45000", "--rtc-max-port", "45999"])
        .arg("--token-key-file")
        .arg(&key_file)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the worker");
    let stderr = child.stderr.take().expect("stderr");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    // Keep draining stderr so the worker never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let addr = listening_address(&mut reader);
        let _ = addr_tx.send(addr);
        std::io::copy(&mut reader, &mut std::io::sink()).ok();
    });
    let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(WAIT))
        .await
        .expect("join")
        .expect("the worker reports its address");
    let url = format!("ws://{addr}/v1/ws");

    let mut present = SignalingClient::connect(&url).await.expect("connect");
    present.request(ClientMessage::Join { token: token("xa-a") }).await.expect("join");

    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    eventually("readyz to turn 503", || async { (get(addr, "/readyz").await.status == 503).then_some(()) }).await;
    let mut late = SignalingClient::connect(&url).await.expect("connect while draining");
    let refused =
        late.request(ClientMessage::Join { token: token("xa-b") }).await.expect_err("no joins while draining");
    assert_eq!(refused.code(), Some(ErrorCode::Draining));
    assert!(child.try_wait().expect("wait").is_none(), "must wait for the present point");

    present.request(ClientMessage::Leave).await.expect("leave");
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait for exit");
    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = std::env::temp_dir().join(format!("tiepdan-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("key");
    let mut config = config();
    config.tls = Some(TlsPaths { cert, key: key_path });
    let server = start_with(config).await;
    assert!(server.ws_url().starts_with("wss://"));
    let addr = server.local_addr();
    let der = certified.cert.der().clone();
    let response = tokio::task::spawn_blocking(move || https_get(addr, der, "/healthz")).await.expect("join");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A blocking HTTPS GET trusting only `cert`.
fn https_get(addr: SocketAddr, cert: rustls::pki_types::CertificateDer<'static>, path: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("trust the test certificate");
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("tls");
    let socket = std::net::TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut stream = rustls::StreamOwned::new(connection, socket);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = Vec::new();
    // A peer closing without close_notify is fine here; what was read is enough.
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}
