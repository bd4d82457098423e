//! The real binary: its command line, graceful drain on SIGTERM, and TLS.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
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
        "--join-public-key-file",
        "--admin-public-key-file",
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
fn the_token_subcommands_mint_tokens_the_worker_accepts() {
    let keys = KeyDir::new("token");
    let run = |args: &[&str], key: &Path| {
        let output = Command::new(BINARY).args(args).arg("--private-key-file").arg(key).output().expect("run");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).trim().to_owned(), output.stderr)
    };
    let join = ["token", "--session", SESSION, "--point", "xa-a", "--name", "UBND xã A", "--role", "host"];
    let (ok, token, stderr) = run(&join, &keys.files.join_private);
    assert!(ok, "{}", String::from_utf8_lossy(&stderr));
    let now = tiepdan_media_worker::tokens::unix_now();
    let rules = tiepdan_media_worker::tokens::JoinRules { session: &session(), min_epoch: 0, now };
    let verified = public_keys().verify_join(&token, rules).expect("valid");
    assert_eq!(verified.display_name, "UBND xã A");

    let (ok, token, stderr) = run(&["admin-token", "--pod", "w-1"], &keys.files.admin_private);
    assert!(ok, "{}", String::from_utf8_lossy(&stderr));
    assert_eq!(public_keys().verify_admin(&token, now).expect("valid").pod.as_deref(), Some("w-1"));

    // A public key is no private key: the error names the flag and the file.
    let (ok, _, stderr) = run(&join, &keys.files.join_public);
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(!ok && stderr.contains("--private-key-file"), "{stderr}");
    assert!(stderr.contains(&keys.files.join_public.display().to_string()), "{stderr}");
}

#[test]
fn serve_names_the_flag_of_a_key_file_that_is_not_an_ed25519_public_key() {
    let keys = KeyDir::new("bad-public-key");
    let hs256 = keys.dir.join("signing.key");
    std::fs::write(&hs256, "ab".repeat(32)).expect("an old HS256 key");
    for (flag, other) in
        [("--join-public-key-file", "--admin-public-key-file"), ("--admin-public-key-file", "--join-public-key-file")]
    {
        let output = Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", flag])
            .arg(&hs256)
            .arg(other)
            .arg(&keys.files.admin_public)
            .env_remove("RUST_LOG")
            .output()
            .expect("run serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains(flag) && stderr.contains(&hs256.display().to_string()), "{stderr}");
    }
}

/// Reads the JSON log until the "listening" line; returns the address and the log lines before it.
fn listening_address(stderr: impl Read) -> (SocketAddr, Vec<serde_json::Value>) {
    let mut before = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("log line");
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if value["fields"]["message"] == "listening" {
            let addr =
                value["fields"]["addr"].as_str().and_then(|a| a.parse().ok()).expect("address in the listening line");
            return (addr, before);
        }
        before.push(value);
    }
    panic!("the worker exited before listening");
}

/// Key files in a fresh directory named after `purpose`, removed on drop (also when a test fails).
struct KeyDir {
    dir: PathBuf,
    files: KeyFiles,
}

impl KeyDir {
    fn new(purpose: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tiepdan-{purpose}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let files = KeyFiles::write(&dir);
        Self { dir, files }
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A spawned worker process, killed (by its PID) if a failing test leaves it running.
struct ServeProcess(Child);

impl std::ops::Deref for ServeProcess {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServeProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `serve` with JSON logs on an ephemeral port, one mediasoup worker, and `extra` arguments.
fn spawn_serve(keys: &KeyFiles, rtc_ports: (u16, u16), extra: &[&str]) -> ServeProcess {
    let child = Command::new(BINARY)
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(["--rtc-min-port", &rtc_ports.0.to_string(), "--rtc-max-port", &rtc_ports.1.to_string()])
        .args(extra)
        .args(keys.serve_args())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the worker");
    ServeProcess(child)
}

/// Waits (up to [`WAIT`]) for the worker to report its address, reading its log from then on
/// so it never blocks on a full pipe.
async fn wait_listening(child: &mut Child) -> (SocketAddr, Vec<serde_json::Value>) {
    let stderr = child.stderr.take().expect("stderr");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let listening = listening_address(&mut reader);
        let _ = addr_tx.send(listening);
        std::io::copy(&mut reader, &mut std::io::sink()).ok();
    });
    tokio::task::spawn_blocking(move || addr_rx.recv_timeout(WAIT))
        .await
        .expect("join")
        .expect("the worker reports its address")
}

/// Waits (up to [`WAIT`]) for the child to exit; kills it by its PID and fails when it does not.
async fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if tokio::time::Instant::now() >= deadline {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = kill(pid, Signal::SIGKILL);
            let _ = child.wait();
            panic!("the worker did not exit within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_announced_address_is_resolved_once_at_start() {
    let keys = KeyDir::new("announced-name");
    let mut child = spawn_serve(&keys.files, (46000, 46999), &["--announced-address", "localhost"]);
    let (addr, log) = wait_listening(&mut child).await;
    let resolved = log
        .iter()
        .find(|line| line["fields"]["message"] == "resolved --announced-address")
        .expect("the resolution is logged");
    assert_eq!(resolved["fields"]["name"], "localhost");
    assert_eq!(resolved["fields"]["ip"], "127.0.0.1");
    assert_healthy(addr).await;

    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let status = wait_exit(&mut child).await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_announced_address_fails_fast_naming_the_flag() {
    let keys = KeyDir::new("announced-unresolvable");
    // `.invalid` never resolves (RFC 6761), and the worker answers that without asking DNS.
    let mut child = spawn_serve(&keys.files, (46000, 46999), &["--announced-address", "no-such-host.invalid"]);
    let status = wait_exit(&mut child).await;
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--announced-address"), "{stderr}");
    assert!(stderr.contains("no-such-host.invalid"), "{stderr}");
    assert!(stderr.contains("not resolve"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let keys = KeyDir::new("drain");
    let mut child =
        spawn_serve(&keys.files, (45000, 45999), &["--session-id", SESSION, "--drain-timeout-seconds", "60"]);
    let (addr, _) = wait_listening(&mut child).await;
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
    let status = wait_exit(&mut child).await;
    assert!(status.success(), "exit status {status:?}");
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

/// The kubelet may delete a pod the moment it starts; a SIGTERM sent as soon as the worker says
/// "listening" must drain and exit 0, not kill it with the signal's default action. (The handler
/// used to be installed only after "listening"; a CI run caught the window once.) The signal is
/// sent from the thread that reads the line, so it lands as early as a test can make it.
#[test]
fn a_sigterm_right_after_listening_drains_and_exits_zero() {
    let keys = KeyDir::new("early-term");
    // Busy threads on every core make the worker's threads wait for a CPU, which is what widens
    // the window on a loaded CI machine.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let burners: Vec<_> = (0..cores * 2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let _stop_burners = StopOnDrop(stop, burners);
    for attempt in 0..20 {
        let mut child = spawn_serve(&keys.files, (47000, 47999), &[]);
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        loop {
            line.clear();
            assert!(reader.read_line(&mut line).expect("log line") > 0, "the worker exited before listening");
            if line.contains("\"listening\"") {
                kill(pid, Signal::SIGTERM).expect("SIGTERM");
                break;
            }
        }
        std::io::copy(&mut reader, &mut std::io::sink()).ok();
        let status = child.wait().expect("wait");
        assert!(status.success(), "attempt {attempt}: exit status {status:?}");
    }
}

/// Stops the busy threads when the test ends, also when it fails.
struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for burner in self.1.drain(..) {
            let _ = burner.join();
        }
    }
}
