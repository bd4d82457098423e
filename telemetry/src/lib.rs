//! Logs and traces for tiepdan's binaries (the operator and the media worker).
//!
//! ```text
//!  tracing spans/events ─┬─ EnvFilter (RUST_LOG, default info,kube=warn)
//!                        ├─ fmt: text, or JSON lines with the span list (trace_id included)
//!                        └─ OpenTelemetry (when OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set)
//!                              └─ batch processor thread ─ OTLP/HTTP (protobuf, or JSON with
//!                                 OTEL_EXPORTER_OTLP_PROTOCOL=http/json) ─ collector
//! ```
//!
//! Reconcile and signaling spans record their OpenTelemetry trace id in a `trace_id` field, so
//! every JSON log line written inside one can be matched to its trace.
#![forbid(unsafe_code)]

mod error_chain;
pub use error_chain::error_chain;

use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Errors setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to build the OTLP span exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("failed to build the OTLP HTTP client: {0}")]
    HttpClient(String),
    #[error("failed to install the tracing subscriber")]
    Init(#[source] tracing_subscriber::util::TryInitError),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Exporter(_) | Error::HttpClient(_) => "otlp",
            Error::Init(_) => "init",
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Otlp {
    /// Nowhere: no OpenTelemetry layer at all.
    Off,
    /// Where the standard `OTEL_EXPORTER_OTLP_*` environment variables say.
    FromEnv,
    /// This full traces URL (e.g. `http://127.0.0.1:4318/v1/traces`), other settings from the
    /// environment.
    Endpoint(String),
}

impl Otlp {
    /// [`Otlp::FromEnv`] when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// is set and not empty, otherwise [`Otlp::Off`]: exporting is opt-in.
    pub fn from_env() -> Self {
        let set = |v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty());
        if set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Otlp::FromEnv
        } else {
            Otlp::Off
        }
    }
}

/// The installed telemetry. Dropping it flushes and stops the span exporter.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// What a binary is called in traces (`service.name`) and which of its targets log at info.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    pub name: &'static str,
    /// The `RUST_LOG` default when it is unset.
    pub default_filter: &'static str,
}

impl Telemetry {
    /// Installs the global subscriber: logs in `format` to `writer`, spans to `otlp`.
    pub fn init<W>(service: Service, format: LogFormat, otlp: &Otlp, writer: W) -> Result<Self, Error>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(service.default_filter));
        let provider = match otlp {
            Otlp::Off => None,
            Otlp::FromEnv | Otlp::Endpoint(_) => Some(provider(service.name, otlp)?),
        };
        let logs = match format {
            LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(writer).boxed(),
            LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
        };
        let traces = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.name)));
        tracing_subscriber::registry().with(filter).with(logs).with(traces).try_init().map_err(Error::Init)?;
        Ok(Self { provider })
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now. Blocks: call it off the async runtime's threads.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "failed to flush spans");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "failed to stop the span exporter");
            }
        }
    }
}

fn provider(service: &'static str, otlp: &Otlp) -> Result<SdkTracerProvider, Error> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http().with_http_client(BlockingClient::new()?);
    if let Otlp::Endpoint(url) = otlp {
        builder = builder.with_endpoint(url.clone());
    }
    let exporter = builder.build().map_err(Error::Exporter)?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

/// The OpenTelemetry trace id of `span`, when spans are exported.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let id = span.context().span().span_context().trace_id();
    (id != TraceId::INVALID).then(|| id.to_string())
}

/// OTLP over the workspace's reqwest, blocking: the SDK's batch processor exports from its own
/// thread with a plain executor, so the client must not need an async runtime. (The exporter's
/// built-in reqwest client would add a second reqwest version to the build.)
#[derive(Debug)]
struct BlockingClient(reqwest::blocking::Client);

impl BlockingClient {
    fn new() -> Result<Self, Error> {
        // reqwest's blocking client runs its own runtime; build it off any async runtime thread.
        std::thread::spawn(|| reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(10)).build())
            .join()
            .map_err(|_| Error::HttpClient("the thread building it panicked".to_owned()))?
            .map(Self)
            .map_err(|e| Error::HttpClient(e.to_string()))
    }
}

#[async_trait::async_trait]
impl HttpClient for BlockingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let response = self.0.execute(request.try_into()?)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut out = Response::builder().status(status).body(response.bytes()?)?;
        *out.headers_mut() = headers;
        Ok(out)
    }
}
