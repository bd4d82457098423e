//! Simulcast over signaling, without a browser: the session's video caps reach the point in
//! `joined`, the worker refuses a camera above them and caps its send transport, each consumer
//! follows its tile (`setViewport`: layer, priority, paused while hidden), and the console's
//! freeze reports land in the metrics; a probe's synthetic simulcast camera switches layers like a
//! browser's.

mod common;

use common::*;
use mediasoup::prelude::{MediaKind, ProducerId, RtpCapabilities, Transport, TransportGeneric, TransportId};
use serde_json::json;
use std::net::Ipv4Addr;
use std::time::Duration;
use tiepdan_media_worker::probe::camera::{console_layers, SyntheticCamera, FRAMES_PER_SECOND};
use tiepdan_media_worker::probe::client::SignalingClient;
use tiepdan_media_worker::probe::peer::PlainPeer;
use tiepdan_media_worker::probe::rtp::{empty_receiver_report, rtp_payload};
use tiepdan_media_worker::room::MediaTransport;
use tiepdan_media_worker::server::RunningServer;
use tiepdan_media_worker::signaling::protocol::{
    ClientMessage, Direction, ErrorCode, ServerMessage, TileView, VideoCaps,
};
use tiepdan_media_worker::tokens::JoinClaims;
use tokio::net::UdpSocket;

const CAPS: VideoCaps = VideoCaps { max_bitrate_kbps: 500, max_height: 720 };

async fn join(server: &RunningServer, point: &str) -> (SignalingClient, ServerMessage) {
    let mut client = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let claims = JoinClaims { video: CAPS, ..claims(point) };
    let joined =
        client.request(ClientMessage::Join { token: key().mint_join(&claims).expect("mint") }).await.expect("join");
    (client, joined)
}

async fn transport(client: &mut SignalingClient, direction: Direction) -> TransportId {
    let ServerMessage::WebRtcTransportCreated { transport_id, .. } =
        client.request(ClientMessage::CreateWebRtcTransport { direction }).await.expect("transport")
    else {
        panic!("expected webRtcTransportCreated");
    };
    transport_id
}

/// A VP8 camera with one SSRC per layer, each layer capped at `kbps`, scaled 4, 2, 1 (as the
/// console sends it).
fn vp8_simulcast(kbps: &[u32]) -> mediasoup::prelude::RtpParameters {
    let encodings: Vec<_> = kbps
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let scale = f64::from(1_u32 << (kbps.len() - 1 - i));
            json!({"ssrc": 2000 + i, "maxBitrate": k * 1000, "scaleResolutionDownBy": scale})
        })
        .collect();
    serde_json::from_value(json!({
        "codecs": [{"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000,
                    "parameters": {}, "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]}],
        "headerExtensions": [], "encodings": encodings, "rtcp": {"reducedSize": true}
    }))
    .expect("RTP parameters")
}

async fn produce(
    client: &mut SignalingClient,
    transport_id: TransportId,
    kbps: &[u32],
) -> Result<ProducerId, tiepdan_media_worker::probe::client::ClientError> {
    let message = ClientMessage::Produce {
        transport_id,
        kind: MediaKind::Video,
        rtp_parameters: vp8_simulcast(kbps),
        source: None,
    };
    match client.request(message).await? {
        ServerMessage::Produced { producer_id } => Ok(producer_id),
        other => panic!("expected produced, got {other:?}"),
    }
}

#[tokio::test]
async fn the_sessions_caps_reach_the_point_and_the_worker_refuses_a_camera_above_them() {
    let server = start().await;
    let (mut client, joined) = join(&server, "xa-a").await;
    let ServerMessage::Joined { video, .. } = joined else { panic!("expected joined") };
    assert_eq!(video, CAPS, "joined carries the session's caps");

    let send = transport(&mut client, Direction::Send).await;
    // 200 + 400 kbit/s is above the 500 the session allows: refused, naming the cap.
    let refused = produce(&mut client, send, &[200, 400]).await.expect_err("above the cap");
    assert_eq!(refused.code(), Some(ErrorCode::LimitExceeded), "{refused}");
    assert!(refused.to_string().contains("500"), "{refused}");
    // Four layers are refused whatever their bitrates.
    let four = produce(&mut client, send, &[10, 10, 10, 10]).await.expect_err("four layers");
    assert_eq!(four.code(), Some(ErrorCode::LimitExceeded), "{four}");
    // Three layers adding up to the cap are fine.
    produce(&mut client, send, &[50, 125, 325]).await.expect("within the cap");

    // The send transport takes in at most the video cap with its RTP overhead, plus audio.
    let (_, room) = server.registry().live_room().expect("a room");
    let MediaTransport::WebRtc(t) = room
        .media_snapshot()
        .into_iter()
        .flat_map(|m| m.transports)
        .find(|t| matches!(t, MediaTransport::WebRtc(w) if w.id() == send))
        .expect("the send transport")
    else {
        panic!("a WebRTC transport");
    };
    let stats = t.get_stats().await.expect("stats");
    assert_eq!(stats.first().and_then(|s| s.max_incoming_bitrate), Some((500 + 100 + 64) * 1000));
    server.stop().await.expect("stop");
}

/// The consumer `viewer` has of `producer`: whether it is paused, its preferred spatial layer
/// and its priority.
async fn consumer_state(server: &RunningServer, viewer: &str, producer: ProducerId) -> (bool, Option<u8>, u8) {
    let (_, room) = server.registry().live_room().expect("a room");
    let consumer = room
        .media_snapshot()
        .into_iter()
        .find(|m| m.point.as_str() == viewer)
        .expect("the viewer")
        .consumers
        .into_iter()
        .find(|c| c.consumer.producer_id() == producer)
        .expect("its consumer")
        .consumer;
    let dump = consumer.dump().await.expect("dump");
    let priority = serde_json::to_value(&dump).expect("dump json")["priority"].as_u64().unwrap_or(0);
    (consumer.paused(), consumer.preferred_layers().map(|l| l.spatial_layer), u8::try_from(priority).unwrap_or(0))
}

fn tile(point: &str, height: u32, visible: bool) -> TileView {
    TileView { point: point.parse().expect("point"), height, visible }
}

#[tokio::test]
async fn each_consumer_follows_its_tile_and_hidden_tiles_are_paused() {
    let server = start().await;
    let (mut camera, _) = join(&server, "xa-camera").await;
    let send = transport(&mut camera, Direction::Send).await;
    let producer = produce(&mut camera, send, &[50, 125, 325]).await.expect("produce");

    let (mut viewer, joined) = join(&server, "xa-viewer").await;
    let ServerMessage::Joined { router_rtp_capabilities, .. } = joined else { panic!("expected joined") };
    let rtp_capabilities: RtpCapabilities =
        serde_json::from_value(serde_json::to_value(&router_rtp_capabilities).expect("json")).expect("caps");
    let recv = transport(&mut viewer, Direction::Recv).await;
    let ServerMessage::Consumed { consumer_id, .. } = viewer
        .request(ClientMessage::Consume { transport_id: recv, producer_id: producer, rtp_capabilities })
        .await
        .expect("consume")
    else {
        panic!("expected consumed");
    };
    // Before the console says where the picture goes: the middle layer, paused until ready.
    let (paused, layer, _) = consumer_state(&server, "xa-viewer", producer).await;
    assert_eq!((paused, layer), (true, Some(1)));
    viewer.request(ClientMessage::ResumeConsumer { consumer_id }).await.expect("resume");
    assert!(!consumer_state(&server, "xa-viewer", producer).await.0, "resumed once ready");

    // A thumbnail gets the lowest layer; a large tile the top one, with a higher priority.
    let view = |tiles| ClientMessage::SetViewport { tiles };
    viewer.request(view(vec![tile("xa-camera", 160, true)])).await.expect("viewport");
    let (paused, layer, small) = consumer_state(&server, "xa-viewer", producer).await;
    assert_eq!((paused, layer), (false, Some(0)));
    viewer.request(view(vec![tile("xa-camera", 720, true)])).await.expect("viewport");
    let (paused, layer, large) = consumer_state(&server, "xa-viewer", producer).await;
    assert_eq!((paused, layer), (false, Some(2)));
    assert!(large > small, "a large tile outranks a thumbnail: {large} vs {small}");

    // Hidden (minimised, scrolled away): paused; shown again: resumed.
    viewer.request(view(vec![tile("xa-camera", 720, false)])).await.expect("viewport");
    assert!(consumer_state(&server, "xa-viewer", producer).await.0, "paused while hidden");
    viewer.request(view(vec![tile("xa-camera", 360, true)])).await.expect("viewport");
    let (paused, layer, _) = consumer_state(&server, "xa-viewer", producer).await;
    assert_eq!((paused, layer), (false, Some(1)));

    // A viewport is bounded like the consumers it steers.
    let many = (0..65).map(|i| tile(&format!("xa-{i}"), 100, true)).collect();
    let refused = viewer.request(view(many)).await.expect_err("too many tiles");
    assert_eq!(refused.code(), Some(ErrorCode::LimitExceeded));
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn a_consoles_freeze_reports_are_counted_and_implausible_ones_refused() {
    let server = start().await;
    let (mut client, _) = join(&server, "xa-a").await;
    let labels = format!(r#"{{point="xa-a",session="{SESSION}"}}"#);
    let text = get(server.local_addr(), "/metrics").await.body;
    assert!(text.contains(&format!("tiepdan_worker_video_freezes_total{labels} 0")), "at 0 from the join: {text}");
    for _ in 0..2 {
        client.request(ClientMessage::ReportQuality { freezes: 2, freeze_seconds: 0.75 }).await.expect("recorded");
    }
    let text = get(server.local_addr(), "/metrics").await.body;
    assert!(text.contains(&format!("tiepdan_worker_video_freezes_total{labels} 4")), "{text}");
    assert!(text.contains(&format!("tiepdan_worker_video_freeze_seconds_total{labels} 1.5")), "{text}");
    for (freezes, freeze_seconds) in [(5000, 1.0), (1, -1.0), (1, 1e9)] {
        let refused =
            client.request(ClientMessage::ReportQuality { freezes, freeze_seconds }).await.expect_err("implausible");
        assert_eq!(refused.code(), Some(ErrorCode::MalformedMessage), "{freezes} {freeze_seconds}");
    }
    // A probe is no reception point: its reports are refused.
    let mut probe = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    probe.request(ClientMessage::Join { token: probe_token("probe-a") }).await.expect("join");
    let refused =
        probe.request(ClientMessage::ReportQuality { freezes: 1, freeze_seconds: 0.1 }).await.expect_err("probe");
    assert_eq!(refused.code(), Some(ErrorCode::MalformedMessage));
    server.stop().await.expect("stop");
}

/// The width in the VP8 key frame an RTP packet starts, if it starts one (RFC 7741 descriptor,
/// then the key frame header, RFC 6386 §9.1).
fn key_frame_width(packet: &[u8]) -> Option<u16> {
    let payload = rtp_payload(packet)?;
    let (first, start) = (*payload.first()?, payload.first()? & 0x10 != 0);
    let mut at = 1;
    if first & 0x80 != 0 {
        let extensions = *payload.get(1)?;
        at += 1;
        if extensions & 0x80 != 0 {
            at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        at += usize::from(extensions & 0x40 != 0) + usize::from(extensions & 0x30 != 0);
    }
    let frame = payload.get(at..)?;
    (start && frame.first()? & 1 == 0 && frame.get(3..6)? == [0x9d, 0x01, 0x2a])
        .then(|| u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff)
}

/// The widths of the key frames that reach `socket` within `wait`.
async fn widths_received(socket: &UdpSocket, wait: Duration) -> Vec<u16> {
    let mut widths = Vec::new();
    let mut buffer = vec![0_u8; 2048];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(len)) = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
        widths.extend(key_frame_width(&buffer[..len]));
    }
    widths
}

/// A probe's synthetic simulcast camera behaves like a browser's for the SFU: a consumer that
/// started on the middle layer (no tile reported yet) moves to the lowest once its tile is a
/// thumbnail. mediasoup switches layers only when the layers' sender reports tie their RTP
/// clocks to the wall clock, which the camera sends about once a second.
#[tokio::test]
async fn a_synthetic_cameras_consumer_moves_to_the_layer_its_tile_asks_for() {
    let server = start().await;
    let caps = VideoCaps { max_bitrate_kbps: 1500, max_height: 720 };
    let token = |name: &str| key().mint_join(&JoinClaims { video: caps, ..probe_claims(name) }).expect("mint");
    let mut sender = PlainPeer::join(&server.ws_url(), &token("probe-camera"), Ipv4Addr::LOCALHOST.into())
        .await
        .expect("the camera joins");
    let mut camera = SyntheticCamera::new(&console_layers(1500, 720)).expect("camera");
    let published = sender.publish_camera(&camera).await.expect("publish");
    let sending = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_secs(1) / FRAMES_PER_SECOND);
        for frame in 0_u32.. {
            ticker.tick().await;
            for packet in camera.video_frame() {
                sender.send_packet(&packet).await.expect("send");
            }
            if frame % FRAMES_PER_SECOND == 0 {
                let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
                for report in camera.sender_reports(unix, started.elapsed()) {
                    sender.send_packet(&report).await.expect("send");
                }
            }
        }
    });

    // The viewer: a probe consuming the camera's video on a plain transport by hand, to read
    // which layer's key frames arrive.
    let mut viewer = SignalingClient::connect(&server.ws_url()).await.expect("connect");
    let ServerMessage::Joined { router_rtp_capabilities, .. } =
        viewer.request(ClientMessage::Join { token: token("probe-viewer") }).await.expect("join")
    else {
        panic!("expected joined");
    };
    let rtp_capabilities: RtpCapabilities =
        serde_json::from_value(serde_json::to_value(&router_rtp_capabilities).expect("json")).expect("caps");
    let ServerMessage::PlainTransportCreated { transport_id, ip, port, .. } =
        viewer.request(ClientMessage::CreatePlainTransport { direction: Direction::Recv }).await.expect("transport")
    else {
        panic!("expected plainTransportCreated");
    };
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
    let worker = std::net::SocketAddr::new(ip, port);
    let ServerMessage::Consumed { consumer_id, .. } = viewer
        .request(ClientMessage::Consume { transport_id, producer_id: published.video, rtp_capabilities })
        .await
        .expect("consume")
    else {
        panic!("expected consumed");
    };
    // Comedia: the first packet tells the worker where to send.
    socket.send_to(&empty_receiver_report(7), worker).await.expect("announce");
    viewer.request(ClientMessage::ResumeConsumer { consumer_id }).await.expect("resume");

    let before = widths_received(&socket, Duration::from_secs(2)).await;
    assert!(!before.is_empty() && before.iter().all(|w| *w == 640), "the middle layer first: {before:?}");
    let thumbnail = TileView { point: "probe-camera".parse().expect("point"), height: 160, visible: true };
    viewer.request(ClientMessage::SetViewport { tiles: vec![thumbnail] }).await.expect("viewport");
    // The switch waits for both layers' next sender reports: a second at most.
    let after = widths_received(&socket, Duration::from_secs(3)).await;
    assert_eq!(after.iter().rev().take(5).collect::<Vec<_>>(), [&320; 5], "then the lowest: {after:?}");
    sending.abort();
    server.stop().await.expect("stop");
}

/// The SFU's evidence of a camera needs one key frame; it stops tracing them after it, since each
/// packet of each key frame would otherwise cross from the C++ worker to be parsed (in the
/// forwarding benchmark, twice the worker's CPU per VP8 packet). Every frame of the synthetic
/// camera is a key frame, so while tracing is on, every frame brings trace events.
#[tokio::test]
async fn the_sfu_stops_tracing_a_cameras_key_frames_once_it_has_seen_one() {
    let server = start().await;
    let caps = VideoCaps { max_bitrate_kbps: 1500, max_height: 720 };
    let token = key().mint_join(&JoinClaims { video: caps, ..probe_claims("probe-camera") }).expect("mint");
    let mut sender = PlainPeer::join(&server.ws_url(), &token, Ipv4Addr::LOCALHOST.into()).await.expect("join");
    let mut camera = SyntheticCamera::new(&console_layers(1500, 720)).expect("camera");
    let published = sender.publish_camera(&camera).await.expect("publish");
    let (_, room) = server.registry().live_room().expect("a room");
    let producer = room.producer(&published.video).expect("the camera's producer");
    let traced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = traced.clone();
    let _counting = producer.on_trace(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });

    // Frames until the evidence has its key frame and ten frames in a row bring no trace event.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / FRAMES_PER_SECOND);
    let (mut quiet_frames, mut last) = (0, 0);
    while quiet_frames < 10 {
        ticker.tick().await;
        for packet in camera.video_frame() {
            sender.send_packet(&packet).await.expect("send");
        }
        let now = traced.load(std::sync::atomic::Ordering::Relaxed);
        let seen = room.evidence().seen(&published.video).keyframe;
        quiet_frames = if seen && now == last { quiet_frames + 1 } else { 0 };
        last = now;
        assert!(
            tokio::time::Instant::now() < deadline,
            "still tracing: {now} trace events so far, key frame seen: {seen}"
        );
    }
    assert!(last > 0, "the first key frame was traced");
    server.stop().await.expect("stop");
}
