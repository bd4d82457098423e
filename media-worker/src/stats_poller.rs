//! Polls mediasoup statistics on the media thread (the stats futures are `!Send`), turns them
//! into per-point [`MediaSample`]s for verification, and updates the traffic metrics.

use crate::cpu::CpuTracker;
use crate::ids::PointName;
use crate::loss_cap;
use crate::metrics::{Metrics, LAYERS};
use crate::registry::Registry;
use crate::room::{MediaTransport, MemberMedia};
use crate::sfu_evidence::{Evidence, Seen};
use crate::verification::MediaSample;
use mediasoup::data_structures::{DtlsState, TransportTuple};
use mediasoup::prelude::TransportGeneric;
use mediasoup::prelude::{ConsumerId, MediaKind, ProducerId};
use mediasoup::rtp_parameters::RtpCodecParameters;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

/// Cumulative counters of one RTP stream at the previous poll.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamCounters {
    pub bytes: u64,
    pub packets: u64,
    pub lost: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StreamKey {
    Producer(ProducerId),
    Consumer(ConsumerId),
}

/// Growth of a stream's counters since the previous poll.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamDelta {
    pub bytes: u64,
    pub packets: u64,
    pub lost: u64,
}

impl StreamDelta {
    pub fn between(previous: StreamCounters, now: StreamCounters) -> Self {
        Self {
            bytes: now.bytes.saturating_sub(previous.bytes),
            packets: now.packets.saturating_sub(previous.packets),
            lost: now.lost.saturating_sub(previous.lost),
        }
    }

    pub fn flowing(&self) -> bool {
        self.bytes > 0
    }

    /// Loss over the interval, percent; `None` when nothing was expected.
    pub fn loss_percent(&self) -> Option<f64> {
        let expected = self.packets + self.lost;
        (expected > 0).then(|| self.lost as f64 * 100.0 / expected as f64)
    }
}

/// Folds per-stream observations into one sample; "worst of" for the quality figures.
#[derive(Debug, Default)]
pub struct SampleBuilder {
    sample: MediaSample,
    bytes_sent: u64,
    bytes_received: u64,
    packets_received: u64,
    lost_received: u64,
}

/// Packets sent to a point in a poll below which its loss share is not taken (see `loss_cap`).
const MIN_PACKETS_FOR_LOSS: u64 = 50;

/// Kilobits per second of `bytes` over `elapsed`; `None` over no time (a first poll has no
/// previous counters to compare with).
fn kbps(bytes: u64, elapsed: Duration) -> Option<u32> {
    let secs = elapsed.as_secs_f64();
    (secs > 0.0).then(|| (bytes as f64 * 8.0 / 1000.0 / secs).round().min(f64::from(u32::MAX)) as u32)
}

fn worst(current: Option<f64>, new: Option<f64>) -> Option<f64> {
    match (current, new) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl SampleBuilder {
    pub fn connected(&mut self, connected: bool) {
        self.sample.connected |= connected;
    }

    pub fn sent(&mut self, kind: MediaKind, delta: StreamDelta, rtt_ms: Option<f64>, jitter_ms: Option<f64>) {
        if delta.flowing() {
            match kind {
                MediaKind::Audio => self.sample.sends_audio = true,
                MediaKind::Video => self.sample.sends_video = true,
            }
        }
        self.bytes_sent += delta.bytes;
        self.quality(delta, rtt_ms, jitter_ms);
    }

    /// `from_other` is false for a point consuming its own producer (self-test loopback), which
    /// must not count as receiving the others.
    pub fn received(&mut self, kind: MediaKind, delta: StreamDelta, from_other: bool, rtt_ms: Option<f64>) {
        if delta.flowing() && from_other {
            match kind {
                MediaKind::Audio => self.sample.receives_audio = true,
                MediaKind::Video => self.sample.receives_video = true,
            }
        }
        self.bytes_received += delta.bytes;
        self.packets_received += delta.packets;
        self.lost_received += delta.lost;
        self.quality(delta, rtt_ms, None);
    }

    /// What the SFU saw of one producer: voice from the audio level observer, and for video a
    /// keyframe and a stream score above zero (mediasoup scores 0 a stream it cannot use).
    pub fn evidence(&mut self, kind: MediaKind, seen: Seen, score: u8) {
        match kind {
            MediaKind::Audio => self.sample.audio_heard |= seen.voice,
            MediaKind::Video => self.sample.video_arrives |= seen.keyframe && score > 0,
        }
    }

    fn quality(&mut self, delta: StreamDelta, rtt_ms: Option<f64>, jitter_ms: Option<f64>) {
        self.sample.loss_percent = worst(self.sample.loss_percent, delta.loss_percent());
        self.sample.rtt_ms = worst(self.sample.rtt_ms, rtt_ms);
        self.sample.jitter_ms = worst(self.sample.jitter_ms, jitter_ms);
    }

    /// What the SFU forwards the point: the highest layer among its video consumers and its
    /// bandwidth estimate in bits per second.
    pub fn reception(&mut self, layer: Option<u8>, estimate_bps: Option<u32>) {
        self.sample.received_layer = layer;
        self.sample.estimate_kbps = estimate_bps.map(|bps| bps.div_ceil(1000));
    }

    /// The sample, with the bitrates over `elapsed` (the time since the previous poll's
    /// counters; zero on the first poll).
    pub fn build(mut self, elapsed: Duration) -> MediaSample {
        self.sample.send_kbps = kbps(self.bytes_sent, elapsed);
        self.sample.receive_kbps = kbps(self.bytes_received, elapsed);
        // Lost over sent: the receiver's reports count losses among what the SFU sent. Over too
        // few packets (a layer switch waiting for its key frame) a share says nothing.
        self.sample.receive_loss_percent = (self.packets_received >= MIN_PACKETS_FOR_LOSS)
            .then(|| (self.lost_received as f64 * 100.0 / self.packets_received as f64).min(100.0));
        self.sample
    }
}

/// Runs until the registry is gone. Must be spawned on the media thread.
pub async fn poll_forever(registry: Weak<Registry>, metrics: Metrics, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: HashMap<StreamKey, StreamCounters> = HashMap::new();
    // When `previous` was read: bitrates are the counters' growth over the time since.
    let mut previous_at: Option<Instant> = None;
    // Each point's loss-based cap on what it is sent, bits per second (see `loss_cap`).
    let mut loss_caps: HashMap<PointName, loss_cap::Cap> = HashMap::new();
    let mut cpu = CpuTracker::default();
    loop {
        ticker.tick().await;
        let cpu_delta = cpu.sample();
        metrics.mediasoup_cpu_seconds.with_label_values(&["user"]).inc_by(cpu_delta.user_seconds);
        metrics.mediasoup_cpu_seconds.with_label_values(&["system"]).inc_by(cpu_delta.system_seconds);

        let Some(registry_now) = registry.upgrade() else {
            return;
        };
        let Some((generation, room)) = registry_now.live_room() else {
            // No room: nobody is connected. Zero the session's gauges rather than leaving the
            // last room's values behind.
            previous.clear();
            previous_at = None;
            loss_caps.clear();
            metrics.sessions.set(0);
            if let Some(allocation) = registry_now.allocation() {
                let session = [allocation.session.as_str()];
                metrics.producers.with_label_values(&session).set(0);
                metrics.consumers.with_label_values(&session).set(0);
                metrics.connected_points.with_label_values(&session).set(0);
            }
            continue;
        };
        metrics.sessions.set(1);
        drop(registry_now);
        let session = room.session().clone();
        let members = room.media_snapshot();
        let evidence = room.evidence().clone();

        let mut current = HashMap::new();
        let polled_at = Instant::now();
        let elapsed = previous_at.map_or(Duration::ZERO, |at| polled_at.duration_since(at));
        let mut samples = Vec::with_capacity(members.len());
        let (mut producers, mut consumers) = (0_i64, 0_i64);
        for member in members {
            producers += i64::try_from(member.producers.len()).unwrap_or(0);
            consumers += i64::try_from(member.consumers.len()).unwrap_or(0);
            let mut sample =
                sample_member(&member, &evidence, &previous, &mut current, &metrics, session.as_str()).await;
            let (layer, estimate) = publish_reception(&member, &metrics, session.as_str()).await;
            sample.reception(layer, estimate);
            let sample = sample.build(elapsed);
            let cap = loss_cap::next(
                loss_caps.get(&member.point).copied(),
                sample.receive_loss_percent,
                sample.receive_kbps,
                estimate,
            );
            match cap {
                Some(cap) => loss_caps.insert(member.point.clone(), cap),
                None => loss_caps.remove(&member.point),
            };
            if let Err(error) = room.fit_to_estimate(&member.point, loss_cap::apply(estimate, cap)).await {
                tracing::debug!(point = %member.point, error = %error, "failed to fit the layers to the estimate");
            }
            samples.push((member.point, sample));
        }
        // Held for the poll only: the room closes when its last member leaves, one poll later.
        drop(room);
        previous = current;
        previous_at = Some(polled_at);
        metrics.producers.with_label_values(&[session.as_str()]).set(producers);
        metrics.consumers.with_label_values(&[session.as_str()]).set(consumers);
        for (point, sample) in &samples {
            publish_quality(&metrics, session.as_str(), point, sample);
        }
        if let Some(registry) = registry.upgrade() {
            registry.record_samples(generation, samples, Instant::now(), jiff::Timestamp::now());
        }
    }
}

fn publish_quality(metrics: &Metrics, session: &str, point: &PointName, sample: &MediaSample) {
    let labels = [session, point.as_str()];
    metrics.loss_percent.with_label_values(&labels).set(sample.loss_percent.unwrap_or(0.0));
    metrics.rtt_ms.with_label_values(&labels).set(sample.rtt_ms.unwrap_or(0.0));
    metrics.jitter_ms.with_label_values(&labels).set(sample.jitter_ms.unwrap_or(0.0));
}

/// Publishes the layers a point receives and the SFU's bandwidth estimate towards it, and returns
/// the highest layer forwarded and the estimate (bits per second).
async fn publish_reception(member: &MemberMedia, metrics: &Metrics, session: &str) -> (Option<u8>, Option<u32>) {
    let mut layers = LayerCounts::default();
    let mut highest = None;
    for entry in member.consumers.iter().filter(|c| c.consumer.kind() == MediaKind::Video) {
        let consumer = &entry.consumer;
        let forwarding = !consumer.paused() && !consumer.producer_paused();
        let layer = consumer.current_layers().filter(|_| forwarding).map(|l| l.spatial_layer);
        highest = highest.max(layer);
        layers.add(layer);
    }
    for (layer, count) in LAYERS.iter().zip(layers.0) {
        metrics.received_layers.with_label_values(&[session, member.point.as_str(), layer]).set(count);
    }
    let mut estimate = None;
    for transport in &member.receiving {
        if let MediaTransport::WebRtc(t) = transport {
            if let Ok(stats) = t.get_stats().await {
                estimate = stats.iter().filter_map(|s| s.available_outgoing_bitrate).max().or(estimate);
            }
        }
    }
    let labels = [session, member.point.as_str()];
    match estimate {
        Some(bps) => metrics.available_bitrate.with_label_values(&labels).set(f64::from(bps)),
        None => {
            let _ = metrics.available_bitrate.remove_label_values(&labels);
        }
    }
    (highest, estimate)
}

/// Video consumers per [`LAYERS`] entry: spatial layers 0, 1, 2 (higher ones counted as 2) and
/// `none` (forwarding nothing).
#[derive(Debug, Default, PartialEq, Eq)]
struct LayerCounts([i64; 4]);

impl LayerCounts {
    fn add(&mut self, spatial: Option<u8>) {
        let index = spatial.map_or(3, |s| usize::from(s.min(2)));
        self.0[index] += 1;
    }
}

/// DTLS is up (WebRTC) or the remote address is known (plain RTP). Read from statistics because
/// mediasoup 0.8.5 fails to parse the plain transport's `tuple` notification (comedia), so
/// `PlainTransport::tuple()` never learns the remote side that way.
async fn transport_connected(transport: &MediaTransport) -> bool {
    match transport {
        MediaTransport::WebRtc(t) => match t.get_stats().await {
            Ok(stats) => stats.iter().any(|s| s.dtls_state == DtlsState::Connected),
            Err(_) => t.dtls_state() == DtlsState::Connected,
        },
        MediaTransport::Plain(t) => match t.get_stats().await {
            Ok(stats) => stats.iter().any(|s| matches!(s.tuple, Some(TransportTuple::WithRemote { .. }))),
            Err(_) => matches!(t.tuple(), TransportTuple::WithRemote { .. }),
        },
    }
}

fn to_u64(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

async fn sample_member(
    member: &MemberMedia,
    evidence: &Evidence,
    previous: &HashMap<StreamKey, StreamCounters>,
    current: &mut HashMap<StreamKey, StreamCounters>,
    metrics: &Metrics,
    session: &str,
) -> SampleBuilder {
    let labels = [session, member.point.as_str()];
    let mut builder = SampleBuilder::default();
    for transport in &member.transports {
        builder.connected(transport_connected(transport).await);
    }

    for producer in &member.producers {
        let Ok(stats) = producer.get_stats().await else {
            continue;
        };
        let clock_rate = producer
            .rtp_parameters()
            .codecs
            .first()
            .map(|codec| match codec {
                RtpCodecParameters::Audio { clock_rate, .. } | RtpCodecParameters::Video { clock_rate, .. } => {
                    clock_rate.get()
                }
            })
            .unwrap_or(90_000);
        let mut counters = StreamCounters::default();
        let (mut rtt, mut jitter) = (None, None);
        let score = stats.iter().map(|s| s.score).max().unwrap_or(0);
        builder.evidence(producer.kind(), evidence.seen(&producer.id()), score);
        for stat in &stats {
            counters.bytes += to_u64(stat.byte_count);
            counters.packets += to_u64(stat.packet_count);
            counters.lost += u64::from(stat.packets_lost);
            rtt = worst(rtt, stat.round_trip_time.map(f64::from).filter(|v| *v > 0.0));
            jitter = worst(jitter, Some(f64::from(stat.jitter) * 1000.0 / f64::from(clock_rate)));
        }
        let key = StreamKey::Producer(producer.id());
        let delta = StreamDelta::between(previous.get(&key).copied().unwrap_or_default(), counters);
        current.insert(key, counters);
        metrics.bytes_in.with_label_values(&labels).inc_by(delta.bytes);
        metrics.packets_in.with_label_values(&labels).inc_by(delta.packets);
        builder.sent(producer.kind(), delta, rtt, jitter);
    }

    for entry in &member.consumers {
        let consumer = &entry.consumer;
        let Ok(stats) = consumer.get_stats().await else {
            continue;
        };
        let stat = stats.consumer_stats();
        let counters = StreamCounters {
            bytes: to_u64(stat.byte_count),
            packets: to_u64(stat.packet_count),
            lost: u64::from(stat.packets_lost),
        };
        let key = StreamKey::Consumer(consumer.id());
        let delta = StreamDelta::between(previous.get(&key).copied().unwrap_or_default(), counters);
        current.insert(key, counters);
        metrics.bytes_out.with_label_values(&labels).inc_by(delta.bytes);
        metrics.packets_out.with_label_values(&labels).inc_by(delta.packets);
        let rtt = stat.round_trip_time.map(f64::from).filter(|v| *v > 0.0);
        builder.received(consumer.kind(), delta, entry.producer_point != member.point, rtt);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(bytes: u64, packets: u64, lost: u64) -> StreamDelta {
        StreamDelta { bytes, packets, lost }
    }

    #[test]
    fn layers_are_counted_in_a_bounded_set() {
        let mut counts = LayerCounts::default();
        for spatial in [Some(0), Some(2), Some(7), None, Some(1), None] {
            counts.add(spatial);
        }
        assert_eq!(counts, LayerCounts([1, 1, 2, 2]));
    }

    #[test]
    fn deltas_survive_counter_resets() {
        let before = StreamCounters { bytes: 100, packets: 10, lost: 1 };
        let after = StreamCounters { bytes: 50, packets: 5, lost: 0 };
        assert_eq!(StreamDelta::between(before, after), StreamDelta::default());
    }

    #[test]
    fn loss_is_lost_over_expected() {
        assert_eq!(delta(1, 99, 1).loss_percent(), Some(1.0));
        assert_eq!(delta(0, 0, 0).loss_percent(), None);
    }

    #[test]
    fn own_loopback_does_not_count_as_receiving_others() {
        let mut builder = SampleBuilder::default();
        builder.sent(MediaKind::Audio, delta(10, 1, 0), None, Some(2.0));
        builder.received(MediaKind::Audio, delta(10, 1, 0), false, None);
        builder.received(MediaKind::Video, delta(10, 1, 0), true, Some(20.0));
        let sample = builder.build(Duration::ZERO);
        assert!(sample.sends_audio && !sample.sends_video);
        assert!(!sample.receives_audio && sample.receives_video);
        assert_eq!(sample.rtt_ms, Some(20.0));
        assert_eq!(sample.jitter_ms, Some(2.0));
        assert_eq!(sample.loss_percent, Some(0.0));
    }

    #[test]
    fn the_sfu_vouches_for_voice_and_for_keyframes_with_a_score() {
        let seen = |voice, keyframe| Seen { voice, keyframe };
        // (kind, seen, score, audio heard, video arrives)
        let table = [
            (MediaKind::Audio, seen(true, false), 0, true, false),
            (MediaKind::Audio, seen(false, false), 10, false, false),
            (MediaKind::Video, seen(false, true), 10, false, true),
            (MediaKind::Video, seen(false, true), 0, false, false),
            (MediaKind::Video, seen(true, false), 10, false, false),
        ];
        for (kind, seen, score, heard, arrives) in table {
            let mut builder = SampleBuilder::default();
            builder.evidence(kind, seen, score);
            let sample = builder.build(Duration::ZERO);
            assert_eq!((sample.audio_heard, sample.video_arrives), (heard, arrives), "{kind:?} {seen:?} {score}");
        }
    }

    #[test]
    fn quality_is_the_worst_stream() {
        let mut builder = SampleBuilder::default();
        builder.sent(MediaKind::Video, delta(10, 90, 10), Some(30.0), None);
        builder.received(MediaKind::Video, delta(10, 99, 1), true, Some(80.0));
        let sample = builder.build(Duration::ZERO);
        assert_eq!(sample.loss_percent, Some(10.0));
        assert_eq!(sample.rtt_ms, Some(80.0));
    }

    #[test]
    fn bitrates_are_the_bytes_of_every_stream_over_the_poll() {
        let mut builder = SampleBuilder::default();
        builder.sent(MediaKind::Audio, delta(4_000, 40, 0), None, None);
        builder.sent(MediaKind::Video, delta(96_000, 90, 0), None, None);
        builder.received(MediaKind::Video, delta(250_000, 200, 0), true, None);
        builder.reception(Some(1), Some(1_234_567));
        let sample = builder.build(Duration::from_secs(2));
        // (4 000 + 96 000) B × 8 / 2 s = 400 kbit/s; 250 000 B × 8 / 2 s = 1000 kbit/s.
        assert_eq!((sample.send_kbps, sample.receive_kbps), (Some(400), Some(1000)));
        assert_eq!((sample.received_layer, sample.estimate_kbps), (Some(1), Some(1235)));
        // The first poll has no interval to divide by: no bitrate rather than a wrong one.
        let first = SampleBuilder::default().build(Duration::ZERO);
        assert_eq!((first.send_kbps, first.receive_kbps), (None, None));
    }
}
