//! The entry with real processes: workers (the media-worker binary) and the entry binary. A
//! client joins through the entry; its worker is killed by PID and another started for the
//! session; the same token joins again through the entry, within 10 s. Bad first frames get an
//! error frame and a close. And no server log ever holds a token.

mod common;

use common::browser::{Camera, Driver};
use common::*;
use futures::{SinkExt as _, StreamExt as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tiepdan_contract::Role;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Socket = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// What the issue asks of a link across a worker replacement.
const RECONNECT_BOUND: Duration = Duration::from_secs(10);

/// Everything a test needs: two CAs (the operator's, the entry's), the keys, the entry.
struct Setup {
    dir: TempDir,
    operator_ca: TestCa,
    entry_ca_pem: String,
    entry_pin: String,
    keys: Keys,
    entry: Process,
    routes: std::path::PathBuf,
}

impl Setup {
    fn new(purpose: &str) -> Self {
        let dir = TempDir::new(purpose);
        let operator_ca = TestCa::new("tiepdan operator CA (test)");
        std::fs::write(dir.join("trust-bundle.pem"), operator_ca.pem()).expect("bundle");
        let entry_ca = TestCa::new("province CA (test)");
        let entry_leaf = entry_ca.issue(ENTRY_HOST, &dir.join("entry-tls"));
        let keys = Keys::write(&dir.0);
        let routes = dir.join("routes.json");
        route(&routes, None);
        let entry = spawn_entry(&dir.join("entry-tls"), &dir.join("trust-bundle.pem"), &routes);
        Setup { operator_ca, entry_ca_pem: entry_ca.pem(), entry_pin: entry_leaf.spki_pin, keys, entry, routes, dir }
    }

    /// A worker for the session with a fresh certificate from the operator's CA.
    fn worker(&self, name: &str, rtc_ports: (u16, u16)) -> Process {
        let tls = self.dir.join(&format!("{name}-tls"));
        self.operator_ca.issue(&signaling_name(), &tls);
        spawn_worker(&self.keys, &tls, rtc_ports)
    }

    fn entry_addr(&self) -> SocketAddr {
        self.entry.addr("addr")
    }

    /// WSS to the entry as a browser would: its host name, trusting only the entry's CA.
    async fn connect(&self) -> Socket {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.entry_ca_pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(self.entry_addr()).await.expect("connect to the entry");
        let name = ServerName::try_from(ENTRY_HOST).expect("name");
        let tls =
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS to the entry");
        let request = format!("wss://{ENTRY_HOST}/v1/ws").into_client_request().expect("request");
        let (socket, _) = tokio_tungstenite::client_async(request, tls).await.expect("WebSocket to the entry");
        socket
    }

    /// All server logs: the entry's and every worker's given.
    fn logs(&self, workers: &[&Process]) -> String {
        let mut text = self.entry.log_text();
        for w in workers {
            text.push('\n');
            text.push_str(&w.log_text());
        }
        text
    }
}

/// The next text frame as JSON, or `None` when the socket closed first; bounded by [`WAIT`].
async fn next_json(socket: &mut Socket) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next()).await.expect("a frame within WAIT");
        match frame {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(text.as_str()).expect("JSON frame")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// The close code the socket ends with (after any frames), bounded by [`WAIT`].
async fn close_code(socket: &mut Socket) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await.expect("the close within WAIT") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Joins through the entry; the reply (`joined` or `error`).
async fn join(setup: &Setup, token: &str) -> (Socket, Value) {
    let mut socket = setup.connect().await;
    let frame = json!({"action": "join", "token": token, "requestId": 1}).to_string();
    socket.send(Message::text(frame)).await.expect("send join");
    let reply = next_json(&mut socket).await.expect("a reply to join");
    (socket, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_survives_a_worker_replacement_through_the_entry() {
    let setup = Setup::new("failover");
    let token = setup.keys.token("xa-tan-hung", Role::Participant);

    // No worker yet: the console is told to try again, not that its link is bad.
    let (_, reply) = join(&setup, &token).await;
    assert_eq!(reply["action"], "error", "{reply}");
    assert_eq!(reply["code"], "session_not_allocated", "{reply}");
    assert_eq!(reply["requestId"], 1, "{reply}");

    let mut first = setup.worker("worker-a", (47100, 47199));
    route(&setup.routes, Some(first.addr("signaling_addr")));
    let (mut socket, reply) = join(&setup, &token).await;
    assert_eq!(reply["action"], "joined", "{reply}");
    assert_eq!(reply["requestId"], 1, "{reply}");
    // The rest of the protocol goes through too.
    socket
        .send(Message::text(
            json!({"action": "createWebRtcTransport", "direction": "recv", "requestId": 2}).to_string(),
        ))
        .await
        .expect("send");
    let created = next_json(&mut socket).await.expect("transport");
    assert_eq!(created["action"], "webRtcTransportCreated", "{created}");

    // The node loses the pod: SIGKILL, no goodbye. The console's socket closes ("going away").
    let killed_at = Instant::now();
    let killed_pid = first.pid();
    first.kill();
    assert_eq!(close_code(&mut socket).await, Some(1001), "the entry tells the console the worker went away");

    // The replacement: another worker for the session, on other ports, as the operator's
    // failover allocates one; the routes follow it.
    let second = setup.worker("worker-b", (47200, 47299));
    route(&setup.routes, Some(second.addr("signaling_addr")));
    let (rejoined_at, reply) = loop {
        let (_socket, reply) = join(&setup, &token).await;
        if reply["action"] == "joined" {
            break (Instant::now(), reply);
        }
        assert_eq!(reply["code"], "session_not_allocated", "only a retryable refusal while failing over: {reply}");
        assert!(killed_at.elapsed() < RECONNECT_BOUND, "no rejoin within {RECONNECT_BOUND:?}: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reconnect = rejoined_at - killed_at;
    eprintln!(
        "worker {killed_pid} killed; the same link joined the new worker through the entry after {:.2} s",
        reconnect.as_secs_f64()
    );
    assert!(reconnect < RECONNECT_BOUND, "{reconnect:?}");
    assert_eq!(reply["action"], "joined");

    // Non-vacuous: the entry did log its routing, and never the token.
    let logs = setup.logs(&[&second]);
    assert!(setup.entry.log_text().contains("routed"), "the entry logs its routing:\n{}", setup.entry.log_text());
    assert_no_token(&logs, &token);
    assert_no_token(&first.log_text(), &token);
}

fn assert_no_token(logs: &str, token: &str) {
    let signature = token.rsplit('.').next().expect("signature");
    assert!(!logs.contains(token), "a server log holds the token");
    assert!(!logs.contains(signature), "a server log holds the token's signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_first_frames_get_an_error_frame_and_a_close() {
    let setup = Setup::new("bad-input");
    let worker = setup.worker("worker", (47300, 47399));
    route(&setup.routes, Some(worker.addr("signaling_addr")));
    let good = setup.keys.token("xa-a", Role::Host);
    let mut other = tiepdan_contract::tokens::JoinClaims::for_point(
        &"ubnd-khac/phien-khac".parse().expect("id"),
        &"xa-a".parse().expect("point"),
        "UBND xã A",
        Role::Host,
        "Tiếp công dân",
        0,
        i64::MAX / 4,
    );
    other.nbf = 0;
    let unknown = setup.keys.signing.key(tiepdan_contract::tokens::KeyUse::Join).mint_join(&other).expect("mint");

    let cases: [(&str, Message, &str, u16); 6] = [
        ("garbage", Message::text("{not json"), "malformed_message", 1008),
        ("binary", Message::binary(vec![0u8, 1, 2]), "malformed_message", 1008),
        ("not a join", Message::text(r#"{"action":"produce","requestId":5}"#), "not_joined", 1008),
        ("a token that is no JWT", Message::text(r#"{"action":"join","token":"abc"}"#), "invalid_token", 1008),
        (
            "an unknown session",
            Message::text(json!({"action": "join", "token": unknown, "requestId": 9}).to_string()),
            "session_closed",
            1008,
        ),
        (
            "oversized",
            Message::text(format!(r#"{{"action":"join","token":"{}"}}"#, "x".repeat(100 * 1024))),
            "frame_too_large",
            1009,
        ),
    ];
    for (what, frame, code, close) in cases {
        let mut socket = setup.connect().await;
        socket.send(frame).await.expect("send");
        let reply = next_json(&mut socket).await.unwrap_or_else(|| panic!("{what}: an error frame before the close"));
        assert_eq!(reply["action"], "error", "{what}: {reply}");
        assert_eq!(reply["code"], code, "{what}: {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a message: {reply}");
        assert_eq!(close_code(&mut socket).await, Some(close), "{what}");
    }

    // Nothing crashed: the entry still routes a good join.
    let (_socket, reply) = join(&setup, &good).await;
    assert_eq!(reply["action"], "joined", "{reply}");
    assert_no_token(&setup.logs(&[&worker]), &good);
    assert_no_token(&setup.logs(&[&worker]), &unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_link_opens_joins_and_rejoins_in_chromium_after_its_worker_is_killed() {
    let setup = Setup::new("chromium");
    let mut first = setup.worker("worker-a", (47400, 47499));
    route(&setup.routes, Some(first.addr("signaling_addr")));
    let token = setup.keys.token("xa-tan-hung", Role::Host);
    let port = setup.entry_addr().port();
    let link = format!("https://{ENTRY_HOST}:{port}/join#token={token}");

    let driver = Driver::start();
    // The entry's own certificate is trusted by its key, nothing else; its host name resolves to
    // 127.0.0.1 for this browser only.
    let args = [
        format!("--ignore-certificate-errors-spki-list={}", setup.entry_pin),
        format!("--host-resolver-rules=MAP {ENTRY_HOST} 127.0.0.1"),
    ];
    let page = driver.browser_with_args("entry", Camera::Allowed, &args);
    page.goto(&link);
    assert_eq!(page.eval("return window.isSecureContext;"), Value::Bool(true), "{}", page.console_log());
    assert_eq!(page.eval("return location.origin;"), format!("https://{ENTRY_HOST}:{port}").as_str());
    // The join-check went through the entry to the worker.
    page.until("the join-check to enable joining", "return !document.getElementById('join').disabled;");
    page.click("#join");
    let deadline = Instant::now() + WAIT;
    while page.eval("return window.tiepdan.stats().then(s => s.phase);") != "room" {
        assert!(
            Instant::now() < deadline,
            "not in the room: {}\nnotices: {}\nentry:\n{}\nworker:\n{}",
            page.eval("return window.tiepdan.stats().then(s => s.phase);"),
            page.eval("return JSON.stringify(window.tiepdan.notices());"),
            setup.entry.log_text(),
            first.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let killed_at = Instant::now();
    first.kill();
    let second = setup.worker("worker-b", (47500, 47599));
    route(&setup.routes, Some(second.addr("signaling_addr")));
    // The console notices the close, retries with backoff, and lands on the new worker.
    let deadline = Instant::now() + WAIT;
    let rejoined = loop {
        let phase = page.eval("return window.tiepdan.stats().then(s => s.phase);");
        // In the room, and on the new worker: the entry routed a connection there.
        let routed = routed_to(&setup.entry, second.addr("signaling_addr"));
        if phase == "room" && routed {
            break killed_at.elapsed();
        }
        assert!(Instant::now() < deadline, "the page did not rejoin: phase {phase}\n{}", page.console_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("Chromium rejoined the new worker through the entry {:.2} s after the kill", rejoined.as_secs_f64());
    assert!(rejoined < RECONNECT_BOUND, "{rejoined:?}");
    page.close();
    assert_no_token(&setup.logs(&[&first, &second]), &token);
}

/// Whether the entry's log says it routed a connection to `worker`.
fn routed_to(entry: &Process, worker: SocketAddr) -> bool {
    entry.log.lock().expect("log").iter().any(|line| {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        v["fields"]["message"] == "routed" && v["fields"]["worker"] == worker.to_string().as_str()
    })
}
