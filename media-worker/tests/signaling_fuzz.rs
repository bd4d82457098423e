//! Property test of the signaling input: whatever arrives on the WebSocket (random bytes, broken
//! or oversized JSON, unknown actions, and joins with forged, expired, not-yet-valid, revoked,
//! cross-session or mangled tokens), the worker answers with an error or closes the connection,
//! never admits the sender, and stays healthy. Expected: 0 crashes, 0 accepted.

mod common;

use common::*;
use proptest::prelude::*;
use tiepdan_media_worker::probe::client::{ClientError, SignalingClient};
use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, ErrorCode, ServerMessage};
use tiepdan_media_worker::tokens::{unix_now, TokenKey};

/// One hostile frame.
#[derive(Clone, Debug)]
enum Frame {
    Text(String),
    Join(String),
}

fn bad_token() -> impl Strategy<Value = String> {
    let forged = any::<[u8; 8]>().prop_map(|k| TokenKey::from_bytes(&k).mint_join(&claims("xa-a")).expect("mint"));
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
    let mangled = (0usize..200, any::<u8>()).prop_map(|(at, b)| {
        let mut c = claims("xa-a");
        c.epoch = 1;
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
    prop_oneof![forged, expired, early, cross_session, revoked, mangled, garbage.prop_map(String::from)]
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
    // Revocation epoch 1 for the session, so epoch-0 tokens count as revoked.
    let body = format!(r#"{{"session":"{SESSION}","title":"Phiên tiếp dân","epoch":1}}"#);
    let put = rt.block_on(http(addr, "PUT", "/v1/allocation", Some(&admin_token()), Some(&body)));
    assert_eq!(put.status, 200, "{}", put.body);

    let accepted = std::sync::atomic::AtomicU32::new(0);
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
    let mut c = claims("xa-a");
    c.epoch = 1;
    let ok = rt.block_on(async {
        let mut client = SignalingClient::connect(&url).await.expect("connect");
        client.request(ClientMessage::Join { token: key().mint_join(&c).expect("mint") }).await
    });
    assert!(matches!(ok, Ok(ServerMessage::Joined { .. })), "{ok:?}");
    rt.block_on(server.stop()).expect("stop");
}
