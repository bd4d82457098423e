//! Log output (JSON lines for the cluster, text for people) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, signaling spans over OTLP: the shared
//! `tiepdan-telemetry` set-up. mediasoup logs through the `log` crate; `tracing-subscriber`
//! forwards those records too.

use crate::config::LogFormat;
use tiepdan_telemetry::{Otlp, Service, Telemetry};

/// How the worker appears in logs and traces. `RUST_LOG` overrides the default `info` level.
pub const SERVICE: Service = Service { name: "tiepdan-media-worker", default_filter: "info" };

/// Installs the global subscriber; keep the result alive until exit (dropping it flushes spans).
pub fn init(format: LogFormat) -> Result<Telemetry, tiepdan_telemetry::Error> {
    let format = match format {
        LogFormat::Json => tiepdan_telemetry::LogFormat::Json,
        LogFormat::Text => tiepdan_telemetry::LogFormat::Text,
    };
    Telemetry::init(SERVICE, format, &Otlp::from_env(), std::io::stderr)
}
