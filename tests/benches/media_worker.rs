//! Speed and memory of the media worker: the per-frame costs of signaling (token checks, frame
//! parsing), how long a point takes to join and publish, and the worker's resident memory idle and
//! with a full Mỹ Hào session (15 points, each publishing audio and video and consuming the
//! host's). The worker runs in this process (mediasoup's C++ worker is a thread here), so its
//! memory is this process's. Media is the probe's synthetic RTP (50 packets/s per stream) for
//! 3 s, so the 15 "points" join with probe tokens (only probes get plain RTP; real points use
//! WebRTC, whose DTLS/SRTP costs this does not include). `cargo bench -p tiepdan-tests --bench media_worker`; figures go in
//! docs/BENCHMARKS.md.

mod support;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tiepdan_media_worker::config::ServeConfig;
use tiepdan_media_worker::ids::SessionId;
use tiepdan_media_worker::probe::peer::PlainPeer;
use tiepdan_media_worker::server;
use tiepdan_media_worker::signaling::protocol::{parse_client_frame, Role};
use tiepdan_media_worker::tokens::{generate_keys, unix_now, JoinClaims, JoinRules, PrivateKey};

const POINTS: usize = 15;

fn token(key: &PrivateKey, session: &SessionId, point: &str, role: Role) -> String {
    let claims = JoinClaims::for_point(
        session,
        &point.parse().expect("point name"),
        &format!("Điểm cầu {point}"),
        role,
        "Tiếp công dân định kỳ",
        unix_now() - 5,
        3600,
    );
    key.mint_join(&claims).expect("mint")
}

fn main() {
    let (keys, public) = generate_keys();
    let key = keys.join;
    let session: SessionId = "my-hao/tiep-dan-dinh-ky".parse().expect("session id");
    let good = token(&key, &session, "di-su", Role::Participant);
    let forged = token(&generate_keys().0.join, &session, "di-su", Role::Participant);
    let join_frame = format!(r#"{{"requestId":1,"action":"join","token":"{good}"}}"#);
    let hostile =
        r#"{"requestId":1,"action":"produce","transportId":"nope","kind":"video","rtpParameters":{"codecs":"x"}}"#;

    let mut stats = vec![
        support::measure("verify a join token (EdDSA, audience, window, epoch)", 20000, || {
            let rules = JoinRules { session: &session, min_epoch: 0, now: unix_now() };
            black_box(public.verify_join(&good, rules).expect("valid"));
        }),
        support::measure("refuse a forged token", 20000, || {
            let rules = JoinRules { session: &session, min_epoch: 0, now: unix_now() };
            black_box(public.verify_join(&forged, rules).expect_err("forged"));
        }),
        support::measure("parse a join frame", 20000, || {
            black_box(parse_client_frame(&join_frame).expect("parses"));
        }),
        support::measure("refuse a malformed produce frame", 20000, || {
            black_box(parse_client_frame(hostile).expect_err("refused"));
        }),
    ];

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let memory = runtime.block_on(async {
        let before = support::rss_kib();
        let mut config = ServeConfig::local(public.clone());
        config.session = Some((session.clone(), "Tiếp công dân định kỳ".to_owned()));
        let worker = server::start(config).await.expect("worker starts");
        let idle = support::rss_kib();
        let url = worker.ws_url();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);

        let mut joins = Vec::new();
        let mut peers = Vec::new();
        let host_token = token(&key, &session, "thi-xa-my-hao", Role::Probe);
        let started = Instant::now();
        let mut host = PlainPeer::join(&url, &host_token, local).await.expect("host joins");
        let host_media = host.publish().await.expect("host publishes");
        joins.push(started.elapsed());
        for i in 1..POINTS {
            let t = Instant::now();
            let mut peer = PlainPeer::join(&url, &token(&key, &session, &format!("xa-{i:02}"), Role::Probe), local)
                .await
                .expect("point joins");
            peer.publish().await.expect("point publishes");
            peer.consume(host_media.audio).await.expect("consume audio");
            peer.consume(host_media.video).await.expect("consume video");
            joins.push(t.elapsed());
            peers.push(peer);
        }
        // Media for a few seconds so mediasoup's buffers are in use.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            host.send_once(50).await.expect("host sends");
            for p in &mut peers {
                p.send_once(50).await.expect("point sends");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let full = support::rss_kib();
        drop(peers);
        drop(host);
        worker.stop().await.expect("worker stops");
        (before, idle, full, joins)
    });
    let (before, idle, full, joins) = memory;
    stats.push(support::summarize("join, publish audio+video, consume the host (one point)", joins));
    support::print_table(&format!("Media worker ({})", support::machine()), &stats);
    println!("\n### Media worker memory (resident, this process)\n");
    println!("| state | RSS |");
    println!("|---|---:|");
    println!("| before the worker starts | {:.1} MiB |", before as f64 / 1024.0);
    println!("| idle worker (1 mediasoup worker, bound to a session) | {:.1} MiB |", idle as f64 / 1024.0);
    println!(
        "| {POINTS} points (the host and {}) publishing audio+video, the others consuming the host | {:.1} MiB \
         (+{:.1} MiB over idle) |",
        POINTS - 1,
        full as f64 / 1024.0,
        full.saturating_sub(idle) as f64 / 1024.0
    );
}
