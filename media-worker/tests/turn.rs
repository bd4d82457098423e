//! TURN relays and per-point limits, against a worker and a real coturn on 127.0.0.1: each point
//! gets TURN credentials that expire with its token (coturn accepts them, and refuses wrong or
//! expired ones), a point whose token says `relay` is told to relay only and gets its media
//! through coturn over TLS in real Chromium, and a point's `uplinkKbps` caps its send transport.

mod common;

use common::browser::{Browser, Camera, Driver};
use common::coturn::Coturn;
use common::firewall::OwnerFirewall;
use common::*;
use mediasoup::prelude::{Transport as _, TransportGeneric as _, TransportId};
use std::time::{Duration, Instant};
use tiepdan_media_worker::checks::{CheckItem, CheckState, IcePath};
use tiepdan_media_worker::probe::client::SignalingClient;
use tiepdan_media_worker::room::MediaTransport;
use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, IceTransportPolicy, Role, ServerMessage};
use tiepdan_media_worker::tokens::{unix_now, JoinClaims};
use tiepdan_media_worker::turn::{credential, TurnConfig, TurnSecret};

const SECRET: &str = "a-shared-secret-for-coturn";

fn turn_config() -> TurnConfig {
    TurnConfig {
        urls: vec![
            "turn:127.0.0.1:3478?transport=udp".parse().expect("url"),
            "turns:127.0.0.1:5349?transport=tcp".parse().expect("url"),
        ],
        secret: TurnSecret::new(SECRET),
    }
}

async fn join(client: &mut SignalingClient, claims: &JoinClaims) -> ServerMessage {
    client.request(ClientMessage::Join { token: key().mint_join(claims).expect("mint") }).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_point_gets_turn_credentials_that_expire_with_its_token() {
    let mut config = config();
    config.turn = Some(turn_config());
    let server = start_with(config).await;
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let claims = claims("xa-a");
    let ServerMessage::Joined { ice_servers, ice_transport_policy, uplink_kbps, .. } = join(&mut client, &claims).await
    else {
        panic!("expected joined");
    };
    assert_eq!(ice_servers.len(), 1, "{ice_servers:?}");
    let server_entry = &ice_servers[0];
    assert_eq!(server_entry.urls, ["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp"]);
    let username = format!("{}:{SESSION}/xa-a", claims.exp);
    assert_eq!(server_entry.username, username);
    assert_eq!(server_entry.credential, credential(&TurnSecret::new(SECRET), &username));
    // No relay claim, no cap: the browser tries UDP and ICE-TCP to the worker before any relay.
    assert_eq!(ice_transport_policy, IceTransportPolicy::All);
    assert_eq!(uplink_kbps, None);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_turn_offers_no_relay() {
    let server = start().await;
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let ServerMessage::Joined { ice_servers, ice_transport_policy, .. } = join(&mut client, &claims("xa-a")).await
    else {
        panic!("expected joined");
    };
    assert!(ice_servers.is_empty());
    assert_eq!(ice_transport_policy, IceTransportPolicy::All);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_point_is_told_to_relay_and_its_uplink_is_capped() {
    let mut config = config();
    config.turn = Some(turn_config());
    let server = start_with(config).await;
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let claims = JoinClaims { relay: true, uplink_kbps: 384, ..claims("xa-a") };
    let ServerMessage::Joined { ice_transport_policy, uplink_kbps, .. } = join(&mut client, &claims).await else {
        panic!("expected joined");
    };
    assert_eq!(ice_transport_policy, IceTransportPolicy::Relay);
    assert_eq!(uplink_kbps, Some(384));

    let mut created = Vec::new();
    for direction in [Direction::Send, Direction::Recv] {
        let reply = client.request(ClientMessage::CreateWebRtcTransport { direction }).await.expect("create");
        let ServerMessage::WebRtcTransportCreated { transport_id, .. } = reply else {
            panic!("expected webRtcTransportCreated, got {reply:?}");
        };
        created.push((direction, transport_id));
    }
    // What mediasoup enforces (and feeds back to the browser's congestion control).
    for (direction, id) in created {
        let cap = max_incoming_bitrate(&server, id).await;
        let expected = match direction {
            Direction::Send => Some(384_000),
            Direction::Recv => None,
        };
        assert_eq!(cap, expected, "{direction:?} transport");
    }

    // Another point without the claims is neither capped nor relay-only.
    let mut other = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let ServerMessage::Joined { ice_transport_policy, uplink_kbps, .. } =
        join(&mut other, &common::claims("xa-b")).await
    else {
        panic!("expected joined");
    };
    assert_eq!((ice_transport_policy, uplink_kbps), (IceTransportPolicy::All, None));
    let reply =
        other.request(ClientMessage::CreateWebRtcTransport { direction: Direction::Send }).await.expect("create");
    let ServerMessage::WebRtcTransportCreated { transport_id, .. } = reply else { panic!("{reply:?}") };
    assert_eq!(max_incoming_bitrate(&server, transport_id).await, None);
    server.stop().await.expect("stop");
}

/// The transport's `maxIncomingBitrate` as mediasoup reports it.
async fn max_incoming_bitrate(server: &tiepdan_media_worker::server::RunningServer, id: TransportId) -> Option<u32> {
    let (_, room) = server.registry().live_room().expect("a room");
    let transport = room
        .media_snapshot()
        .into_iter()
        .flat_map(|m| m.transports)
        .find_map(|t| match t {
            MediaTransport::WebRtc(t) if t.id() == id => Some(t),
            _ => None,
        })
        .expect("the transport");
    let stats = transport.get_stats().await.expect("stats");
    stats.first().expect("one stat").max_incoming_bitrate
}

/// The worker's credentials against a real coturn (`use-auth-secret`), as `turnutils_uclient`
/// allocates with them over UDP and over TCP; a wrong secret and an expired username are refused.
#[test]
fn coturn_accepts_the_workers_credentials_and_refuses_wrong_or_expired_ones() {
    let coturn = Coturn::start("credentials", SECRET);
    let config = turn_config();
    let now = unix_now();
    let good = config.ice_server(&format!("{SESSION}/xa-a"), now + 600);
    for tcp in [false, true] {
        let out = coturn.uclient(&good.username, &good.credential, tcp);
        assert!(out.status.success(), "tcp {tcp}: {}\n{}", String::from_utf8_lossy(&out.stderr), coturn.log());
    }
    coturn.log_line_until("the allocation", &["ALLOCATE processed, success", &format!("<{}>", good.username)]);

    let wrong = TurnConfig { secret: TurnSecret::new("another-secret"), ..config.clone() }
        .ice_server(&format!("{SESSION}/xa-b"), now + 600);
    let expired = config.ice_server(&format!("{SESSION}/xa-c"), now - 60);
    for (what, server) in [("a wrong secret", &wrong), ("an expired username", &expired)] {
        let out = coturn.uclient(&server.username, &server.credential, false);
        assert!(!out.status.success(), "coturn accepted {what}");
        assert!(
            !coturn.log().lines().any(|l| l.contains("ALLOCATE processed, success") && l.contains(&server.username)),
            "coturn allocated for {what}"
        );
    }
    coturn.log_line_until("the wrong secret refused", &["error 401", &format!("<{}>", wrong.username)]);
}

/// The media path through a real coturn, in real Chromium: a point whose token says `relay`
/// joins with only TURN/TLS offered, exchanges audio and video with a point that connects
/// directly, and its selected ICE candidate pair is a relay reached over TLS. Its token's
/// `uplinkKbps` caps its video layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_point_exchanges_media_with_another_through_coturn_over_tls() {
    let coturn = Coturn::start("relay", SECRET);
    let mut config = config();
    config.turn = Some(TurnConfig {
        urls: vec![format!("turns:127.0.0.1:{}?transport=tcp", coturn.tls_port).parse().expect("url")],
        secret: TurnSecret::new(SECRET),
    });
    let server = start_with(config).await;
    let driver = Driver::start();
    // Chromium checks the TURN server's certificate like any other: trust exactly this one.
    let pin = [format!("--ignore-certificate-errors-spki-list={}", coturn.spki_pin)];
    // The relay point also has a 300 kbit/s uplink: its video layer is capped under it.
    let relay_claims = JoinClaims { relay: true, uplink_kbps: 300, ..claims("xa-relay") };
    let pages = [("xa-relay", relay_claims), ("xa-direct", claims("xa-direct"))].map(|(name, claims)| {
        let page = driver.browser_with_args(name, Camera::Allowed, &pin);
        page.goto(&format!("{}/join#token={}", server.http_url(), key().mint_join(&claims).expect("mint")));
        page.until("the join-check to enable joining", "return !document.getElementById('join').disabled;");
        page.click("#join");
        page
    });
    let started = Instant::now();
    for (page, other) in [(&pages[0], "xa-direct"), (&pages[1], "xa-relay")] {
        page.until(
            &format!("{other}'s audio and video to decode"),
            &format!(
                "return window.tiepdan.stats().then(s => \
                   s.consumers.some(c => c.point === '{other}' && c.kind === 'video' && c.framesDecoded > 0) && \
                   s.consumers.some(c => c.point === '{other}' && c.kind === 'audio' && c.totalSamplesReceived > 0));"
            ),
        );
    }
    let media_time = started.elapsed();
    let routes = |page: &Browser| page.eval("return window.tiepdan.stats().then(s => s.iceRoutes);");
    let relayed = routes(&pages[0]);
    for direction in ["send", "recv"] {
        let route = &relayed[direction];
        assert_eq!(route["candidateType"], "relay", "{direction}: {relayed:#}");
        assert_eq!(route["relayProtocol"], "tls", "{direction}: {relayed:#}");
    }
    let direct = routes(&pages[1]);
    assert_eq!(direct["send"]["candidateType"], "host", "{direct:#}");
    // 300 kbit/s less 64 for audio, nine tenths of it over all its layers; the other point gets
    // nine tenths of the default 1500.
    let video_cap = |page: &Browser| {
        page.eval("return window.tiepdan.stats().then(s => s.producers.find(p => p.kind === 'video').maxBitrate);")
    };
    assert_eq!(video_cap(&pages[0]), 212_000);
    assert_eq!(video_cap(&pages[1]), 1_350_000);
    let allocation = coturn.log_line_until(
        "the relay point's allocation",
        &["ALLOCATE processed, success", &format!("{SESSION}/xa-relay>")],
    );
    // The worker counts both as sending and receiving, so the relay is not a one-way street.
    status_until(server.local_addr(), "both points to send and receive", |s| {
        s.points.len() == 2
            && s.points
                .iter()
                .all(|p| p.connected && p.sends_audio && p.sends_video && p.receives_audio && p.receives_video)
    })
    .await;
    eprintln!("both decode each other {:.2} s after joining; relay route {relayed}", media_time.as_secs_f64());
    eprintln!("coturn: {allocation}");
    for page in pages {
        page.close();
    }
    server.stop().await.expect("stop");
}

/// A user no other process runs as: the blocked browser's packets are told apart by it.
const BLOCKED_UID: u32 = 64_123;

/// An office whose firewall lets only TLS out: a browser running as its own user, whose UDP is
/// dropped, as are its new TCP connections to the worker's RTC ports (ICE-TCP) and to coturn's
/// plain port. Offered TURN over UDP, TCP and TLS, with no `relay` claim, it still connects:
/// UDP and ICE-TCP fail, and TURN over TLS carries its media both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_may_only_use_tls_connects_through_turn_over_tls() {
    let coturn = Coturn::start("tls-only", SECRET);
    let mut config = config();
    // Below the ephemeral range, so that blocking it cannot catch the worker's HTTP port.
    config.rtc_ports = 21000..=21999;
    config.turn = Some(TurnConfig {
        urls: vec![
            format!("turn:127.0.0.1:{}?transport=udp", coturn.port).parse().expect("url"),
            format!("turn:127.0.0.1:{}?transport=tcp", coturn.port).parse().expect("url"),
            format!("turns:127.0.0.1:{}?transport=tcp", coturn.tls_port).parse().expect("url"),
        ],
        secret: TurnSecret::new(SECRET),
    });
    // Short enough for a test: verification follows within seconds of steady media.
    config.thresholds.verify_for = Duration::from_secs(3);
    let rtc_ports = config.rtc_ports.clone();
    let server = start_with(config).await;
    let firewall = OwnerFirewall::block(BLOCKED_UID, &[rtc_ports, coturn.port..=coturn.port]);
    let blocked_driver = Driver::start_as(BLOCKED_UID);
    let driver = Driver::start();
    let pin = [format!("--ignore-certificate-errors-spki-list={}", coturn.spki_pin)];
    let blocked = blocked_driver.browser_with_args("xa-blocked", Camera::Allowed, &pin);
    let open = driver.browser_with_args("xa-open", Camera::Allowed, &pin);
    // The open office hosts, so each has a host to prove it sees and hears.
    let host = JoinClaims { role: Role::Host, ..claims("xa-open") };
    for (page, point_claims) in [(&blocked, claims("xa-blocked")), (&open, host)] {
        page.goto(&format!("{}/join#token={}", server.http_url(), key().mint_join(&point_claims).expect("mint")));
        page.until("the join-check to enable joining", "return !document.getElementById('join').disabled;");
        page.click("#join");
    }
    let started = Instant::now();
    for (page, other) in [(&blocked, "xa-open"), (&open, "xa-blocked")] {
        page.until(
            &format!("{other}'s audio and video to decode"),
            &format!(
                "return window.tiepdan.stats().then(s => \
                   s.consumers.some(c => c.point === '{other}' && c.kind === 'video' && c.framesDecoded > 0) && \
                   s.consumers.some(c => c.point === '{other}' && c.kind === 'audio' && c.totalSamplesReceived > 0));"
            ),
        );
    }
    let media_time = started.elapsed();
    let routes = blocked.eval("return window.tiepdan.stats().then(s => s.iceRoutes);");
    for direction in ["send", "recv"] {
        assert_eq!(routes[direction]["candidateType"], "relay", "{direction}: {routes:#}");
        assert_eq!(routes[direction]["relayProtocol"], "tls", "{direction}: {routes:#}");
    }
    let open_routes = open.eval("return window.tiepdan.stats().then(s => s.iceRoutes);");
    assert_eq!(open_routes["send"]["candidateType"], "host", "{open_routes:#}");
    coturn.log_line_until(
        "the blocked point's allocation",
        &["ALLOCATE processed, success", &format!("{SESSION}/xa-blocked>")],
    );
    // It is verified like any office, and its status says it relays over TLS: ops see why its
    // media takes the long way.
    // The checklist needs a few seconds of sound and pictures, then the worker's reconnection
    // check, which this office passes through TURN over TLS again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let verified = loop {
        let s = status(server.local_addr()).await;
        if s.points.len() == 2 && s.points.iter().all(|p| p.verified) {
            break s;
        }
        assert!(Instant::now() < deadline, "not verified: {:#}", serde_json::to_value(&s.points).expect("json"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let blocked_status = verified.points.iter().find(|p| p.name.as_str() == "xa-blocked").expect("listed");
    let path = blocked_status.checks.iter().find(|c| c.item == CheckItem::IcePath).expect("icePath listed");
    assert_eq!((path.state, path.path), (CheckState::Passed, Some(IcePath::TurnTls)), "{blocked_status:?}");
    eprintln!(
        "TLS-only browser decodes and is decoded {:.2} s after joining, verified {:.2} s after; route {routes}",
        media_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    blocked.close();
    open.close();
    drop(blocked_driver);
    drop(firewall);
    server.stop().await.expect("stop");
}
