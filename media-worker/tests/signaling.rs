//! Signaling against a real worker on 127.0.0.1: refusals carry the right code and never take
//! the worker down; status follows joins and leaves; one point has one connection.

mod common;

use common::*;
use mediasoup::worker::ExitError;
use tiepdan_media_worker::http::ApiError;
use tiepdan_media_worker::probe::client::{ClientError, SignalingClient};
use tiepdan_media_worker::signaling::protocol::{
    ClientMessage, Direction, ErrorCode, RequestId, ServerMessage, MAX_MESSAGE_BYTES,
};
use tiepdan_media_worker::signaling::protocol::{MediaSource, Role};
use tiepdan_media_worker::tokens::{unix_now, JoinClaims, KeyUse, PrivateKey};

async fn join_error(url: &str, token: String) -> ErrorCode {
    let mut client = SignalingClient::connect(url).await.expect("connect");
    let err = client.request(ClientMessage::Join { token }).await.expect_err("join must be refused");
    err.code().unwrap_or_else(|| panic!("expected a refusal, got {err:?}"))
}

async fn expect_error(client: &mut SignalingClient, text: String) -> (ErrorCode, Option<RequestId>) {
    client.send_text(text).await.expect("send");
    match client.next().await.expect("reply").into_parts() {
        (ServerMessage::Error { code, .. }, request_id) => (code, request_id),
        (other, _) => panic!("expected an error, got {other:?}"),
    }
}

trait IntoParts {
    fn into_parts(self) -> (ServerMessage, Option<RequestId>);
}

impl IntoParts for tiepdan_media_worker::signaling::protocol::ServerEnvelope {
    fn into_parts(self) -> (ServerMessage, Option<RequestId>) {
        (self.message, self.request_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_token_is_refused_and_the_worker_stays_up() {
    let server = start().await;
    let forged = PrivateKey::generate(KeyUse::Join).mint_join(&claims("xa-a")).expect("mint");
    assert_eq!(join_error(&server.ws_url(), forged).await, ErrorCode::InvalidToken);
    assert_eq!(join_error(&server.ws_url(), "garbage".to_owned()).await, ErrorCode::InvalidToken);
    assert_healthy(server.local_addr()).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_premature_tokens_are_refused() {
    let server = start().await;
    let mut expired = claims("xa-a");
    expired.nbf -= 7200;
    expired.exp = expired.nbf + 60;
    let token = key().mint_join(&expired).expect("mint");
    assert_eq!(join_error(&server.ws_url(), token).await, ErrorCode::TokenExpired);

    let mut early = claims("xa-a");
    early.nbf += 3600;
    early.exp += 7200;
    let token = key().mint_join(&early).expect("mint");
    assert_eq!(join_error(&server.ws_url(), token).await, ErrorCode::TokenNotYetValid);
    assert_healthy(server.local_addr()).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_another_session_is_refused() {
    let server = start().await;
    let mut other = claims("xa-a");
    other.aud = "ubnd-hanoi/another-session".to_owned();
    let token = key().mint_join(&other).expect("mint");
    assert_eq!(join_error(&server.ws_url(), token).await, ErrorCode::WrongSession);
    assert_healthy(server.local_addr()).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_precise_errors_and_the_connection_stays_usable() {
    let server = start().await;
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");

    let (code, _) = expect_error(&mut client, "{this is not json".to_owned()).await;
    assert_eq!(code, ErrorCode::MalformedMessage);

    let (code, request_id) = expect_error(&mut client, r#"{"action":"teleport","requestId":"r1"}"#.to_owned()).await;
    assert_eq!(code, ErrorCode::UnknownAction);
    assert_eq!(request_id, Some(RequestId::Text("r1".to_owned())));

    let (code, _) = expect_error(&mut client, r#"{"action":"join"}"#.to_owned()).await;
    assert_eq!(code, ErrorCode::MalformedMessage);

    let (code, request_id) =
        expect_error(&mut client, r#"{"action":"createWebRtcTransport","direction":"send","requestId":9}"#.to_owned())
            .await;
    assert_eq!(code, ErrorCode::NotJoined);
    assert_eq!(request_id, Some(RequestId::Number(9)));

    let err = client
        .request(ClientMessage::CreatePlainTransport { direction: Direction::Send })
        .await
        .expect_err("not joined");
    assert_eq!(err.code(), Some(ErrorCode::NotJoined));

    // The same connection can still join after all that.
    let joined = client.request(ClientMessage::Join { token: token("xa-a") }).await.expect("join");
    assert!(matches!(joined, ServerMessage::Joined { .. }));
    let err = client.request(ClientMessage::Join { token: token("xa-a") }).await.expect_err("second join");
    assert_eq!(err.code(), Some(ErrorCode::AlreadyJoined));
    assert_healthy(server.local_addr()).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_gracefully() {
    let server = start().await;
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let big = format!(r#"{{"action":"join","token":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES + 1));
    let (code, _) = expect_error(&mut client, big).await;
    assert_eq!(code, ErrorCode::FrameTooLarge);
    // Still usable.
    let joined =
        client.request(ClientMessage::Join { token: token("xa-a") }).await.expect("join after a refused frame");
    assert!(matches!(joined, ServerMessage::Joined { .. }));

    // Far beyond the limit the WebSocket layer refuses to buffer it and the connection closes
    // (with an error first when the socket still allows it).
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let huge = "y".repeat(MAX_MESSAGE_BYTES * 16);
    let _ = client.send_text(huge).await;
    loop {
        match client.next().await {
            Ok(envelope) => match envelope.message {
                ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::FrameTooLarge),
                other => panic!("unexpected {other:?}"),
            },
            Err(ClientError::Closed { .. } | ClientError::Socket(_)) => break,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_healthy(server.local_addr()).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reflects_joins_and_leaves() {
    let server = start().await;
    let addr = server.local_addr();
    let initial = status(addr).await;
    assert_eq!(initial.session.as_ref().map(|s| s.as_str()), Some(SESSION));
    assert!(initial.points.is_empty());

    let mut a = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    a.request(ClientMessage::Join { token: token("xa-a") }).await.expect("join a");
    let mut b = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let ServerMessage::Joined { peers, .. } =
        b.request(ClientMessage::Join { token: token("xa-b") }).await.expect("join b")
    else {
        panic!("expected joined");
    };
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].point.as_str(), "xa-a");
    assert_eq!(peers[0].display_name, "Điểm cầu xa-a");
    let pushed = a.wait_for(|m| matches!(m, ServerMessage::PeerJoined { .. })).await.expect("peerJoined");
    assert!(matches!(pushed, ServerMessage::PeerJoined { point, .. } if point.as_str() == "xa-b"));

    let both = status(addr).await;
    assert_eq!(both.points.len(), 2);
    assert!(both.points.iter().all(|p| p.joined && p.present));

    let left = b.request(ClientMessage::Leave).await.expect("leave");
    assert_eq!(left, ServerMessage::Left);
    a.wait_for(|m| matches!(m, ServerMessage::PeerLeft { point } if point.as_str() == "xa-b")).await.expect("peerLeft");
    let after =
        status_until(addr, "xa-b to be gone", |s| s.points.iter().any(|p| p.name.as_str() == "xa-b" && !p.present))
            .await;
    let b_status = after.points.iter().find(|p| p.name.as_str() == "xa-b").expect("listed");
    assert!(b_status.joined && !b_status.connected);
    assert!(after.points.iter().any(|p| p.name.as_str() == "xa-a" && p.present));

    // A dropped connection counts as leaving too.
    drop(a);
    status_until(addr, "xa-a to be gone", |s| s.points.iter().all(|p| !p.present)).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_for_the_same_point_replaces_the_first() {
    let server = start().await;
    let mut observer = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    observer.request(ClientMessage::Join { token: token("xa-observer") }).await.expect("join observer");

    let mut first = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    first.request(ClientMessage::Join { token: token("xa-a") }).await.expect("first join");
    let mut second = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    second.request(ClientMessage::Join { token: token("xa-a") }).await.expect("second join");

    let replaced =
        first.wait_for(|m| matches!(m, ServerMessage::Error { .. })).await.expect("error on the first connection");
    assert!(matches!(replaced, ServerMessage::Error { code: ErrorCode::Replaced, .. }));
    first.wait_closed().await.expect("first closed");

    // The newer connection keeps working.
    let created = second
        .request(ClientMessage::CreateWebRtcTransport { direction: Direction::Recv })
        .await
        .expect("second connection works");
    assert!(matches!(created, ServerMessage::WebRtcTransportCreated { .. }));
    let status = status(server.local_addr()).await;
    let a = status.points.iter().find(|p| p.name.as_str() == "xa-a").expect("listed");
    assert!(a.present, "the replacing connection must keep the point present");
    // The operator learns that the link was used twice at once, to warn that it may have leaked.
    assert!(a.link_reused_at.is_some(), "{a:?}");
    let observer_status = status.points.iter().find(|p| p.name.as_str() == "xa-observer").expect("listed");
    assert!(observer_status.link_reused_at.is_none(), "{observer_status:?}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_endpoints_bind_and_release_the_worker() {
    let mut config = config();
    config.session = None;
    let server = start_with(config).await;
    let addr = server.local_addr();

    assert_eq!(join_error(&server.ws_url(), token("xa-a")).await, ErrorCode::SessionNotAllocated);

    let body = format!(r#"{{"session":"{SESSION}","title":"Phiên tiếp dân","epoch":1}}"#);
    let unauthorized = http(addr, "PUT", "/v1/allocation", None, Some(&body)).await;
    assert_eq!(unauthorized.status, 401);
    let forged = PrivateKey::generate(KeyUse::Admin).mint_admin(unix_now(), 30, None).expect("mint");
    let forged = http(addr, "PUT", "/v1/allocation", Some(&forged), Some(&body)).await;
    assert_eq!(forged.status, 401);

    // Who is in a session is for the operator only; the kubelet's probes stay open.
    assert_eq!(http(addr, "GET", "/v1/status", None, None).await.status, 401);
    let forged_admin = PrivateKey::generate(KeyUse::Admin).mint_admin(unix_now(), 30, None).expect("mint");
    assert_eq!(http(addr, "GET", "/v1/status", Some(&forged_admin), None).await.status, 401);
    assert_eq!(get(addr, "/healthz").await.status, 200);

    let admin = admin_token();
    let put = http(addr, "PUT", "/v1/allocation", Some(&admin), Some(&body)).await;
    assert_eq!(put.status, 200, "{}", put.body);
    // An admin token works once: the same call replayed (as by someone who read it off the
    // plain-HTTP admin port) is refused.
    let replayed = http(addr, "PUT", "/v1/allocation", Some(&admin), Some(&body)).await;
    assert_eq!(replayed.status, 401, "{}", replayed.body);
    assert!(replayed.body.contains("already used"), "{}", replayed.body);
    let again = http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some(&body)).await;
    assert_eq!(again.status, 200, "idempotent for the same session");
    let other = r#"{"session":"ubnd-hanoi/other","title":"x","epoch":0}"#;
    let conflict = http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some(other)).await;
    assert_eq!(conflict.status, 409);
    assert!(conflict.body.contains("already_allocated"), "{}", conflict.body);
    let malformed = http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some("{")).await;
    assert_eq!(malformed.status, 400);

    // Epoch 1 now: a token with epoch 0 is revoked.
    assert_eq!(join_error(&server.ws_url(), token("xa-a")).await, ErrorCode::TokenRevoked);
    let mut current = claims("xa-a");
    current.epoch = 1;
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    client
        .request(ClientMessage::Join { token: key().mint_join(&current).expect("mint") })
        .await
        .expect("join with the current epoch");
    assert_eq!(status(addr).await.points.len(), 1);

    let delete = http(addr, "DELETE", "/v1/allocation", Some(&admin_token()), None).await;
    assert_eq!(delete.status, 204);
    let closed = client.wait_for(|m| matches!(m, ServerMessage::Error { .. })).await.expect("session closed");
    assert!(matches!(closed, ServerMessage::Error { code: ErrorCode::SessionClosed, .. }));
    let idle = status(addr).await;
    assert!(idle.session.is_none() && idle.points.is_empty());
    assert_healthy(addr).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_new_joins_and_turns_unready() {
    let server = start().await;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/readyz").await.status, 200);
    let mut present = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    present.request(ClientMessage::Join { token: token("xa-a") }).await.expect("join");

    let registry = std::sync::Arc::clone(server.registry());
    let drain = tokio::spawn(server.drain_and_stop());
    eventually("draining", || async { registry.is_draining().then_some(()) }).await;
    assert_eq!(get(addr, "/readyz").await.status, 503);
    // Draining is not a fault: the kubelet must let the drain finish rather than restart the pod.
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert!(status(addr).await.draining);
    assert_eq!(join_error(&format!("ws://{addr}/v1/ws"), token("xa-b")).await, ErrorCode::Draining);

    // The point already in the session keeps working until it leaves; then the worker stops.
    present
        .request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send })
        .await
        .expect("existing point still served");
    present.request(ClientMessage::Leave).await.expect("leave");
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("drain finishes once the last point left")
        .expect("task")
        .expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_mediasoup_worker_fails_liveness_so_the_pod_is_restarted() {
    let server = start().await;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/readyz").await.status, 200);

    // mediasoup 0.8.5 runs the worker as a thread of this process, so there is no process to
    // kill; record the death its `on_dead` handler would, for the real worker.
    let worker = server.registry().workers().pick().expect("a live worker");
    server.registry().workers().health().record_death(worker.id(), Err(ExitError::Unexpected));

    let dead = eventually("/healthz to turn 503", || async {
        let response = get(addr, "/healthz").await;
        (response.status == 503).then_some(response)
    })
    .await;
    let reason: ApiError = serde_json::from_str(&dead.body).expect("a JSON reason");
    assert_eq!(reason.code, "mediasoup_worker_died");
    assert!(reason.message.contains(&worker.id().to_string()), "{}", reason.message);
    assert_eq!(get(addr, "/readyz").await.status, 503);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prefixed_and_count_refusals() {
    let server = start().await;
    let _ = join_error(&server.ws_url(), "garbage".to_owned()).await;
    let metrics = get(server.local_addr(), "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains(r#"tiepdan_worker_signaling_errors_total{code="invalid_token"} 1"#));
    assert!(metrics.body.contains("tiepdan_worker_mediasoup_workers 1"));
    for line in metrics.body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.starts_with("tiepdan_worker_"), "{line}");
    }
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_transports_are_offered_on_the_rtc_address() {
    let server = start().await;
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let ServerMessage::Joined { router_rtp_capabilities, .. } =
        client.request(ClientMessage::Join { token: token("xa-a") }).await.expect("join")
    else {
        panic!("expected joined");
    };
    let codecs = serde_json::to_string(&router_rtp_capabilities).expect("serialize");
    for needle in ["audio/opus", "video/VP8", "video/H264", "42e01f"] {
        assert!(codecs.contains(needle), "router capabilities lack {needle}");
    }

    let created =
        client.request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send }).await.expect("create");
    let ServerMessage::WebRtcTransportCreated { transport_id, ice_candidates, dtls_parameters, .. } = created else {
        panic!("expected webRtcTransportCreated, got {created:?}");
    };
    assert!(!ice_candidates.is_empty());
    assert!(ice_candidates.iter().all(|c| c.ip.to_string() == "127.0.0.1" && (40000..=49999).contains(&c.port)));

    // The client's DTLS parameters: any well-formed fingerprint is accepted at this stage.
    let mut client_dtls = dtls_parameters.clone();
    client_dtls.role = mediasoup::data_structures::DtlsRole::Client;
    let connected = client
        .request(ClientMessage::ConnectWebRtcTransport { transport_id, dtls_parameters: client_dtls })
        .await
        .expect("connect");
    assert_eq!(connected, ServerMessage::TransportConnected { transport_id });
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_requests_are_checked_against_the_connection_state() {
    let server = start().await;
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    // A probe, the one role that gets plain transports.
    client.request(ClientMessage::Join { token: probe_token("probe-a") }).await.expect("join");
    let ServerMessage::PlainTransportCreated { transport_id, .. } =
        client.request(ClientMessage::CreatePlainTransport { direction: Direction::Recv }).await.expect("create")
    else {
        panic!("expected plainTransportCreated");
    };

    let produce = r#"{"action":"produce","transportId":"TID","kind":"audio","rtpParameters":{"codecs":[{"mimeType":"audio/opus","payloadType":100,"clockRate":48000,"channels":2,"parameters":{},"rtcpFeedback":[]}],"headerExtensions":[],"encodings":[{"ssrc":1111}],"rtcp":{"reducedSize":true}}}"#;
    let (code, _) = expect_error(&mut client, produce.replace("TID", &transport_id.to_string())).await;
    assert_eq!(code, ErrorCode::WrongTransportDirection);
    let unknown = "00000000-0000-4000-8000-000000000001";
    let (code, _) = expect_error(&mut client, produce.replace("TID", unknown)).await;
    assert_eq!(code, ErrorCode::TransportNotFound);

    let consume = format!(
        r#"{{"action":"consume","transportId":"{transport_id}","producerId":"{unknown}","rtpCapabilities":{{"codecs":[],"headerExtensions":[]}}}}"#
    );
    let (code, _) = expect_error(&mut client, consume).await;
    assert_eq!(code, ErrorCode::ProducerNotFound);
    let resume = format!(r#"{{"action":"resumeConsumer","consumerId":"{unknown}"}}"#);
    let (code, _) = expect_error(&mut client, resume).await;
    assert_eq!(code, ErrorCode::ConsumerNotFound);

    // Garbage RTP parameters are mediasoup's to refuse, not a reason to fall over.
    let ServerMessage::PlainTransportCreated { transport_id: send, .. } =
        client.request(ClientMessage::CreatePlainTransport { direction: Direction::Send }).await.expect("create")
    else {
        panic!("expected plainTransportCreated");
    };
    let bogus = produce
        .replace("TID", &send.to_string())
        .replace("\"payloadType\":100", "\"payloadType\":250")
        .replace("audio/opus", "audio/PCMU");
    let (code, _) = expect_error(&mut client, bogus).await;
    assert_eq!(code, ErrorCode::MediaRejected);

    for _ in 0..7 {
        client.request(ClientMessage::CreatePlainTransport { direction: Direction::Recv }).await.ok();
    }
    let err = client
        .request(ClientMessage::CreatePlainTransport { direction: Direction::Recv })
        .await
        .expect_err("over the per-point limit");
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded));
    assert_healthy(server.local_addr()).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_taken_out_of_the_session_is_refused_and_disconnected() {
    let server = start().await;
    let addr = server.local_addr();
    let mut a = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    a.request(ClientMessage::Join { token: token("xa-a") }).await.expect("a joins");
    let mut b = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    b.request(ClientMessage::Join { token: token("xa-b") }).await.expect("b joins");

    // The operator says xa-b is no longer in the session: its still validly signed link is dead.
    let without_b = format!(r#"{{"session":"{SESSION}","title":"x","epoch":0,"points":["tinh","xa-a"]}}"#);
    let put = http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some(&without_b)).await;
    assert_eq!(put.status, 200, "{}", put.body);
    let kicked = b.wait_for(|m| matches!(m, ServerMessage::Error { .. })).await.expect("b is told");
    assert!(matches!(kicked, ServerMessage::Error { code: ErrorCode::TokenRevoked, .. }), "{kicked:?}");
    b.wait_closed().await.expect("b's connection closes");
    assert_eq!(join_error(&server.ws_url(), token("xa-b")).await, ErrorCode::TokenRevoked);
    let allowed = status(addr).await.allowed_points.expect("the worker reports the session's points");
    assert_eq!(allowed.iter().map(|p| p.as_str()).collect::<Vec<_>>(), ["tinh", "xa-a"]);

    // xa-a is untouched.
    let created = a
        .request(ClientMessage::CreateWebRtcTransport { direction: Direction::Recv })
        .await
        .expect("a is still served");
    assert!(matches!(created, ServerMessage::WebRtcTransportCreated { .. }));

    // The list names points; a probe is none, so the list does not keep it out.
    let mut probe = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    probe.request(ClientMessage::Join { token: probe_token("probe-ops") }).await.expect("a probe joins");

    // Back in the session, the same link works again.
    let with_b = format!(r#"{{"session":"{SESSION}","title":"x","epoch":0,"points":["tinh","xa-a","xa-b"]}}"#);
    assert_eq!(http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some(&with_b)).await.status, 200);
    let mut again = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    again.request(ClientMessage::Join { token: token("xa-b") }).await.expect("b joins again");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_link_is_refused_and_disconnected_and_the_new_one_joins() {
    use tiepdan_media_worker::tokens::JoinClaims;
    let server = start().await;
    let addr = server.local_addr();
    let link =
        |generation: u32| key().mint_join(&JoinClaims { link_generation: generation, ..claims("xa-b") }).expect("mint");
    let mut leaked = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    leaked.request(ClientMessage::Join { token: link(0) }).await.expect("the old link joins");
    let mut a = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    a.request(ClientMessage::Join { token: token("xa-a") }).await.expect("a joins");

    // Ops rotate xa-b's link: the operator raises its generation on the worker.
    let rotate = |generation: u32| {
        format!(
            r#"{{"session":"{SESSION}","title":"x","epoch":0,"points":["tinh","xa-a","xa-b"],"linkGenerations":{{"xa-b":{generation}}}}}"#
        )
    };
    let put = http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some(&rotate(1))).await;
    assert_eq!(put.status, 200, "{}", put.body);
    let kicked = leaked.wait_for(|m| matches!(m, ServerMessage::Error { .. })).await.expect("the old link is told");
    assert!(matches!(kicked, ServerMessage::Error { code: ErrorCode::TokenRevoked, .. }), "{kicked:?}");
    leaked.wait_closed().await.expect("the old link's connection closes");
    assert_eq!(join_error(&server.ws_url(), link(0)).await, ErrorCode::TokenRevoked);
    assert_eq!(status(addr).await.link_generations.get(&"xa-b".parse().expect("point")), Some(&1));

    // The new link joins; a late call with the old generation does not bring the old link back.
    let mut fresh = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    fresh.request(ClientMessage::Join { token: link(1) }).await.expect("the new link joins");
    let put = http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some(&rotate(0))).await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(join_error(&server.ws_url(), link(0)).await, ErrorCode::TokenRevoked);

    // Other points are untouched.
    let created = a
        .request(ClientMessage::CreateWebRtcTransport { direction: Direction::Recv })
        .await
        .expect("a is still served");
    assert!(matches!(created, ServerMessage::WebRtcTransportCreated { .. }));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_when_its_token_expires() {
    use tiepdan_media_worker::signaling::protocol::Role;
    use tiepdan_media_worker::tokens::{refused_from, JoinClaims};
    let server = start().await;
    // Valid for about one more second: issued long ago, expired within the clock-skew leeway.
    let now = unix_now();
    let expiring = JoinClaims::for_point(
        &session(),
        &"xa-a".parse().expect("point"),
        "Điểm cầu xa-a",
        Role::Participant,
        "Tiếp công dân định kỳ",
        now - 3600,
        3600 - (refused_from(0) - 1),
    );
    let mut office = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    office.request(ClientMessage::Join { token: key().mint_join(&expiring).expect("mint") }).await.expect("joins");
    let mut other = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    other.request(ClientMessage::Join { token: token("xa-b") }).await.expect("joins");

    let closed = office.wait_for(|m| matches!(m, ServerMessage::Error { .. })).await.expect("told at expiry");
    assert!(matches!(closed, ServerMessage::Error { code: ErrorCode::TokenExpired, .. }), "{closed:?}");
    office.wait_closed().await.expect("closed");
    // The other point, whose token is valid, is not affected.
    let created = other
        .request(ClientMessage::CreateWebRtcTransport { direction: Direction::Recv })
        .await
        .expect("the other point is still served");
    assert!(matches!(created, ServerMessage::WebRtcTransportCreated { .. }));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_in_a_pod_takes_admin_calls_only_for_itself_and_for_at_most_30_seconds() {
    let mut config = config();
    config.pod_name = Some("w-1".to_owned());
    let server = start_with(config).await;
    let addr = server.local_addr();
    let now = unix_now();
    let call = |token: String| async move { http(addr, "GET", "/v1/status", Some(&token), None).await };
    // Minted for another worker: read off one pod's admin port, it opens no other.
    let other = call(admin_key().mint_admin(now, 30, Some("w-2")).expect("mint")).await;
    assert_eq!(other.status, 401);
    assert!(other.body.contains("not for this worker"), "{}", other.body);
    assert_eq!(call(admin_key().mint_admin(now, 30, None).expect("mint")).await.status, 401, "a token for no pod");
    let long = call(admin_key().mint_admin(now, 300, Some("w-1")).expect("mint")).await;
    assert_eq!(long.status, 401, "a 5-minute admin token");
    assert!(long.body.contains("at most 30 s"), "{}", long.body);
    // The join key's tokens, even this pod's points' links, are no admin credential.
    let join = call(key().mint_join(&claims("xa-a")).expect("mint")).await;
    assert_eq!(join.status, 401, "a join token as an admin token");
    assert!(join.body.contains("not for admin use"), "{}", join.body);
    assert_eq!(call(admin_key().mint_admin(now, 30, Some("w-1")).expect("mint")).await.status, 200);
    server.stop().await.expect("stop");
}

/// The host mutes a point: every point is told, the point cannot resume its audio until the host
/// asks (not even from a new connection), and nobody but the host may moderate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_host_mutes_a_point_and_the_worker_holds_it_until_asked() {
    let server = start().await;
    let url = server.ws_url();
    let mut host = SignalingClient::connect(&url).await.expect("connect");
    let host_token = key().mint_join(&JoinClaims { role: Role::Host, ..claims("tinh") }).expect("mint");
    host.request(ClientMessage::Join { token: host_token }).await.expect("host joins");
    let (mut muted, producer_id) = point_with_audio(&url, "xa-a").await;
    let mut other = SignalingClient::connect(&url).await.expect("connect");
    other.request(ClientMessage::Join { token: token("xa-b") }).await.expect("xa-b joins");

    // A participant may not moderate, not even itself; the worker says why.
    for target in ["xa-a", "xa-b"] {
        let refused = other.request(ClientMessage::MutePoint { point: target.parse().expect("point") }).await;
        assert_eq!(refused.expect_err("refused").code(), Some(ErrorCode::NotHost), "{target}");
    }
    let refused = other.request(ClientMessage::AskToUnmute { point: "xa-a".parse().expect("point") }).await;
    assert_eq!(refused.expect_err("refused").code(), Some(ErrorCode::NotHost));
    let refused = other.request(ClientMessage::GiveFloor { point: Some("xa-b".parse().expect("point")) }).await;
    assert_eq!(refused.expect_err("refused").code(), Some(ErrorCode::NotHost), "nor give the floor");
    let given = host.request(ClientMessage::GiveFloor { point: Some("xa-b".parse().expect("point")) }).await;
    assert!(matches!(given, Ok(ServerMessage::FloorGiven { point: Some(_) })), "{given:?}");
    let told = other.wait_for(|m| matches!(m, ServerMessage::FloorGiven { .. })).await.expect("told");
    assert!(matches!(told, ServerMessage::FloorGiven { point: Some(p) } if p.as_str() == "xa-b"));
    let absent = host.request(ClientMessage::MutePoint { point: "xa-z".parse().expect("point") }).await;
    assert_eq!(absent.expect_err("refused").code(), Some(ErrorCode::PointNotPresent));

    let reply = host.request(ClientMessage::MutePoint { point: "xa-a".parse().expect("point") }).await.expect("mute");
    assert!(
        matches!(&reply, ServerMessage::PointMuted { point, by } if point.as_str() == "xa-a" && by == "Điểm cầu tinh")
    );
    for client in [&mut muted, &mut other] {
        let told = client.wait_for(|m| matches!(m, ServerMessage::PointMuted { .. })).await.expect("told");
        assert!(matches!(told, ServerMessage::PointMuted { point, .. } if point.as_str() == "xa-a"));
    }
    let held = muted.request(ClientMessage::ResumeProducer { producer_id }).await;
    assert_eq!(held.expect_err("held").code(), Some(ErrorCode::MutedByHost));

    // A new connection of the muted point is still muted: its join says so, and its new audio is
    // held too.
    drop(muted);
    let (mut again, producer_id) = point_with_audio(&url, "xa-a").await;
    let held = again.request(ClientMessage::ResumeProducer { producer_id }).await;
    assert_eq!(held.expect_err("still held").code(), Some(ErrorCode::MutedByHost));
    let mut late = SignalingClient::connect(&url).await.expect("connect");
    let joined = late.request(ClientMessage::Join { token: token("xa-c") }).await.expect("xa-c joins");
    let ServerMessage::Joined { muted_points, .. } = joined else { panic!("expected joined") };
    assert_eq!(muted_points, ["xa-a".parse().expect("point")]);

    // The host asks; the office resumes when it is ready, and everyone is told it speaks again.
    let asked = host.request(ClientMessage::AskToUnmute { point: "xa-a".parse().expect("point") }).await.expect("ask");
    assert!(matches!(asked, ServerMessage::UnmuteAsked { .. }));
    again.wait_for(|m| matches!(m, ServerMessage::UnmuteAsked { .. })).await.expect("asked");
    let resumed = again.request(ClientMessage::ResumeProducer { producer_id }).await.expect("resumed");
    assert!(matches!(resumed, ServerMessage::ProducerResumed { .. }));
    let unmuted = other.wait_for(|m| matches!(m, ServerMessage::PointUnmuted { .. })).await.expect("told");
    assert!(matches!(unmuted, ServerMessage::PointUnmuted { point } if point.as_str() == "xa-a"));
    server.stop().await.expect("stop");
}

/// A point's screen share as a console would send it (a VP8 video producer marked `screen`).
async fn share_screen(client: &mut SignalingClient) -> Result<ServerMessage, ClientError> {
    let ServerMessage::WebRtcTransportCreated { transport_id, .. } =
        client.request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send }).await?
    else {
        panic!("expected webRtcTransportCreated");
    };
    let rtp_parameters = serde_json::from_value(serde_json::json!({
        "codecs": [{"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000,
                    "parameters": {}, "rtcpFeedback": []}],
        "headerExtensions": [], "encodings": [{"ssrc": 2222}], "rtcp": {"reducedSize": true}
    }))
    .expect("RTP parameters");
    client
        .request(ClientMessage::Produce {
            transport_id,
            kind: mediasoup::prelude::MediaKind::Video,
            rtp_parameters,
            source: Some(MediaSource::Screen),
        })
        .await
}

/// One share at a time, and only the host may stop another point's share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_share_at_a_time_and_only_the_host_stops_it() {
    let server = start().await;
    let url = server.ws_url();
    let mut host = SignalingClient::connect(&url).await.expect("connect");
    let host_token = key().mint_join(&JoinClaims { role: Role::Host, ..claims("tinh") }).expect("mint");
    host.request(ClientMessage::Join { token: host_token }).await.expect("host joins");
    let mut a = SignalingClient::connect(&url).await.expect("connect");
    a.request(ClientMessage::Join { token: token("xa-a") }).await.expect("joins");
    let mut b = SignalingClient::connect(&url).await.expect("connect");
    b.request(ClientMessage::Join { token: token("xa-b") }).await.expect("joins");

    let refused = host.request(ClientMessage::StopShare).await;
    assert_eq!(refused.expect_err("nothing shared").code(), Some(ErrorCode::NoShare));
    assert!(matches!(share_screen(&mut a).await, Ok(ServerMessage::Produced { .. })));
    let announced = b.wait_for(|m| matches!(m, ServerMessage::NewProducer { .. })).await.expect("announced");
    assert!(matches!(announced, ServerMessage::NewProducer { source: MediaSource::Screen, .. }), "{announced:?}");
    let second = share_screen(&mut b).await;
    assert_eq!(second.expect_err("one at a time").code(), Some(ErrorCode::ShareInProgress));
    let refused = b.request(ClientMessage::StopShare).await;
    assert_eq!(refused.expect_err("not the host").code(), Some(ErrorCode::NotHost));

    let stopped = host.request(ClientMessage::StopShare).await.expect("the host stops it");
    assert!(matches!(&stopped, ServerMessage::ShareStopped { point, .. } if point.as_str() == "xa-a"));
    a.wait_for(|m| matches!(m, ServerMessage::ShareStopped { .. })).await.expect("the sharer is told");
    b.wait_for(|m| matches!(m, ServerMessage::ProducerClosed { .. })).await.expect("the others see it close");
    assert!(matches!(share_screen(&mut b).await, Ok(ServerMessage::Produced { .. })), "free again");
    server.stop().await.expect("stop");
}

/// An ICE restart gives a transport new credentials, only on the member's own WebRTC transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_gives_new_credentials_on_the_same_transport() {
    let server = start().await;
    let mut a = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    a.request(ClientMessage::Join { token: token("xa-a") }).await.expect("joins");
    let created =
        a.request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send }).await.expect("transport");
    let ServerMessage::WebRtcTransportCreated { transport_id, ice_parameters, .. } = created else {
        panic!("expected webRtcTransportCreated");
    };
    let restarted = a.request(ClientMessage::RestartIce { transport_id }).await.expect("restart");
    let ServerMessage::IceRestarted { transport_id: same, ice_parameters: fresh } = restarted else {
        panic!("expected iceRestarted");
    };
    assert_eq!(same, transport_id);
    assert_ne!(fresh.username_fragment, ice_parameters.username_fragment, "new credentials");
    assert_ne!(fresh.password, ice_parameters.password);
    // Another member's transport is not this one's to restart.
    let mut b = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    b.request(ClientMessage::Join { token: token("xa-b") }).await.expect("joins");
    let refused = b.request(ClientMessage::RestartIce { transport_id }).await;
    assert_eq!(refused.expect_err("not its transport").code(), Some(ErrorCode::TransportNotFound));
    server.stop().await.expect("stop");
}
