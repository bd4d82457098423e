//! The operator's own HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process
//! runs) and `/readyz` (the API server answered for every watched kind, so the CRDs are
//! installed and RBAC lets the operator read them; a standby replica that does not hold the
//! Lease is ready too, as it can take over at once).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

/// Errors serving the endpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Bind(..) => "bind",
            Error::Serve(_) => "serve",
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

/// The router, for tests and [`serve`].
pub fn router(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready })
}

/// Serves the endpoints on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Bind(addr, e))?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(metrics, ready)).with_graceful_shutdown(shutdown).await.map_err(Error::Serve)
}

async fn render_metrics(State(s): State<AppState>) -> impl IntoResponse {
    match s.metrics.render() {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, category = e.category(), "failed to render metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the API server has not answered for every watched kind yet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_readiness_and_metrics_are_served() {
        let (metrics, ready) = (Arc::new(Metrics::new()), Arc::new(AtomicBool::new(false)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(metrics, ready.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let get = |path: &str| reqwest::get(format!("{base}{path}"));

        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503, "not ready before the API server answered");
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let text = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(text.contains("tiepdan_operator_sessions{phase=\"Live\"} 0"), "{text}");
        server.abort();
    }
}
