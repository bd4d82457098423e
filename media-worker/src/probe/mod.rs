//! The synthetic probe: join a worker with a probe token (role `probe`: only probes get plain RTP
//! transports, and a probe is never a point), publish synthetic audio and video, consume our own
//! producers back through the SFU, and measure the loop.
//!
//! ```text
//! UDP send socket ─RTP─> [send PlainTransport] ─ Router ─ [recv PlainTransport] ─RTP─> UDP recv socket
//!          stamp(seq, send time) ─────────────────────────────────────> loss, jitter, latency
//! ```
//!
//! [`run_probe`] is the library entry point (tests, a future benchmark); the `probe` subcommand
//! prints its report. [`camera`] makes a probe peer send like a console's simulcast camera, for
//! benchmarks that fill a session with synthetic offices.

pub mod camera;
pub mod client;
pub mod measure;
pub mod peer;
pub mod rtp;
pub mod tls;

use measure::{percentile, StreamReport};
use mediasoup::prelude::MediaKind;
use peer::{PeerError, PlainPeer};
use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// How long to wait for in-flight packets after the last one was sent.
const STRAGGLER_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// `ws://host:port/v1/ws`, or `wss://` with [`Self::tls`].
    pub url: String,
    pub token: String,
    pub duration: Duration,
    /// Packets per second for each of the audio and video streams.
    pub rate_pps: u32,
    pub local_ip: IpAddr,
    /// What to trust for a `wss://` URL.
    pub tls: Option<tls::ClientTls>,
}

impl ProbeOptions {
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            duration: Duration::from_secs(5),
            rate_pps: 50,
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("--rate-pps must be between 1 and 10000")]
    Rate,
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// The probe's findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    pub point: String,
    pub seconds: f64,
    pub rate_pps: u32,
    pub audio: StreamReport,
    pub video: StreamReport,
    /// Over both streams.
    pub loss_percent: f64,
    /// The larger of the two streams' jitter.
    pub jitter_ms: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// Runs the probe against a worker.
pub async fn run_probe(options: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    if options.rate_pps == 0 || options.rate_pps > 10_000 {
        return Err(ProbeError::Rate);
    }
    let mut peer = PlainPeer::join_with(&options.url, &options.token, options.local_ip, options.tls.as_ref()).await?;
    let published = peer.publish().await?;
    peer.consume(published.audio).await?;
    peer.consume(published.video).await?;

    let packets = (options.duration.as_secs_f64() * f64::from(options.rate_pps)).ceil() as u64;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(options.rate_pps)));
    let started = tokio::time::Instant::now();
    for _ in 0..packets.max(1) {
        ticker.tick().await;
        peer.send_once(options.rate_pps).await?;
    }
    let seconds = started.elapsed().as_secs_f64();

    let origin = peer.origin;
    let (sent_audio, sent_video) = (peer.sent(MediaKind::Audio), peer.sent(MediaKind::Video));
    peer.inbox()
        .wait_until(STRAGGLER_WAIT, |a| {
            a.received(origin, MediaKind::Audio) >= sent_audio && a.received(origin, MediaKind::Video) >= sent_video
        })
        .await;
    let arrivals = peer.inbox().snapshot();
    let point = peer.point.to_string();
    peer.leave().await?;

    let stream = |kind, sent| arrivals.stream(origin, kind).cloned().unwrap_or_default().report(sent);
    let audio = stream(MediaKind::Audio, sent_audio);
    let video = stream(MediaKind::Video, sent_video);
    let latencies = arrivals.latencies_from(origin);
    let sent = audio.sent + video.sent;
    let lost = audio.lost + video.lost;
    Ok(ProbeReport {
        point,
        seconds,
        rate_pps: options.rate_pps,
        loss_percent: if sent == 0 { 0.0 } else { lost as f64 * 100.0 / sent as f64 },
        jitter_ms: audio.jitter_ms.max(video.jitter_ms),
        latency_p50_ms: percentile(&latencies, 50.0).map(|ns| ns as f64 / 1e6),
        latency_p99_ms: percentile(&latencies, 99.0).map(|ns| ns as f64 / 1e6),
        audio,
        video,
    })
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} ms"))
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "probe as point {} for {:.1} s at {} packets/s per stream",
            self.point, self.seconds, self.rate_pps
        )?;
        for (name, s) in [("audio", &self.audio), ("video", &self.video)] {
            writeln!(
                f,
                "  {name}: sent {} received {} lost {} ({:.2}%), jitter {:.3} ms, latency p50 {} p99 {}",
                s.sent,
                s.received,
                s.lost,
                s.loss_percent,
                s.jitter_ms,
                ms(s.latency_p50_ms),
                ms(s.latency_p99_ms)
            )?;
        }
        write!(
            f,
            "  overall: loss {:.2}%, jitter {:.3} ms, one-way latency p50 {} p99 {}",
            self.loss_percent,
            self.jitter_ms,
            ms(self.latency_p50_ms),
            ms(self.latency_p99_ms)
        )
    }
}
