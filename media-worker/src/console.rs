//! The reception-point console: the browser page an officer opens from a join link
//! (`/join#token=…`, also `/`), and `POST /v1/join-check`, which tells the page what the worker
//! thinks of its token before anyone presses "join".
//!
//! The page is TypeScript in `media-worker/web/`; `build.rs` bundles it with esbuild and the
//! bundle is embedded here, so the worker binary serves it with no files beside it.

use crate::http::AppState;
use crate::signaling::protocol::ErrorCode;
use crate::tokens::unix_now;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

const INDEX_HTML: &str = include_str!("../web/index.html");
const CONSOLE_CSS: &str = include_str!("../web/console.css");
const CONSOLE_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/console.js"));

/// The page loads only its own script and style and talks only to its own origin (`'self'`
/// covers the same-origin WebSocket). Camera and microphone are allowed for this origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; media-src 'self' blob:; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/join", get(index))
        .route("/assets/console.js", get(script))
        .route("/assets/console.css", get(style))
        .route("/v1/join-check", post(join_check))
}

/// Headers every console response carries. `no-cache` makes browsers revalidate, so a worker
/// upgraded in place never runs an old script against a new protocol.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX_HTML);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    // The join token is in the URL: never send it on to another site.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(self), microphone=(self)"),
    );
    response
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

/// Body of `POST /v1/join-check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinCheckRequest {
    pub token: String,
}

/// Answer of `POST /v1/join-check`: whether a `join` with this token would be accepted now, and
/// if not, the error code the `join` would get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct JoinCheck {
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub message: Option<String>,
    /// The worker's clock, Unix seconds: the page says "opens at …" by it, since office PCs'
    /// clocks are often off.
    pub server_time: i64,
}

async fn join_check(State(state): State<AppState>, body: Result<Json<JoinCheckRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(crate::http::ApiError { code: "malformed_request".to_owned(), message: rejection.body_text() }),
            )
                .into_response()
        }
    };
    let now = unix_now();
    // A refusal is an answer to the question, not a failed request: 200 either way.
    let answer = match state.registry.check_join(request.token.trim(), now) {
        Ok(_) => JoinCheck { valid: true, code: None, message: None, server_time: now },
        Err(e) => JoinCheck { valid: false, code: Some(e.code()), message: Some(e.to_string()), server_time: now },
    };
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(answer)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_embedded_and_the_page_loads_it() {
        assert!(CONSOLE_JS.len() > 10_000, "the console bundle looks empty");
        assert!(INDEX_HTML.contains("/assets/console.js") && INDEX_HTML.contains("/assets/console.css"));
    }

    #[test]
    fn join_check_answers_have_the_documented_shape() {
        let refused = JoinCheck {
            valid: false,
            code: Some(ErrorCode::TokenExpired),
            message: Some("the token has expired".to_owned()),
            server_time: 1_750_000_000,
        };
        assert_eq!(
            serde_json::to_value(&refused).expect("serialize"),
            serde_json::json!({"valid": false, "code": "token_expired", "message": "the token has expired",
                               "serverTime": 1_750_000_000})
        );
        let ok = JoinCheck { valid: true, code: None, message: None, server_time: 1 };
        assert_eq!(serde_json::to_value(&ok).expect("serialize"), serde_json::json!({"valid": true, "serverTime": 1}));
    }
}
