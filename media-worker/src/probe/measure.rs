//! What arrived, and what that says about the path: loss, RFC 3550 jitter, one-way latency.
//!
//! Sender and receiver share this process's monotonic clock, so `arrival - send` is the true
//! one-way latency through the SFU (plus the local UDP stack).

use super::rtp::Stamp;
use mediasoup::prelude::MediaKind;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;
use std::time::Instant;

/// Nanoseconds on a monotonic clock shared by every probe peer in the process.
pub fn clock_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Arrivals of one (origin, kind) stream.
#[derive(Debug, Default, Clone)]
pub struct StreamArrivals {
    seen: HashSet<u32>,
    pub duplicates: u64,
    latencies_ns: Vec<u64>,
    jitter: JitterEstimator,
}

impl StreamArrivals {
    pub fn record(&mut self, seq: u32, sent_ns: u64, arrived_ns: u64) {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return;
        }
        let transit = arrived_ns.saturating_sub(sent_ns);
        self.latencies_ns.push(transit);
        self.jitter.update(transit);
    }

    pub fn received(&self) -> u64 {
        self.seen.len() as u64
    }

    /// Summarises against the number of packets the sender sent.
    pub fn report(&self, sent: u64) -> StreamReport {
        let received = self.received();
        let lost = sent.saturating_sub(received);
        let mut sorted = self.latencies_ns.clone();
        sorted.sort_unstable();
        StreamReport {
            sent,
            received,
            lost,
            loss_percent: if sent == 0 { 0.0 } else { lost as f64 * 100.0 / sent as f64 },
            jitter_ms: self.jitter.value_ns() / 1e6,
            latency_p50_ms: percentile(&sorted, 50.0).map(ns_to_ms),
            latency_p99_ms: percentile(&sorted, 99.0).map(ns_to_ms),
        }
    }
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Interarrival jitter, RFC 3550 §6.4.1: J += (|D| - J) / 16, with D the change in transit time
/// between consecutive arrivals. Computed in nanoseconds rather than RTP units.
#[derive(Debug, Default, Clone, Copy)]
pub struct JitterEstimator {
    last_transit: Option<u64>,
    jitter_ns: f64,
}

impl JitterEstimator {
    pub fn update(&mut self, transit_ns: u64) {
        if let Some(last) = self.last_transit {
            let d = transit_ns.abs_diff(last) as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit_ns);
    }

    pub fn value_ns(&self) -> f64 {
        self.jitter_ns
    }
}

/// Everything received by one peer, keyed by sender and kind.
#[derive(Debug, Default, Clone)]
pub struct Arrivals {
    streams: BTreeMap<(u32, u8), StreamArrivals>,
}

fn kind_key(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

impl Arrivals {
    pub fn record(&mut self, stamp: Stamp, arrived_ns: u64) {
        self.streams.entry((stamp.origin, kind_key(stamp.kind))).or_default().record(
            stamp.seq,
            stamp.sent_ns,
            arrived_ns,
        );
    }

    pub fn stream(&self, origin: u32, kind: MediaKind) -> Option<&StreamArrivals> {
        self.streams.get(&(origin, kind_key(kind)))
    }

    pub fn received(&self, origin: u32, kind: MediaKind) -> u64 {
        self.stream(origin, kind).map_or(0, StreamArrivals::received)
    }

    /// Latencies of all streams from `origin`, for overall percentiles.
    pub fn latencies_from(&self, origin: u32) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .streams
            .iter()
            .filter(|((o, _), _)| *o == origin)
            .flat_map(|(_, s)| s.latencies_ns.iter().copied())
            .collect();
        all.sort_unstable();
        all
    }
}

/// Figures for one stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamReport {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn constant_transit_has_no_jitter() {
        let mut j = JitterEstimator::default();
        for _ in 0..10 {
            j.update(5_000_000);
        }
        assert_eq!(j.value_ns(), 0.0);
    }

    #[test]
    fn jitter_follows_rfc_3550_smoothing() {
        let mut j = JitterEstimator::default();
        j.update(1_000);
        j.update(17_000);
        assert_eq!(j.value_ns(), 1_000.0);
    }

    #[test]
    fn loss_and_duplicates_are_counted() {
        let mut s = StreamArrivals::default();
        s.record(0, 0, 1_000_000);
        s.record(1, 0, 2_000_000);
        s.record(1, 0, 2_000_000);
        let report = s.report(4);
        assert_eq!((report.received, report.lost), (2, 2));
        assert_eq!(report.loss_percent, 50.0);
        assert_eq!(s.duplicates, 1);
        assert_eq!(report.latency_p50_ms, Some(1.0));
    }
}
