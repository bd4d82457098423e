//! The reception-point console: the browser page an officer opens from a join link
//! (`/join#token=…`, also `/`), and `POST /v1/join-check`, which tells the page what the worker
//! thinks of its token before anyone presses "join".
//!
//! The page is TypeScript in `media-worker/web/`; the `tiepdan-console-assets` crate bundles it
//! with esbuild and embeds it (the entry serves the same bytes), so the worker binary serves it
//! with no files beside it.

use crate::http::AppState;
use crate::signaling::protocol::ErrorCode;
use crate::tokens::unix_now;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub fn routes() -> Router<AppState> {
    tiepdan_console_assets::routes().route("/v1/join-check", post(join_check))
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
