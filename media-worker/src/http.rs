//! The HTTP surface from `docs/worker-contract.md`: health, readiness, metrics, status, the
//! operator's allocation calls and the WebSocket upgrade; plus the browser console
//! ([`crate::console`]).
//!
//! Two surfaces, served together by [`router`] or on two listeners:
//!
//! ```text
//! admin (plain HTTP, cluster-internal):  /healthz /readyz /metrics /v1/status /v1/allocation
//! signaling (HTTPS/WSS, for the points): /healthz / /join /assets/* /v1/join-check /v1/ws
//! ```
//!
//! Split, the admin listener answers signaling paths with 421 `tls_required`: a browser or
//! client sent there by a stale link learns where to go instead of getting a 404.

use crate::admin_auth::AdminAuth;
use crate::config::{AnnouncedAddress, AnnouncedStatus};
use crate::metrics::Metrics;
use crate::registry::{Allocation, AllocationError, Registry};
use crate::signaling::session::{self, SessionContext, HARD_FRAME_LIMIT};
use crate::tls::CertificateStore;
use crate::tokens::unix_now;
use crate::verification::WorkerStatus;
use crate::workers::{WorkerDeath, WorkerHealth};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::watch;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub health: Arc<WorkerHealth>,
    pub stop: watch::Receiver<bool>,
    /// The served certificate, when the worker serves TLS (for `/v1/status`).
    pub tls: Option<Arc<CertificateStore>>,
    /// Who may call the admin endpoints.
    pub admin: Arc<AdminAuth>,
}

/// Both surfaces on one listener (no `--signaling-listen`).
pub fn router(state: AppState) -> Router {
    admin_routes().merge(signaling_routes()).with_state(state)
}

/// The admin surface, for the plain listener beside a TLS signaling listener on
/// `signaling_port`.
pub fn admin_router(state: AppState, signaling_port: u16) -> Router {
    // The signaling routes themselves, so the 421 covers exactly the paths served over TLS; the
    // layer answers before any handler (or WebSocket upgrade) runs.
    let refused = signaling_routes().route_layer(middleware::from_fn_with_state(signaling_port, tls_required));
    admin_routes().merge(refused).with_state(state)
}

/// The signaling surface, for the TLS listener.
pub fn signaling_router(state: AppState) -> Router {
    signaling_routes().route("/healthz", get(healthz)).with_state(state)
}

fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/allocation", get(get_allocation).put(put_allocation).delete(delete_allocation))
}

fn signaling_routes() -> Router<AppState> {
    Router::new().route("/v1/ws", get(websocket)).merge(crate::console::routes())
}

async fn tls_required(State(signaling_port): State<u16>, _request: Request, _next: Next) -> Response {
    api_error(
        StatusCode::MISDIRECTED_REQUEST,
        "tls_required",
        format!("signaling is served over HTTPS/WSS on port {signaling_port}"),
    )
}

/// Error body of the admin and status endpoints: `{"code", "message"}` like signaling errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(ApiError { code: code.to_owned(), message: message.into() })).into_response()
}

/// Liveness. A dead mediasoup worker is never replaced, so only a restart of the process heals
/// it; answering 200 here while `/readyz` says 503 would leave the pod unready forever.
/// Draining is not a fault and keeps this at 200.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.health.death() {
        Some(death) => worker_died(death),
        None => (StatusCode::OK, "ok\n").into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.registry.is_draining() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "draining", "the worker is draining");
    }
    if let Some(death) = state.health.death() {
        return worker_died(death);
    }
    (StatusCode::OK, "ready\n").into_response()
}

fn worker_died(death: &WorkerDeath) -> Response {
    api_error(StatusCode::SERVICE_UNAVAILABLE, "mediasoup_worker_died", format!("{death}; restart the process"))
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "failed to render metrics");
            api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "failed to render metrics")
        }
    }
}

/// Who is in the session and how their media fares is for the operator only: the admin token is
/// required (`/healthz` and `/readyz` stay open for the kubelet).
async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(reason) = authorize(&state, &headers) {
        return unauthorized(reason);
    }
    let mut status: WorkerStatus = state.registry.status();
    status.tls = state.tls.as_ref().and_then(|store| store.status());
    Json(status).into_response()
}

pub use tiepdan_contract::admin::AllocationBody;

impl From<Allocation> for AllocationBody {
    fn from(a: Allocation) -> Self {
        AllocationBody {
            session: a.session,
            title: a.title,
            epoch: a.epoch,
            points: a.points,
            link_generations: a.link_generations,
            // Not part of the allocation: `/v1/status` says what is announced.
            announced_address: None,
        }
    }
}

impl From<AllocationBody> for Allocation {
    fn from(b: AllocationBody) -> Self {
        Allocation {
            session: b.session,
            title: b.title,
            epoch: b.epoch,
            points: b.points,
            link_generations: b.link_generations,
        }
    }
}

/// Checks the operator's admin token; the error is the reason, for a 401 body.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| "a Bearer token is required".to_owned())?;
    state.admin.admit(token.trim(), unix_now()).map_err(|e| e.to_string())
}

fn unauthorized(reason: String) -> Response {
    api_error(StatusCode::UNAUTHORIZED, "unauthorized", reason)
}

async fn get_allocation(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(reason) = authorize(&state, &headers) {
        return unauthorized(reason);
    }
    match state.registry.allocation() {
        Some(a) => Json(AllocationBody::from(a)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "not_allocated", "the worker is idle"),
    }
}

async fn put_allocation(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<AllocationBody>, JsonRejection>,
) -> Response {
    if let Err(reason) = authorize(&state, &headers) {
        return unauthorized(reason);
    }
    let Json(mut body) = match body {
        Ok(body) => body,
        Err(rejection) => return api_error(StatusCode::BAD_REQUEST, "malformed_request", rejection.body_text()),
    };
    // The address first: a join right after the allocation must find it.
    if let Some(address) = body.announced_address.take() {
        if let Err(response) = announce(&state.registry, &address).await {
            return response;
        }
    }
    match state.registry.allocate(body.into()) {
        Ok(a) => Json(AllocationBody::from(a)).into_response(),
        Err(e @ AllocationError::AlreadyAllocated { .. }) => {
            api_error(StatusCode::CONFLICT, "already_allocated", e.to_string())
        }
        Err(e @ AllocationError::Draining) => api_error(StatusCode::SERVICE_UNAVAILABLE, "draining", e.to_string()),
    }
}

/// Resolves `address` (unless it is what the worker announces already) and announces it.
async fn announce(registry: &Registry, address: &str) -> Result<(), Response> {
    if registry.announced().is_some_and(|a| a.address == address) {
        return Ok(());
    }
    let parsed: AnnouncedAddress = address.parse().map_err(|e: crate::config::ConfigError| {
        api_error(StatusCode::BAD_REQUEST, "malformed_request", format!("announcedAddress: {e}"))
    })?;
    let ip = parsed.resolve(registry.rtc_listen_ip()).await.map_err(|e| {
        api_error(StatusCode::UNPROCESSABLE_ENTITY, "announced_address_unresolved", format!("announcedAddress: {e}"))
    })?;
    registry.announce(AnnouncedStatus { address: address.to_owned(), ip });
    Ok(())
}

async fn delete_allocation(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(reason) = authorize(&state, &headers) {
        return unauthorized(reason);
    }
    state.registry.deallocate();
    StatusCode::NO_CONTENT.into_response()
}

async fn websocket(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let ctx = SessionContext { registry: state.registry, metrics: state.metrics, stop: state.stop };
    upgrade
        .max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| session::run(socket, ctx))
}
