//! The operator's telemetry as `tiepdan-operator run` installs it (JSON logs, OTLP/HTTP spans):
//! a local OTLP receiver on 127.0.0.1 gets the reconcile spans of a session walking into its
//! rehearsal, and the JSON log lines written inside those reconciles carry the same trace ids.
//! A test binary of its own: it installs the process-wide tracing subscriber.

// Helpers outside #[test] fns fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

#[path = "operator/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kube::api::Api;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::api::{ReceptionSession, SessionPhase};
use tiepdan_operator::clock::SimClock;
use tiepdan_operator::telemetry::{LogFormat, Otlp, Telemetry};

use crate::common::{cluster, kubectl_ok, start_operator};

/// A span as received: name, hex trace id and its string attributes.
#[derive(Clone, Debug)]
struct Received {
    name: String,
    trace_id: String,
    attributes: Vec<(String, String)>,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// The OTLP/HTTP traces endpoint: protobuf (the exporter's default) or JSON bodies.
async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let json = headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| e.to_string())
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())
    };
    let Ok(request) = request else {
        return StatusCode::BAD_REQUEST;
    };
    let spans = request.resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
    let received = spans.map(|s| Received {
        name: s.name,
        trace_id: s.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
        attributes: s
            .attributes
            .into_iter()
            .filter_map(|kv| match kv.value.and_then(|v| v.value) {
                Some(Value::StringValue(v)) => Some((kv.key, v)),
                _ => None,
            })
            .collect(),
    });
    inbox.lock().unwrap().extend(received);
    StatusCode::OK
}

/// Log lines, captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The trace ids found in the span lists of JSON lines whose message contains `message`.
    fn trace_ids_of(&self, message: &str) -> BTreeSet<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"].as_str().is_some_and(|m| m.contains(message)))
            .flat_map(|v| v["spans"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s["trace_id"].as_str().map(str::to_owned))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_spans_reach_an_otlp_receiver_and_their_trace_ids_are_in_the_json_logs() {
    let inbox: Inbox = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/v1/traces", post(receive)).with_state(inbox.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let logs = Captured::default();
    let writer = logs.clone();
    let otlp = Otlp::Endpoint(format!("http://{addr}/v1/traces"));
    let telemetry =
        Arc::new(Telemetry::init(tiepdan_operator::TELEMETRY, LogFormat::Json, &otlp, move || writer.clone()).unwrap());
    assert!(telemetry.exporting());

    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("otel");
    create_namespace(&client, &ns).await.unwrap();
    let clock = SimClock::new("2027-03-14T07:10:00Z".parse().unwrap());
    let _op = start_operator(client.clone(), &ns, Arc::new(clock));
    kubectl_ok(cp, &["apply", "-n", &ns, "-f", "examples/my-hao/"]);
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    wait_for(Duration::from_secs(30), "phase Rehearsal", || async {
        let phase =
            sessions.get("tiep-dan-dinh-ky-thang-3").await.map_err(|e| e.to_string())?.status.and_then(|s| s.phase);
        if phase == Some(SessionPhase::Rehearsal) {
            Ok(())
        } else {
            Err(format!("{phase:?}"))
        }
    })
    .await
    .unwrap();

    // The batch exporter sends every few seconds; flushing (blocking, off the runtime's threads)
    // sends what has ended so far.
    let exported = wait_for(Duration::from_secs(30), "a ReceptionSession reconcile span at the receiver", || {
        let (telemetry, inbox) = (telemetry.clone(), inbox.clone());
        async move {
            tokio::task::spawn_blocking(move || telemetry.flush()).await.map_err(|e| e.to_string())?;
            let spans = inbox.lock().unwrap().clone();
            let reconciles: Vec<Received> = spans
                .iter()
                .filter(|s| s.name == "reconcile ReceptionSession")
                .filter(|s| s.attributes.contains(&("kind".to_owned(), "ReceptionSession".to_owned())))
                .cloned()
                .collect();
            if reconciles.is_empty() {
                Err(format!(
                    "{} spans, none a session reconcile: {:?}",
                    spans.len(),
                    spans.iter().map(|s| &s.name).collect::<BTreeSet<_>>()
                ))
            } else {
                Ok(spans)
            }
        }
    })
    .await
    .unwrap();
    let names: BTreeSet<&str> = exported.iter().map(|s| s.name.as_str()).collect();
    for want in ["reconcile ReceptionPoint", "reconcile MediaWorkerPool", "provision", "write_status"] {
        assert!(names.contains(want), "no {want:?} span in {names:?}");
    }
    let exported_ids: BTreeSet<String> = exported.iter().map(|s| s.trace_id.clone()).collect();

    // The phase change is logged inside a session reconcile, under its trace id.
    let logged = logs.trace_ids_of("session phase changed");
    assert!(!logged.is_empty(), "no JSON log line with a trace id for the phase change");
    assert!(
        logged.iter().any(|id| exported_ids.contains(id)),
        "logged trace ids {logged:?} were not exported ({} trace ids exported)",
        exported_ids.len()
    );
    println!(
        "otlp: {} spans received in {} traces; logged phase changes carry exported trace ids",
        exported.len(),
        exported_ids.len()
    );
    server.abort();
}

/// The media worker's signaling spans: the real `tiepdan-media-worker serve` with
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set exports one `signaling` span per client message, named by
/// its action, and its JSON log lines carry the same trace ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_spans_of_a_real_worker_reach_an_otlp_receiver() {
    use tiepdan_media_worker::ids::SessionId;
    use tiepdan_media_worker::probe::client::SignalingClient;
    use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, Role, ServerMessage};
    use tiepdan_media_worker::tokens::{generate_keys, unix_now, JoinClaims};

    let inbox: Inbox = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/v1/traces", post(receive)).with_state(inbox.clone());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tiepdan_harness::process::make_temp_dir("worker-otlp").unwrap();
    let (keys, _) = generate_keys();
    std::fs::write(dir.join("join.pub.pem"), keys.join.public_pem().unwrap()).unwrap();
    std::fs::write(dir.join("admin.pub.pem"), keys.admin.public_pem().unwrap()).unwrap();
    let port = tiepdan_harness::process::free_ports(1).unwrap()[0];
    let log = std::fs::File::create(dir.join("worker.log")).unwrap();
    let mut worker = tokio::process::Command::new(common::media_worker_bin())
        .args(["--log-format", "json", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--session-id", "my-hao/giam-sat", "--drain-timeout-seconds", "1", "--join-public-key-file"])
        .arg(dir.join("join.pub.pem"))
        .arg("--admin-public-key-file")
        .arg(dir.join("admin.pub.pem"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let mut client = wait_for(Duration::from_secs(30), "the worker to accept connections", || async {
        SignalingClient::connect(&url).await.map_err(|e| e.to_string())
    })
    .await
    .unwrap();

    let session: SessionId = "my-hao/giam-sat".parse().unwrap();
    let claims = JoinClaims::for_point(
        &session,
        &"di-su".parse().unwrap(),
        "UBND phường Dị Sử",
        Role::Participant,
        "Giám sát",
        unix_now() - 5,
        600,
    );
    let token = keys.join.mint_join(&claims).unwrap();
    let joined = client.request(ClientMessage::Join { token }).await.unwrap();
    assert!(matches!(joined, ServerMessage::Joined { .. }), "{joined:?}");
    client.request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send }).await.unwrap();
    drop(client);

    // SIGTERM drains and exits; the exporter flushes on the way out.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(worker.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the worker exits cleanly: {status}");

    let spans = wait_for(Duration::from_secs(20), "signaling spans at the receiver", || async {
        let spans: Vec<Received> = inbox.lock().unwrap().iter().filter(|s| s.name == "signaling").cloned().collect();
        let action = |a: &str| spans.iter().any(|s| s.attributes.contains(&("action".to_owned(), a.to_owned())));
        if action("join") && action("createWebRtcTransport") {
            Ok(spans)
        } else {
            Err(format!("{spans:?}"))
        }
    })
    .await
    .unwrap();
    // The span of a joined connection's request names the point.
    assert!(spans.iter().any(|s| s.attributes.contains(&("point".to_owned(), "di-su".to_owned()))), "{spans:?}");
    let exported: BTreeSet<String> = spans.iter().map(|s| s.trace_id.clone()).collect();
    let logs = std::fs::read_to_string(dir.join("worker.log")).unwrap();
    let logged: BTreeSet<String> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| v["spans"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["trace_id"].as_str().map(str::to_owned))
        .collect();
    assert!(!logged.is_empty() && logged.is_subset(&exported), "logged {logged:?}, exported {exported:?}");
    receiver.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
