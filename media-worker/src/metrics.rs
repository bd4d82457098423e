//! Prometheus metrics, all prefixed `tiepdan_worker_`, on a registry owned by the server.
//!
//! Labels are limited to `session`, `point` (both bounded by the allocation: one session, and the
//! points the operator issued tokens for), `code` (the closed [`ErrorCode`] set), `mode`,
//! `result` (`loaded`/`invalid`) and `layer` ([`LAYERS`]).
//! Series for a session are removed when it is deallocated.

use crate::ids::{PointName, SessionId};
use crate::signaling::protocol::ErrorCode;
use prometheus::{
    CounterVec, Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to register a metric")]
    Register(#[from] prometheus::Error),
    #[error("failed to encode metrics")]
    Encode(#[source] prometheus::Error),
}

/// Every metric of the worker. Cheap to clone (the collectors are reference-counted).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    pub sessions: IntGauge,
    pub connected_points: IntGaugeVec,
    pub producers: IntGaugeVec,
    pub consumers: IntGaugeVec,
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub packets_in: IntCounterVec,
    pub packets_out: IntCounterVec,
    pub loss_percent: GaugeVec,
    pub rtt_ms: GaugeVec,
    pub jitter_ms: GaugeVec,
    pub verified: IntGaugeVec,
    /// Per point and `layer` ([`LAYERS`]): how many of its video consumers forward that layer.
    pub received_layers: IntGaugeVec,
    /// The SFU's estimate of what it can send a point (transport-cc), bits per second.
    pub available_bitrate: GaugeVec,
    /// Video freezes the point's browser counted in what it received.
    pub video_freezes: IntCounterVec,
    pub video_freeze_seconds: CounterVec,
    pub joins: IntCounter,
    pub signaling_errors: IntCounterVec,
    pub mediasoup_cpu_seconds: CounterVec,
    pub mediasoup_workers: IntGauge,
    pub mediasoup_worker_deaths: IntCounter,
    pub draining: IntGauge,
    /// `result` = `loaded` | `invalid`.
    pub tls_reloads: IntCounterVec,
    pub tls_certificate_loaded: IntGauge,
    /// No labels; the series exists only while a certificate is loaded, so an expiry alert
    /// never sees a 0.
    pub tls_certificate_expiry: IntGaugeVec,
}

const SESSION_POINT: &[&str] = &["session", "point"];

/// The `layer` label of `received_video_layers`: a spatial layer (0 lowest), or `none` while a
/// consumer forwards nothing (paused for a hidden tile, or no layer fits the estimate yet).
pub const LAYERS: [&str; 4] = ["0", "1", "2", "none"];

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(format!("tiepdan_worker_{name}"), help);
        let metrics = Self {
            sessions: IntGauge::with_opts(opts("sessions", "Sessions with an open room (0 or 1)."))?,
            connected_points: IntGaugeVec::new(
                opts("connected_points", "Points currently joined over signaling."),
                &["session"],
            )?,
            producers: IntGaugeVec::new(opts("producers", "Open producers."), &["session"])?,
            consumers: IntGaugeVec::new(opts("consumers", "Open consumers."), &["session"])?,
            bytes_in: IntCounterVec::new(
                opts("bytes_in_total", "RTP bytes received from a point (its producers)."),
                SESSION_POINT,
            )?,
            bytes_out: IntCounterVec::new(
                opts("bytes_out_total", "RTP bytes sent to a point (its consumers)."),
                SESSION_POINT,
            )?,
            packets_in: IntCounterVec::new(
                opts("packets_in_total", "RTP packets received from a point."),
                SESSION_POINT,
            )?,
            packets_out: IntCounterVec::new(opts("packets_out_total", "RTP packets sent to a point."), SESSION_POINT)?,
            loss_percent: GaugeVec::new(
                opts("loss_percent", "Worst current packet loss of a point's streams, percent."),
                SESSION_POINT,
            )?,
            rtt_ms: GaugeVec::new(
                opts("rtt_milliseconds", "Worst current round-trip time of a point's streams."),
                SESSION_POINT,
            )?,
            jitter_ms: GaugeVec::new(
                opts("jitter_milliseconds", "Worst current jitter of a point's incoming streams."),
                SESSION_POINT,
            )?,
            verified: IntGaugeVec::new(
                opts("point_verified", "1 once the point passed rehearsal verification."),
                SESSION_POINT,
            )?,
            received_layers: IntGaugeVec::new(
                opts(
                    "received_video_layers",
                    "A point's video consumers by the simulcast layer they forward now (layer=0|1|2|none).",
                ),
                &["session", "point", "layer"],
            )?,
            available_bitrate: GaugeVec::new(
                opts(
                    "available_bitrate_bps",
                    "The SFU's bandwidth estimate towards a point (transport-cc), bits per second.",
                ),
                SESSION_POINT,
            )?,
            video_freezes: IntCounterVec::new(
                opts("video_freezes_total", "Video freezes a point's browser counted in what it received."),
                SESSION_POINT,
            )?,
            video_freeze_seconds: CounterVec::new(
                opts("video_freeze_seconds_total", "How long the pictures a point received stood frozen, seconds."),
                SESSION_POINT,
            )?,
            joins: IntCounter::with_opts(opts("joins_total", "Successful signaling joins."))?,
            signaling_errors: IntCounterVec::new(
                opts("signaling_errors_total", "Errors sent to signaling clients, by code."),
                &["code"],
            )?,
            mediasoup_cpu_seconds: CounterVec::new(
                opts("mediasoup_cpu_seconds_total", "CPU time of the mediasoup worker threads (mode=user|system)."),
                &["mode"],
            )?,
            mediasoup_workers: IntGauge::with_opts(opts("mediasoup_workers", "mediasoup workers alive."))?,
            mediasoup_worker_deaths: IntCounter::with_opts(opts(
                "mediasoup_worker_deaths_total",
                "mediasoup workers that died unexpectedly.",
            ))?,
            draining: IntGauge::with_opts(opts("draining", "1 while the worker is draining."))?,
            tls_reloads: IntCounterVec::new(
                opts(
                    "tls_reloads_total",
                    "TLS certificate loads (result=loaded) and refused new certificate files (result=invalid).",
                ),
                &["result"],
            )?,
            tls_certificate_loaded: IntGauge::with_opts(opts(
                "tls_certificate_loaded",
                "1 while a TLS certificate is served.",
            ))?,
            tls_certificate_expiry: IntGaugeVec::new(
                opts(
                    "tls_certificate_expiry_timestamp_seconds",
                    "notAfter of the served TLS certificate, Unix seconds.",
                ),
                &[],
            )?,
            registry,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), MetricsError> {
        let r = &self.registry;
        r.register(Box::new(self.sessions.clone()))?;
        r.register(Box::new(self.connected_points.clone()))?;
        r.register(Box::new(self.producers.clone()))?;
        r.register(Box::new(self.consumers.clone()))?;
        r.register(Box::new(self.bytes_in.clone()))?;
        r.register(Box::new(self.bytes_out.clone()))?;
        r.register(Box::new(self.packets_in.clone()))?;
        r.register(Box::new(self.packets_out.clone()))?;
        r.register(Box::new(self.loss_percent.clone()))?;
        r.register(Box::new(self.rtt_ms.clone()))?;
        r.register(Box::new(self.jitter_ms.clone()))?;
        r.register(Box::new(self.verified.clone()))?;
        r.register(Box::new(self.received_layers.clone()))?;
        r.register(Box::new(self.available_bitrate.clone()))?;
        r.register(Box::new(self.video_freezes.clone()))?;
        r.register(Box::new(self.video_freeze_seconds.clone()))?;
        r.register(Box::new(self.joins.clone()))?;
        r.register(Box::new(self.signaling_errors.clone()))?;
        r.register(Box::new(self.mediasoup_cpu_seconds.clone()))?;
        r.register(Box::new(self.mediasoup_workers.clone()))?;
        r.register(Box::new(self.mediasoup_worker_deaths.clone()))?;
        r.register(Box::new(self.draining.clone()))?;
        r.register(Box::new(self.tls_reloads.clone()))?;
        r.register(Box::new(self.tls_certificate_loaded.clone()))?;
        r.register(Box::new(self.tls_certificate_expiry.clone()))?;
        Ok(())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).map_err(MetricsError::Encode)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    /// Shows both TLS reload counters at 0 on a worker that serves TLS, so a first refusal is
    /// an increase Prometheus can see.
    pub fn init_tls(&self) {
        for result in ["loaded", "invalid"] {
            self.tls_reloads.with_label_values(&[result]);
        }
    }

    pub fn count_error(&self, code: ErrorCode) {
        self.signaling_errors.with_label_values(&[code.as_str()]).inc();
    }

    /// Drops a point's current-quality gauges when it leaves: "current" has no value then.
    pub fn forget_point_quality(&self, session: &SessionId, point: &PointName) {
        let labels = [session.as_str(), point.as_str()];
        for vec in [&self.loss_percent, &self.rtt_ms, &self.jitter_ms, &self.available_bitrate] {
            let _ = vec.remove_label_values(&labels);
        }
        for layer in LAYERS {
            let _ = self.received_layers.remove_label_values(&[session.as_str(), point.as_str(), layer]);
        }
    }

    /// Drops every series of a deallocated session so label sets do not accumulate.
    pub fn forget_session<'a>(&self, session: &SessionId, points: impl IntoIterator<Item = &'a PointName>) {
        let s = session.as_str();
        for vec in [&self.connected_points, &self.producers, &self.consumers] {
            let _ = vec.remove_label_values(&[s]);
        }
        for point in points {
            let labels = [s, point.as_str()];
            for vec in [&self.bytes_in, &self.bytes_out, &self.packets_in, &self.packets_out] {
                let _ = vec.remove_label_values(&labels);
            }
            for vec in [&self.loss_percent, &self.rtt_ms, &self.jitter_ms, &self.available_bitrate] {
                let _ = vec.remove_label_values(&labels);
            }
            let _ = self.verified.remove_label_values(&labels);
            let _ = self.video_freeze_seconds.remove_label_values(&labels);
            let _ = self.video_freezes.remove_label_values(&labels);
            for layer in LAYERS {
                let _ = self.received_layers.remove_label_values(&[s, point.as_str(), layer]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics_and_forgets_sessions() {
        let metrics = Metrics::new().expect("metrics");
        let session: SessionId = "ns/s".parse().expect("session");
        let point: PointName = "p".parse().expect("point");
        metrics.bytes_in.with_label_values(&[session.as_str(), point.as_str()]).inc_by(10);
        metrics.count_error(ErrorCode::InvalidToken);
        let text = metrics.render().expect("render");
        assert!(text.contains(r#"tiepdan_worker_bytes_in_total{point="p",session="ns/s"} 10"#));
        assert!(text.contains(r#"tiepdan_worker_signaling_errors_total{code="invalid_token"} 1"#));
        metrics.forget_session(&session, [&point]);
        assert!(!metrics.render().expect("render").contains("bytes_in_total{"));
    }
}
