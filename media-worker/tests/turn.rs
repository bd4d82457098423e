//! TURN relays and per-point limits through signaling, against a worker on 127.0.0.1: each point
//! gets TURN credentials that expire with its token, a point whose token says `relay` is told to
//! relay only, and a point's `uplinkKbps` caps its send transport.

mod common;

use common::*;
use mediasoup::prelude::{Transport as _, TransportGeneric as _, TransportId};
use tiepdan_media_worker::probe::client::SignalingClient;
use tiepdan_media_worker::room::MediaTransport;
use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, IceTransportPolicy, ServerMessage};
use tiepdan_media_worker::tokens::JoinClaims;
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
