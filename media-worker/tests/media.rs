//! Media through the real SFU on 127.0.0.1: the probe loops its own RTP back and two probes
//! receive each other's RTP; plain RTP is for probe tokens only, goes only where its first packet
//! came from, and never verifies a point (points are verified through browsers: console.rs).

mod common;

use common::*;
use mediasoup::prelude::MediaKind;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tiepdan_media_worker::probe::client::ClientError;
use tiepdan_media_worker::probe::peer::{PeerError, PlainPeer};
use tiepdan_media_worker::probe::{run_probe, ProbeOptions};
use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, ErrorCode, Role, ServerMessage};
use tiepdan_media_worker::tokens::JoinClaims;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_round_trips_media_without_loss() {
    let server = start().await;
    let mut options = ProbeOptions::new(server.ws_url(), probe_token("probe"));
    options.duration = Duration::from_secs(2);
    options.rate_pps = 25;
    let report = run_probe(&options).await.expect("probe");
    assert_eq!(report.audio.sent, 50);
    assert_eq!(report.video.sent, 50);
    assert_eq!(report.audio.received, 50, "{report}");
    assert_eq!(report.video.received, 50, "{report}");
    assert_eq!(report.loss_percent, 0.0);
    assert!(report.latency_p50_ms.is_some() && report.latency_p99_ms.is_some());

    // A probe is not a point: it is not listed at all, so nothing about it can be verified.
    let raw = serde_json::to_value(status(server.local_addr()).await).expect("status JSON");
    assert_eq!(raw["points"], serde_json::json!([]), "{raw}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_points_link_gets_no_plain_transport() {
    let server = start().await;
    for role in [Role::Host, Role::Participant] {
        let token = key().mint_join(&JoinClaims { role, ..claims("xa-a") }).expect("mint");
        let err = PlainPeer::join(&server.ws_url(), &token, LOCALHOST).await.expect_err("no plain RTP for a point");
        let PeerError::Signaling(ClientError::Refused { code, message }) = err else {
            panic!("expected a refusal, got {err:?}");
        };
        assert_eq!(code, ErrorCode::PlainTransportForbidden, "{role:?}");
        assert!(message.contains("probe"), "the message names the reason: {message}");
    }
    assert_healthy(server.local_addr()).await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_gets_media_only_where_its_first_packet_came_from() {
    let server = start().await;
    let mut probe = PlainPeer::join(&server.ws_url(), &probe_token("probe"), LOCALHOST).await.expect("joins");
    let published = probe.publish().await.expect("publishes");
    // Someone else's socket on the loopback network, where a reflector would aim.
    let victim = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 3), 0)).await.expect("victim socket");
    let victim_addr = victim.local_addr().expect("victim address");

    // A second receive transport, named the victim's address before any packet came in.
    let ServerMessage::PlainTransportCreated { transport_id, .. } =
        probe.client.request(ClientMessage::CreatePlainTransport { direction: Direction::Recv }).await.expect("create")
    else {
        panic!("expected plainTransportCreated");
    };
    let refused = probe
        .client
        .request(ClientMessage::ConnectPlainTransport {
            transport_id,
            ip: victim_addr.ip(),
            port: victim_addr.port(),
            rtcp_port: None,
        })
        .await
        .expect_err("a named remote address is refused");
    assert_eq!(refused.code(), Some(ErrorCode::RemoteAddressForbidden), "{refused}");
    let rtp_capabilities = probe.rtp_capabilities.clone();
    let ServerMessage::Consumed { consumer_id, .. } = probe
        .client
        .request(ClientMessage::Consume { transport_id, producer_id: published.video, rtp_capabilities })
        .await
        .expect("consume on it")
    else {
        panic!("expected consumed");
    };
    probe.client.request(ClientMessage::ResumeConsumer { consumer_id }).await.expect("resume");
    probe.consume(published.audio).await.expect("consumes its own audio");

    // The probe's own receive socket gets its audio back; the victim got nothing meanwhile.
    let origin = probe.origin;
    for _ in 0..20 {
        probe.send_once(50).await.expect("sends");
    }
    let back = probe.inbox().wait_until(WAIT, |a| a.received(origin, MediaKind::Audio) == 20).await;
    assert!(back, "the probe's own socket gets its media");
    let mut buffer = [0_u8; 2048];
    assert!(victim.try_recv_from(&mut buffer).is_err(), "the worker sent media to an address a client named");
    server.stop().await.expect("stop");
}

/// Joins two probes that publish and consume each other.
async fn two_connected_probes(url: &str) -> (PlainPeer, PlainPeer) {
    let mut a = PlainPeer::join(url, &probe_token("probe-a"), LOCALHOST).await.expect("a joins");
    let published_a = a.publish().await.expect("a publishes");
    let mut b = PlainPeer::join(url, &probe_token("probe-b"), LOCALHOST).await.expect("b joins");
    assert_eq!(b.initial_producers.len(), 2, "b sees a's producers on joining");
    let published_b = b.publish().await.expect("b publishes");

    // a learns about b's producers through pushes.
    let mut announced = Vec::new();
    while announced.len() < 2 {
        if let ServerMessage::NewProducer { producer_id, point, .. } =
            a.client.wait_for(|m| matches!(m, ServerMessage::NewProducer { .. })).await.expect("newProducer")
        {
            assert_eq!(point.as_str(), "probe-b");
            announced.push(producer_id);
        }
    }
    announced.sort();
    let mut expected = vec![published_b.audio, published_b.video];
    expected.sort();
    assert_eq!(announced, expected);

    for producer in [published_b.audio, published_b.video] {
        a.consume(producer).await.expect("a consumes b");
    }
    for producer in [published_a.audio, published_a.video] {
        b.consume(producer).await.expect("b consumes a");
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_probes_each_receive_the_others_rtp() {
    let server = start().await;
    let (mut a, mut b) = two_connected_probes(&server.ws_url()).await;
    let (origin_a, origin_b) = (a.origin, b.origin);
    for _ in 0..20 {
        a.send_once(50).await.expect("a sends");
        b.send_once(50).await.expect("b sends");
    }
    let complete = |origin| {
        move |arrivals: &tiepdan_media_worker::probe::measure::Arrivals| {
            arrivals.received(origin, MediaKind::Audio) == 20 && arrivals.received(origin, MediaKind::Video) == 20
        }
    };
    assert!(a.inbox().wait_until(WAIT, complete(origin_b)).await, "a got all of b's packets");
    assert!(b.inbox().wait_until(WAIT, complete(origin_a)).await, "b got all of a's packets");
    // Nobody received its own media: only the other's producers were consumed.
    assert_eq!(a.inbox().snapshot().received(origin_a, MediaKind::Audio), 0);
    assert_eq!(b.inbox().snapshot().received(origin_b, MediaKind::Video), 0);

    b.leave().await.expect("b leaves");
    let mut closed = 0;
    while closed < 2 {
        let message =
            a.client.wait_for(|m| matches!(m, ServerMessage::ProducerClosed { .. })).await.expect("producerClosed");
        assert!(matches!(message, ServerMessage::ProducerClosed { point, .. } if point.as_str() == "probe-b"));
        closed += 1;
    }
    server.stop().await.expect("stop");
}

/// Before probes had a role of their own, two plain-RTP clients holding the points' links were
/// verified this way, with no browser at all (issue #11). Probes now carry the points' names and
/// exchange media for three verification periods; neither point is verified, listed by the
/// probes' doing, replaced, or shown anything of them, and the probes cannot consume a point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_never_verify_a_point_even_under_its_name() {
    let mut config = config();
    config.thresholds.verify_for = Duration::from_secs(1);
    let server = start_with(config).await;
    let addr = server.local_addr();
    let url = server.ws_url();
    let (mut point, point_audio) = point_with_audio(&url, "xa-a").await;

    let mut a = PlainPeer::join(&url, &probe_token("xa-a"), LOCALHOST).await.expect("probe a joins");
    assert!(a.initial_producers.is_empty(), "a probe is shown no point's producers");
    let refused = a.consume(point_audio).await.expect_err("a probe cannot consume a point");
    assert!(matches!(&refused, PeerError::Signaling(e) if e.code() == Some(ErrorCode::ProducerNotFound)), "{refused}");
    let published_a = a.publish().await.expect("a publishes");
    let mut b = PlainPeer::join(&url, &probe_token("xa-b"), LOCALHOST).await.expect("probe b joins");
    let published_b = b.publish().await.expect("b publishes");
    for producer in [published_b.audio, published_b.video] {
        a.consume(producer).await.expect("a consumes b");
    }
    for producer in [published_a.audio, published_a.video] {
        b.consume(producer).await.expect("b consumes a");
    }
    // 50 packets a second per stream, until each has 3 s of the other's audio: three
    // verification periods, fifteen statistics polls.
    let origin_b = b.origin;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.inbox().snapshot().received(origin_b, MediaKind::Audio) < 150 {
        assert!(tokio::time::Instant::now() < deadline, "probe media stopped flowing");
        ticker.tick().await;
        a.send_once(50).await.expect("a sends");
        b.send_once(50).await.expect("b sends");
    }

    let status = status(addr).await;
    let names: Vec<&str> = status.points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["xa-a"], "only the real point is listed");
    let real = &status.points[0];
    assert!(real.present && !real.verified && !real.receives_audio && !real.receives_video, "{real:?}");
    let metrics = get(addr, "/metrics").await.body;
    assert!(!metrics.contains(r#"tiepdan_worker_point_verified{point="xa-b""#), "a probe has no point metrics");
    assert!(!metrics.contains(r#"tiepdan_worker_bytes_in_total{point="xa-b""#), "a probe has no point metrics");

    // The real point was not replaced by the probe that took its name, and never heard of any
    // probe: a request still works, and nothing about probes was pushed before its reply.
    let err =
        point.request(ClientMessage::CloseProducer { producer_id: published_a.audio }).await.expect_err("not its");
    assert_eq!(err.code(), Some(ErrorCode::ProducerNotFound));
    let pushes = point.take_backlog();
    assert!(pushes.is_empty(), "a point was told about probes: {pushes:?}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_producer_closes_the_consumers_of_it() {
    let server = start().await;
    let (mut a, mut b) = two_connected_probes(&server.ws_url()).await;
    let Some(audio) = b.initial_producers.iter().find(|p| p.kind == MediaKind::Audio).map(|p| p.producer_id) else {
        panic!("a's audio producer");
    };
    let closed = a.client.request(ClientMessage::CloseProducer { producer_id: audio }).await.expect("close");
    assert!(matches!(closed, ServerMessage::ProducerClosed { .. }));
    let consumer_closed =
        b.client.wait_for(|m| matches!(m, ServerMessage::ConsumerClosed { .. })).await.expect("consumerClosed");
    assert!(matches!(consumer_closed, ServerMessage::ConsumerClosed { producer_id, .. } if producer_id == audio));
    server.stop().await.expect("stop");
}

/// mediasoup 0.8.5 leaves each RTC socket at the kernel's default receive buffer
/// (net.core.rmem_default), which a burst overflows at well under what the worker can forward
/// (docs/BENCHMARKS.md, media forwarding); the worker sets `--rtc-receive-buffer-bytes` on the
/// socket of every transport it creates. Without CAP_NET_ADMIN the kernel caps the size at
/// net.core.rmem_max, so that is what is expected at least; the kernel reports twice the size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtc_sockets_get_the_configured_receive_buffer() {
    let config = config();
    let asked = config.rtc_receive_buffer.expect("a receive buffer by default");
    let server = start_with(config).await;
    let mut probe = PlainPeer::join(&server.ws_url(), &probe_token("probe"), LOCALHOST).await.expect("joins");
    let ServerMessage::PlainTransportCreated { port, .. } =
        probe.client.request(ClientMessage::CreatePlainTransport { direction: Direction::Send }).await.expect("create")
    else {
        panic!("createPlainTransport: unexpected answer");
    };
    let sysctl = |name: &str| -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}")).expect(name).trim().parse().expect(name)
    };
    let size = tiepdan_media_worker::rtc_socket::receive_buffer(port).expect("the transport's socket");
    let floor = 2 * asked.min(sysctl("rmem_max"));
    assert!(
        size >= floor,
        "port {port}: receive buffer {size} B, expected at least {floor} B (rmem_default {})",
        sysctl("rmem_default")
    );
    probe.leave().await.expect("leaves");
    server.stop().await.expect("stop");
}
