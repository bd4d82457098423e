//! Property tests of the signaling input: whatever arrives on the WebSocket (random bytes, broken
//! or oversized JSON, unknown actions, and joins with forged, expired, not-yet-valid, revoked,
//! cross-session or mangled tokens, and tokens forged with the worker's own key material: HS256
//! keyed with its public keys, the join key under the admin label, admin tokens as join tokens and
//! the other way round), the worker answers with an error or closes the connection,
//! never admits the sender, and stays healthy. And reflection attempts: a point's link asking for
//! plain RTP, a probe naming where to send, a probe passing for a point. Expected: 0 crashes,
//! 0 accepted.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mediasoup::prelude::ProducerId;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use tiepdan_media_worker::probe::client::{ClientError, SignalingClient};
use tiepdan_media_worker::probe::{run_probe, ProbeOptions};
use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, ErrorCode, Role, ServerMessage};
use tiepdan_media_worker::tokens::{unix_now, JoinClaims, KeyUse, PrivateKey};

/// One hostile frame.
#[derive(Clone, Debug)]
enum Frame {
    Text(String),
    Join(String),
}

/// Join claims at the worker's current epoch (1, set below) and, for xa-a, its current link
/// generation (2): refused only for how they are signed.
fn current(point: &str) -> JoinClaims {
    let link_generation = if point == "xa-a" { 2 } else { 0 };
    JoinClaims { epoch: 1, link_generation, ..claims(point) }
}

/// HS256 over `claims` keyed with `secret`, labelled (`kid`, `typ`) as a `key_use` token.
fn hs256(key_use: KeyUse, claims: &impl serde::Serialize, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key_use.kid().to_owned());
    header.typ = Some(key_use.typ().to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("mint")
}

/// Join tokens forged with what a compromised worker holds, or with the wrong key or label;
/// each would be accepted if its protection were gone (the claims are otherwise valid).
fn forged_join_tokens() -> Vec<(&'static str, String)> {
    let public = key().public_pem().expect("pem");
    vec![
        ("HS256 keyed with the join public key", hs256(KeyUse::Join, &current("xa-a"), public.as_bytes())),
        ("HS256 keyed with the old pool key", hs256(KeyUse::Join, &current("xa-a"), "ab".repeat(32).as_bytes())),
        ("the join key labelled admin", key().relabelled(KeyUse::Admin).mint_join(&current("xa-a")).expect("mint")),
        (
            "the admin key labelled join",
            admin_key().relabelled(KeyUse::Join).mint_join(&current("xa-a")).expect("mint"),
        ),
        ("an admin token as a join token", admin_key().mint_admin(unix_now(), 30, None).expect("mint")),
    ]
}

/// Admin tokens forged likewise; each would open `/v1/allocation` without its protection.
fn forged_admin_tokens() -> Vec<(&'static str, String)> {
    let public = admin_key().public_pem().expect("pem");
    let admin_claims = serde_json::json!({
        "aud": "tiepdan-worker", "sub": "operator", "iat": unix_now(), "exp": unix_now() + 30, "jti": "forged-0123456789abcdef"
    });
    vec![
        ("HS256 keyed with the admin public key", hs256(KeyUse::Admin, &admin_claims, public.as_bytes())),
        ("the admin key labelled join", admin_key().relabelled(KeyUse::Join).sign(&admin_claims).expect("mint")),
        (
            "the join key labelled admin",
            key().relabelled(KeyUse::Admin).mint_admin(unix_now(), 30, None).expect("mint"),
        ),
        ("a join token as an admin token", key().mint_join(&current("xa-a")).expect("mint")),
    ]
}

fn bad_token() -> impl Strategy<Value = String> {
    // Another pool's join key (every pool has its own): the worker knows only its pool's public key.
    let forged = Just(()).prop_map(|_| PrivateKey::generate(KeyUse::Join).mint_join(&current("xa-a")).expect("mint"));
    let forged_with_worker_keys = (0usize..5).prop_map(|i| forged_join_tokens().swap_remove(i).1);
    let expired = (60i64..100_000).prop_map(|ago| {
        let mut c = claims("xa-a");
        c.nbf = unix_now() - ago - 3600;
        c.exp = unix_now() - ago;
        key().mint_join(&c).expect("mint")
    });
    let early = (120i64..100_000).prop_map(|ahead| {
        let mut c = claims("xa-a");
        c.nbf = unix_now() + ahead;
        key().mint_join(&c).expect("mint")
    });
    let cross_session = "[a-z]{1,8}/[a-z]{1,8}".prop_map(|aud| {
        let mut c = claims("xa-a");
        c.aud = aud;
        key().mint_join(&c).expect("mint")
    });
    // The worker's revocation epoch is 1 (set below): epoch-0 tokens are revoked.
    let revoked = Just(()).prop_map(|_| token("xa-a"));
    // xa-a's link was rotated to generation 2 (set below): its generation-0 and -1 links are dead.
    let rotated =
        (0u32..2).prop_map(|g| key().mint_join(&JoinClaims { link_generation: g, ..current("xa-a") }).expect("mint"));
    // A point taken out of the session: its link is validly signed, at the current epoch.
    let removed = Just(()).prop_map(|_| key().mint_join(&current("xa-gone")).expect("mint"));

    let mangled = (0usize..200, any::<u8>()).prop_map(|(at, b)| {
        let c = current("xa-a");
        let mut t = key().mint_join(&c).expect("mint").into_bytes();
        let i = at % t.len();
        // Flip a character to another base64url character (a real tamper, not a no-op).
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut r = alphabet[usize::from(b) % alphabet.len()];
        if r == t[i] {
            r = if r == b'A' { b'B' } else { b'A' };
        }
        t[i] = r;
        String::from_utf8_lossy(&t).into_owned()
    });
    let garbage = ".{0,300}";
    prop_oneof![
        forged,
        forged_with_worker_keys,
        expired,
        early,
        cross_session,
        revoked,
        rotated,
        removed,
        mangled,
        garbage.prop_map(String::from)
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    let actions = prop_oneof![
        Just("join".to_owned()),
        Just("createWebRtcTransport".to_owned()),
        Just("connectWebRtcTransport".to_owned()),
        Just("produce".to_owned()),
        Just("consume".to_owned()),
        Just("resumeConsumer".to_owned()),
        Just("leave".to_owned()),
        Just("createPlainTransport".to_owned()),
        "[a-zA-Z]{0,20}".prop_map(String::from),
    ];
    let json_ish = (actions, proptest::collection::vec(("[a-zA-Z]{1,12}", ".{0,40}"), 0..6)).prop_map(|(a, fields)| {
        let mut m = serde_json::Map::new();
        m.insert("action".into(), serde_json::Value::String(a.to_string()));
        for (k, v) in fields {
            m.insert(k, serde_json::Value::String(v));
        }
        serde_json::Value::Object(m).to_string()
    });
    let huge = (65 * 1024usize..80 * 1024).prop_map(|n| format!(r#"{{"action":"join","token":"{}"}}"#, "a".repeat(n)));
    prop_oneof![
        4 => bad_token().prop_map(Frame::Join),
        3 => json_ish.prop_map(Frame::Text),
        2 => ".{0,400}".prop_map(Frame::Text),
        1 => proptest::collection::vec(any::<u8>(), 0..400).prop_map(|b| Frame::Text(String::from_utf8_lossy(&b).into_owned())),
        1 => huge.prop_map(Frame::Text),
    ]
}

/// Sends `frame` on a fresh connection; returns whether the worker admitted the sender.
async fn admitted(url: &str, frame: Frame) -> bool {
    let mut client = SignalingClient::connect(url).await.expect("connect");
    let text = match frame {
        Frame::Text(t) => t,
        Frame::Join(token) => serde_json::json!({"action": "join", "token": token}).to_string(),
    };
    if client.send_text(text).await.is_err() {
        return false;
    }
    match client.next().await {
        Ok(env) => match env.message {
            ServerMessage::Joined { .. } => return true,
            ServerMessage::Error { .. } => {}
            other => panic!("a hostile frame got a non-error answer: {other:?}"),
        },
        // Oversized frames close the connection (1009): refused.
        Err(ClientError::Closed { .. }) | Err(ClientError::Socket(_)) => return false,
        Err(e) => panic!("no answer to a hostile frame: {e}"),
    }
    // Still not joined: a real request after the frame is refused as such.
    match client.request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send }).await {
        Ok(_) => true,
        Err(e) => {
            assert!(
                matches!(e.code(), None | Some(ErrorCode::NotJoined)),
                "unexpected refusal after a hostile frame: {e}"
            );
            false
        }
    }
}

#[test]
fn hostile_signaling_input_is_refused_and_the_worker_survives() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let server = rt.block_on(start());
    let addr = server.local_addr();
    let url = server.ws_url();
    // Revocation epoch 1 for the session, so epoch-0 tokens count as revoked; xa-a's link rotated
    // to generation 2; xa-gone is not in the session.
    let body = format!(
        r#"{{"session":"{SESSION}","title":"Phiên tiếp dân","epoch":1,"points":["tinh","xa-a","xa-b"],"linkGenerations":{{"xa-a":2}}}}"#
    );
    let put = rt.block_on(http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some(&body)));
    assert_eq!(put.status, 200, "{}", put.body);

    // Every forged-key case once for sure, then again among the random frames.
    let accepted = std::sync::atomic::AtomicU32::new(0);
    for (what, token) in forged_join_tokens() {
        if rt.block_on(admitted(&url, Frame::Join(token))) {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            eprintln!("admitted: {what}");
        }
    }
    for (what, token) in forged_admin_tokens() {
        for (method, path) in [("PUT", "/v1/allocation"), ("GET", "/v1/status")] {
            let answer =
                rt.block_on(http(addr, method, path, Some(&token), (method == "PUT").then_some(body.as_str())));
            if answer.status != 401 {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                eprintln!("{method} {path} answered {} to {what}", answer.status);
            }
        }
    }

    let config = ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(f in frame())| {
        let joined = rt.block_on(admitted(&url, f.clone()));
        if joined {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        prop_assert!(!joined, "admitted after {:?}", f);
    });
    assert_eq!(accepted.into_inner(), 0, "hostile frames admitted");
    rt.block_on(assert_healthy(addr));
    // A valid, current token still works after all that.
    let c = current("xa-a");
    let ok = rt.block_on(async {
        let mut client = SignalingClient::connect(&url).await.expect("connect");
        client.request(ClientMessage::Join { token: key().mint_join(&c).expect("mint") }).await
    });
    assert!(matches!(ok, Ok(ServerMessage::Joined { .. })), "{ok:?}");
    rt.block_on(server.stop()).expect("stop");
}

/// One attempt to turn the worker into a media reflector, or to pass a probe off as a point.
#[derive(Clone, Debug)]
enum Reflection {
    /// A point's link asks for a plain (unencrypted) RTP transport, with whatever extra fields.
    PointAsksPlain { role: Role, direction: Direction, extra: Vec<(String, serde_json::Value)> },
    /// A probe names where its plain transport should send (a "foreign" address).
    ProbeNamesAddress { direction: Direction, ip: Ipv4Addr, port: u16, rtcp_port: Option<u16> },
    /// A probe, possibly under the standing point's name, publishes and tries to consume that
    /// point's producer.
    ProbeAsPoint { name: String },
}

fn reflection() -> impl Strategy<Value = Reflection> {
    let direction = prop_oneof![Just(Direction::Send), Just(Direction::Recv)];
    let value = prop_oneof![
        any::<bool>().prop_map(serde_json::Value::Bool),
        "[0-9.:a-z]{0,20}".prop_map(serde_json::Value::String),
        any::<u16>().prop_map(serde_json::Value::from),
    ];
    let extra = proptest::collection::vec(
        (prop_oneof![Just("comedia".to_owned()), Just("ip".to_owned()), Just("port".to_owned()), "[a-z]{1,8}"], value),
        0..3,
    );
    let point = (prop_oneof![Just(Role::Host), Just(Role::Participant)], direction.clone(), extra)
        .prop_map(|(role, direction, extra)| Reflection::PointAsksPlain { role, direction, extra });
    // Loopback only: were the protection gone, the worker would really send there.
    let address = (direction, any::<[u8; 3]>(), 1u16.., proptest::option::of(1u16..)).prop_map(
        |(direction, [a, b, c], port, rtcp_port)| Reflection::ProbeNamesAddress {
            direction,
            ip: Ipv4Addr::new(127, a, b, c),
            port,
            rtcp_port,
        },
    );
    let as_point = prop_oneof![Just(STANDING_POINT.to_owned()), "xa-[a-z]{1,6}".prop_map(String::from)]
        .prop_map(|name| Reflection::ProbeAsPoint { name });
    prop_oneof![point, address, as_point]
}

/// A point present for the whole run, with an audio producer probes would like to get at.
const STANDING_POINT: &str = "xa-a";

/// Tries `attempt` on fresh connections; returns what, if anything, the worker let through.
async fn reflected(url: &str, attempt: &Reflection, point_audio: ProducerId) -> Option<String> {
    let mut client = SignalingClient::connect(url).await.expect("connect");
    match attempt {
        Reflection::PointAsksPlain { role, direction, extra } => {
            let token = key().mint_join(&JoinClaims { role: *role, ..claims("xa-hostile") }).expect("mint");
            client.request(ClientMessage::Join { token }).await.expect("a point's link joins");
            let mut frame = serde_json::json!({"action": "createPlainTransport", "direction": direction});
            for (k, v) in extra {
                frame[k] = v.clone();
            }
            frame["requestId"] = serde_json::json!("plain");
            client.send_text(frame.to_string()).await.expect("send");
            match client.wait_for(|m| !matches!(m, ServerMessage::PeerJoined { .. })).await.expect("an answer") {
                ServerMessage::Error { code: ErrorCode::PlainTransportForbidden, .. } => None,
                other => Some(format!("{other:?}")),
            }
        }
        Reflection::ProbeNamesAddress { direction, ip, port, rtcp_port } => {
            client.request(ClientMessage::Join { token: probe_token("probe-hostile") }).await.expect("probe joins");
            let ServerMessage::PlainTransportCreated { transport_id, .. } = client
                .request(ClientMessage::CreatePlainTransport { direction: *direction })
                .await
                .expect("a probe gets a plain transport")
            else {
                panic!("expected plainTransportCreated");
            };
            let connect = ClientMessage::ConnectPlainTransport {
                transport_id,
                ip: (*ip).into(),
                port: *port,
                rtcp_port: *rtcp_port,
            };
            match client.request(connect).await {
                Err(e) if e.code() == Some(ErrorCode::RemoteAddressForbidden) => None,
                Err(e) => panic!("unexpected refusal: {e}"),
                Ok(other) => Some(format!("{other:?}")),
            }
        }
        Reflection::ProbeAsPoint { name } => {
            let ServerMessage::Joined { peers, producers, .. } =
                client.request(ClientMessage::Join { token: probe_token(name) }).await.expect("probe joins")
            else {
                panic!("expected joined");
            };
            // Probes see each other (two probes test the path between them), and a probe from
            // an earlier case may not have left yet; what must never show is a point or its media.
            let points: Vec<_> = peers.iter().filter(|p| !p.role.is_probe()).collect();
            let point_media: Vec<_> = producers.iter().filter(|p| p.producer_id == point_audio).collect();
            if !points.is_empty() || !point_media.is_empty() {
                return Some(format!("a probe was shown points: {points:?} {point_media:?}"));
            }
            let ServerMessage::PlainTransportCreated { transport_id, .. } = client
                .request(ClientMessage::CreatePlainTransport { direction: Direction::Recv })
                .await
                .expect("a probe gets a plain transport")
            else {
                panic!("expected plainTransportCreated");
            };
            let consume = ClientMessage::Consume {
                transport_id,
                producer_id: point_audio,
                rtp_capabilities: serde_json::from_value(serde_json::json!({
                    "codecs": [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2,
                                "preferredPayloadType": 100, "parameters": {}, "rtcpFeedback": []}],
                    "headerExtensions": []
                }))
                .expect("capabilities"),
            };
            match client.request(consume).await {
                Err(e) if e.code() == Some(ErrorCode::ProducerNotFound) => None,
                Err(e) => panic!("unexpected refusal: {e}"),
                Ok(other) => Some(format!("a probe consumed a point: {other:?}")),
            }
        }
    }
}

#[test]
fn reflection_attempts_are_refused_and_the_worker_survives() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let server = rt.block_on(start());
    let addr = server.local_addr();
    let url = server.ws_url();
    let (point, point_audio) = rt.block_on(point_with_audio(&url, STANDING_POINT));
    // proptest's closure is `Fn`; the point's connection is used mutably from it.
    let point = std::sync::Mutex::new(point);

    let accepted = std::sync::atomic::AtomicU32::new(0);
    let config = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(attempt in reflection())| {
        let through = rt.block_on(reflected(&url, &attempt, point_audio));
        if through.is_some() {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        prop_assert!(through.is_none(), "{:?} got through: {:?}", attempt, through);
        // Whatever a probe did, the point is still the only one listed, still connected, and
        // was never shown a probe.
        let status = rt.block_on(status(addr));
        let names: Vec<&str> = status.points.iter().map(|p| p.name.as_str()).collect();
        prop_assert!(names.contains(&STANDING_POINT), "{:?} after {:?}", names, attempt);
        prop_assert!(
            names.iter().all(|n| *n == STANDING_POINT || *n == "xa-hostile"),
            "a probe became a point: {:?} after {:?}", names, attempt
        );
        prop_assert!(status.points.iter().all(|p| !p.verified), "{:?}", status.points);
        let mut point = point.lock().expect("point");
        let answer = rt.block_on(point.request(ClientMessage::CloseProducer { producer_id: fresh_producer_id() }));
        prop_assert_eq!(answer.map_err(|e| e.code()), Err(Some(ErrorCode::ProducerNotFound)));
        let pushes: Vec<_> = point
            .take_backlog()
            .into_iter()
            .filter(|e| !matches!(&e.message, ServerMessage::PeerJoined { point, .. } | ServerMessage::PeerLeft { point }
                if point.as_str() == "xa-hostile"))
            .collect();
        prop_assert!(pushes.is_empty(), "the point was shown a probe: {:?} after {:?}", pushes, attempt);
    });
    assert_eq!(accepted.into_inner(), 0, "reflection attempts accepted");
    rt.block_on(assert_healthy(addr));
    // The probe itself still works after all that: it loops its media back.
    let mut options = ProbeOptions::new(url, probe_token("probe"));
    options.duration = std::time::Duration::from_millis(400);
    let report = rt.block_on(run_probe(&options)).expect("probe");
    assert_eq!(report.loss_percent, 0.0, "{report}");
    rt.block_on(server.stop()).expect("stop");
}

fn fresh_producer_id() -> ProducerId {
    serde_json::from_value(serde_json::json!("00000000-0000-4000-8000-00000000dead")).expect("id")
}

/// One hostile admin call: a token as someone on the cluster network (who can see the plain
/// admin port's traffic) or a compromised worker could make.
#[derive(Clone, Debug)]
enum AdminAttempt {
    /// A token the operator really issued, sent again.
    Replayed,
    /// A real token for another worker pod.
    OtherPod(String),
    /// Signed with the admin key, but living longer than 30 s.
    LongLived(i64),
    /// Expired (beyond the clock-skew leeway) or not valid yet.
    OutOfWindow(i64),
    /// No `jti`, so it could not be remembered.
    NoJti,
    /// Another pool's admin key.
    OtherPool,
    /// The forged kinds: HS256 with the public key, swapped labels, a join token.
    Forged(usize),
}

fn admin_attempt() -> impl Strategy<Value = AdminAttempt> {
    prop_oneof![
        Just(AdminAttempt::Replayed),
        "[a-z]{1,12}-[a-z0-9]{5}".prop_map(AdminAttempt::OtherPod),
        (31i64..100_000).prop_map(AdminAttempt::LongLived),
        prop_oneof![-100_000i64..-61, 61i64..100_000].prop_map(AdminAttempt::OutOfWindow),
        Just(AdminAttempt::NoJti),
        Just(AdminAttempt::OtherPool),
        (0usize..4).prop_map(AdminAttempt::Forged),
    ]
}

/// The worker's pod in this test: admin tokens must name it.
const POD: &str = "tiepdan-pool-a-7x2kq";

/// The token for `attempt`. `spent` is a real token already used once.
fn admin_attempt_token(attempt: &AdminAttempt, spent: &str) -> String {
    let now = unix_now();
    let claims = |iat: i64, exp: i64, jti: Option<String>| {
        let mut c = serde_json::json!({"aud": "tiepdan-worker", "sub": "operator", "iat": iat, "exp": exp, "pod": POD});
        if let Some(jti) = jti {
            c["jti"] = serde_json::Value::String(jti);
        }
        c
    };
    let fresh_jti = || Some(format!("jti-{}", rand_suffix()));
    match attempt {
        AdminAttempt::Replayed => spent.to_owned(),
        AdminAttempt::OtherPod(pod) => admin_key().mint_admin(now, 30, Some(pod)).expect("mint"),
        AdminAttempt::LongLived(secs) => admin_key().sign(&claims(now, now + secs, fresh_jti())).expect("mint"),
        AdminAttempt::OutOfWindow(shift) => {
            admin_key().sign(&claims(now + shift - 10, now + shift + 10, fresh_jti())).expect("mint")
        }
        AdminAttempt::NoJti => admin_key().sign(&claims(now, now + 30, None)).expect("mint"),
        AdminAttempt::OtherPool => {
            PrivateKey::generate(KeyUse::Admin).sign(&claims(now, now + 30, fresh_jti())).expect("mint")
        }
        AdminAttempt::Forged(i) => forged_admin_tokens().swap_remove(*i).1,
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn hostile_admin_calls_are_refused_and_the_session_survives() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut config = config();
    config.pod_name = Some(POD.to_owned());
    let server = rt.block_on(start_with(config));
    let addr = server.local_addr();
    let url = server.ws_url();
    let real = || admin_key().mint_admin(unix_now(), 30, Some(POD)).expect("mint");
    // The operator's call, seen on the wire: it works once.
    let spent = real();
    let status = rt.block_on(http(addr, "GET", "/v1/status", Some(&spent), None));
    assert_eq!(status.status, 200, "{}", status.body);
    // A point is in the session: a replayed or forged DELETE /v1/allocation would end it.
    let mut point = rt.block_on(SignalingClient::connect(&url)).expect("connect");
    rt.block_on(point.request(ClientMessage::Join { token: token("xa-a") })).expect("joins");

    let hijack = format!(r#"{{"session":"{SESSION}","title":"chiếm","epoch":99}}"#);
    let accepted = std::sync::atomic::AtomicU32::new(0);
    let config = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(attempt in admin_attempt(), call in 0usize..3)| {
        let token = admin_attempt_token(&attempt, &spent);
        let (method, path, body) = [
            ("GET", "/v1/status", None),
            ("PUT", "/v1/allocation", Some(hijack.as_str())),
            ("DELETE", "/v1/allocation", None),
        ][call];
        let answer = rt.block_on(http(addr, method, path, Some(&token), body));
        if answer.status != 401 {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        prop_assert_eq!(answer.status, 401, "{} {} answered {} to {:?}: {}", method, path, answer.status, attempt, answer.body);
    });
    assert_eq!(accepted.into_inner(), 0, "hostile admin calls accepted");
    // The session is untouched: still allocated at its epoch, the point still served.
    let status = rt.block_on(http(addr, "GET", "/v1/status", Some(&real()), None));
    assert_eq!(status.status, 200, "{}", status.body);
    let allocation = rt.block_on(http(addr, "GET", "/v1/allocation", Some(&real()), None));
    let allocation: serde_json::Value = serde_json::from_str(&allocation.body).expect("allocation JSON");
    assert_eq!((allocation["session"].as_str(), allocation["epoch"].as_u64()), (Some(SESSION), Some(0)));
    let served = rt.block_on(point.request(ClientMessage::CreateWebRtcTransport { direction: Direction::Recv }));
    assert!(matches!(served, Ok(ServerMessage::WebRtcTransportCreated { .. })), "{served:?}");
    rt.block_on(server.stop()).expect("stop");
}
