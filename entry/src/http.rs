//! The entry's HTTP surface, one listener:
//!
//! ```text
//! /  /join  /assets/*     the console (tiepdan-console-assets)
//! /v1/ws                  signaling, routed to the session's worker (proxy)
//! /v1/join-check          forwarded to the session's worker, found from the token in the body
//! /healthz                liveness and readiness (the entry holds no state to be unready for)
//! ```

use axum::body::Bytes;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

use crate::first_frame;
use crate::proxy::{self, Proxy, MAX_FRAME};
use crate::upstream;

/// A join-check body is a token in JSON; anything bigger is not one.
const JOIN_CHECK_LIMIT: usize = 16 * 1024;

pub fn router(proxy: Arc<Proxy>) -> Router {
    tiepdan_console_assets::routes()
        .route("/v1/ws", get(websocket))
        .route("/v1/join-check", post(join_check))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::extract::DefaultBodyLimit::max(JOIN_CHECK_LIMIT))
        .with_state(proxy)
}

async fn websocket(State(proxy): State<Arc<Proxy>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| proxy::run(socket, proxy))
}

#[derive(Deserialize)]
struct JoinCheckRequest {
    token: String,
}

/// The answer the console reads when the entry itself must refuse: the worker's shape
/// (`{valid, code, message, serverTime}`), so the page explains it the same way.
fn refused(code: tiepdan_contract::ErrorCode, message: &str) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let body = serde_json::json!({"valid": false, "code": code, "message": message, "serverTime": now});
    no_store((StatusCode::OK, axum::Json(body)).into_response())
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn join_check(State(proxy): State<Arc<Proxy>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<JoinCheckRequest>(&body) else {
        let body = serde_json::json!({"code": "malformed_request", "message": "the body must be {\"token\": \"…\"}"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    let session = match first_frame::session_of(&request.token) {
        Ok(session) => session,
        Err(e) => return refused(e.code(), &e.to_string()),
    };
    let upstream = match proxy.routes.find(&session).await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::info!(session = %session, reason = e.reason(), error = %e, "join-check not routed");
            return refused(e.code(), &e.public_message());
        }
    };
    match upstream::join_check(&upstream, &proxy.trust, body.to_vec()).await {
        Ok((status, body)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            no_store((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        Err(e) => {
            tracing::warn!(session = %session, worker = %upstream.addr, reason = e.reason(), error = %e, "join-check: worker unreachable");
            refused(
                tiepdan_contract::ErrorCode::SessionNotAllocated,
                "the session's worker does not answer; the console tries again",
            )
        }
    }
}
