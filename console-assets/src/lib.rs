//! The reception-point console's static files: the page an officer opens from a join link
//! (`/join#token=…`, also `/`), its script and its style, embedded at build time (see
//! `build.rs`) and served with the headers a page holding a join token needs.
//!
//! Both the media worker and the stable entry (`tiepdan-entry`) serve these routes; what the page
//! talks to (`/v1/ws`, `/v1/join-check`) each server adds itself.
#![forbid(unsafe_code)]

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub const INDEX_HTML: &str = include_str!("../../media-worker/web/index.html");
pub const CONSOLE_CSS: &str = include_str!("../../media-worker/web/console.css");
pub const CONSOLE_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/console.js"));

/// The page loads only its own script and style and talks only to its own origin (`'self'`
/// covers the same-origin WebSocket). Camera and microphone are allowed for this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; media-src 'self' blob:; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `/`, `/join`, `/assets/console.js` and `/assets/console.css`, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/join", get(index))
        .route("/assets/console.js", get(script))
        .route("/assets/console.css", get(style))
}

/// Headers every console response carries. `no-cache` makes browsers revalidate, so a server
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_embedded_and_the_page_loads_it() {
        assert!(CONSOLE_JS.len() > 10_000, "the console bundle looks empty");
        assert!(INDEX_HTML.contains("/assets/console.js") && INDEX_HTML.contains("/assets/console.css"));
    }
}
