//! Media through the real SFU on 127.0.0.1: the probe loops its own RTP back, two points receive
//! each other's RTP, and points exchanging media become verified.

mod common;

use common::*;
use mediasoup::prelude::MediaKind;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tiepdan_media_worker::probe::peer::PlainPeer;
use tiepdan_media_worker::probe::{run_probe, ProbeOptions};
use tiepdan_media_worker::signaling::protocol::{ClientMessage, ServerMessage};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_round_trips_media_without_loss() {
    let server = start().await;
    let mut options = ProbeOptions::new(server.ws_url(), token("probe"));
    options.duration = Duration::from_secs(2);
    options.rate_pps = 25;
    let report = run_probe(&options).await.expect("probe");
    assert_eq!(report.audio.sent, 50);
    assert_eq!(report.video.sent, 50);
    assert_eq!(report.audio.received, 50, "{report}");
    assert_eq!(report.video.received, 50, "{report}");
    assert_eq!(report.loss_percent, 0.0);
    assert!(report.latency_p50_ms.is_some() && report.latency_p99_ms.is_some());

    // The probe consumed only its own producers: it is not verified (that needs another point).
    let status = status(server.local_addr()).await;
    let probe = status.points.iter().find(|p| p.name.as_str() == "probe").expect("listed");
    assert!(probe.joined && !probe.verified);
    // Not verified: no `verifiedAt` at all, rather than a null the operator would have to tell
    // apart from a time.
    let raw: serde_json::Value =
        serde_json::from_str(&get(server.local_addr(), "/v1/status").await.body).expect("status JSON");
    assert!(raw["points"][0].get("verifiedAt").is_none(), "{raw}");
    server.stop().await.expect("stop");
}

/// Joins two plain-RTP points that publish and consume each other.
async fn two_connected_points(url: &str) -> (PlainPeer, PlainPeer) {
    let mut a = PlainPeer::join(url, &token("xa-a"), LOCALHOST).await.expect("a joins");
    let published_a = a.publish().await.expect("a publishes");
    let mut b = PlainPeer::join(url, &token("xa-b"), LOCALHOST).await.expect("b joins");
    assert_eq!(b.initial_producers.len(), 2, "b sees a's producers on joining");
    let published_b = b.publish().await.expect("b publishes");

    // a learns about b's producers through pushes.
    let mut announced = Vec::new();
    while announced.len() < 2 {
        if let ServerMessage::NewProducer { producer_id, point, .. } =
            a.client.wait_for(|m| matches!(m, ServerMessage::NewProducer { .. })).await.expect("newProducer")
        {
            assert_eq!(point.as_str(), "xa-b");
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
async fn two_points_each_receive_the_others_rtp() {
    let server = start().await;
    let (mut a, mut b) = two_connected_points(&server.ws_url()).await;
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
        assert!(matches!(message, ServerMessage::ProducerClosed { point, .. } if point.as_str() == "xa-b"));
        closed += 1;
    }
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_exchanging_media_become_verified() {
    let mut config = config();
    config.thresholds.verify_for = Duration::from_secs(1);
    let server = start_with(config).await;
    let addr = server.local_addr();
    let (mut a, mut b) = two_connected_points(&server.ws_url()).await;
    let media_started = jiff::Timestamp::now();

    // Keep media flowing until both are verified (or the wait gives up).
    let sender = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        loop {
            ticker.tick().await;
            if a.send_once(50).await.is_err() || b.send_once(50).await.is_err() {
                return (a, b);
            }
        }
    });
    let verified =
        status_until(addr, "both points verified", |s| s.points.len() == 2 && s.points.iter().all(|p| p.verified))
            .await;
    let seen_verified = jiff::Timestamp::now();
    for point in &verified.points {
        assert!(point.connected && point.sends_audio && point.sends_video, "{point:?}");
        assert!(point.receives_audio && point.receives_video, "{point:?}");
    }
    sender.abort();

    // `verifiedAt` is the worker's clock when verification passed: RFC 3339, after a whole
    // verification period of media and no later than the status that first showed it.
    let raw: serde_json::Value = serde_json::from_str(&get(addr, "/v1/status").await.body).expect("status JSON");
    for point in raw["points"].as_array().expect("points") {
        let text = point["verifiedAt"].as_str().unwrap_or_else(|| panic!("verifiedAt in {point}"));
        let at: jiff::Timestamp = text.parse().expect("RFC 3339");
        assert!(at >= media_started + jiff::SignedDuration::from_secs(1), "{text} vs media from {media_started}");
        assert!(at <= seen_verified, "{text} after the status showed it verified at {seen_verified}");
    }

    let metrics = get(addr, "/metrics").await.body;
    assert!(metrics.contains(r#"tiepdan_worker_point_verified{point="xa-a",session="ubnd-hanoi/tiep-dan-thang-6"} 1"#));
    assert!(metrics.contains("tiepdan_worker_bytes_in_total{point=\"xa-b\""));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_producer_closes_the_consumers_of_it() {
    let server = start().await;
    let (mut a, mut b) = two_connected_points(&server.ws_url()).await;
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
