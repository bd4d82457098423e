//! The HTTPS server answering AdmissionReviews on `/validate` and `/mutate`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as AdmOp};
use kube::core::DynamicObject;
use serde::de::DeserializeOwned;

use super::rules::{self, Operation, Violation};
use crate::api::{MediaWorkerPool, ReceptionPoint, ReceptionSession};
use crate::clock::Clock;
use crate::pki::ServingCert;

/// The label the mutating webhook sets on every ReceptionPoint, so sessions can select points
/// by level (`pointSelector: {matchLabels: {tiepdan.io/level: commune}}`).
pub const LEVEL_LABEL: &str = "tiepdan.io/level";

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load the webhook's TLS certificate")]
    Tls(#[source] std::io::Error),
    #[error("failed to bind the webhook listener on {addr}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

#[derive(Clone)]
struct AppState {
    clock: Arc<dyn Clock>,
}

/// A running webhook server.
pub struct WebhookServer {
    pub local_addr: SocketAddr,
    handle: axum_server::Handle,
    tls: RustlsConfig,
}

impl WebhookServer {
    /// Swaps in a renewed certificate without dropping connections.
    pub async fn reload(&self, cert: &ServingCert) -> Result<(), Error> {
        self.tls
            .reload_from_pem(cert.cert_pem.clone().into_bytes(), cert.key_pem.clone().into_bytes())
            .await
            .map_err(Error::Tls)
    }

    /// The TLS configuration, for reloading from another task.
    pub fn tls_config(&self) -> RustlsConfig {
        self.tls.clone()
    }

    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}

/// The webhook's routes.
pub fn router(clock: Arc<dyn Clock>) -> Router {
    Router::new().route("/validate", post(validate)).route("/mutate", post(mutate)).with_state(AppState { clock })
}

/// Serves the webhook on `addr` with `cert`.
pub async fn serve(addr: SocketAddr, cert: &ServingCert, clock: Arc<dyn Clock>) -> Result<WebhookServer, Error> {
    // The workspace builds rustls without a default provider; an error means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = RustlsConfig::from_pem(cert.cert_pem.clone().into_bytes(), cert.key_pem.clone().into_bytes())
        .await
        .map_err(Error::Tls)?;
    let listener = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| Error::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls.clone()).handle(handle.clone());
    tokio::spawn(server.serve(router(clock).into_make_service()));
    Ok(WebhookServer { local_addr, handle, tls })
}

fn parse<K: DeserializeOwned>(obj: &Option<DynamicObject>) -> Result<Option<K>, String> {
    obj.as_ref()
        .map(|o| serde_json::to_value(o).and_then(serde_json::from_value))
        .transpose()
        .map_err(|e| format!("the object does not match its schema: {e}"))
}

fn check(req: &AdmissionRequest<DynamicObject>, now: jiff::Timestamp) -> Result<Vec<Violation>, String> {
    let op = match req.operation {
        AdmOp::Create => Operation::Create,
        AdmOp::Update => Operation::Update,
        _ => return Ok(vec![]),
    };
    Ok(match req.kind.kind.as_str() {
        "ReceptionSession" => {
            let Some(new) = parse::<ReceptionSession>(&req.object)? else { return Ok(vec![]) };
            let old = parse::<ReceptionSession>(&req.old_object)?;
            rules::session(op, &new, old.as_ref(), now)
        }
        "ReceptionPoint" => parse::<ReceptionPoint>(&req.object)?.map(|p| rules::point(&p)).unwrap_or_default(),
        "MediaWorkerPool" => parse::<MediaWorkerPool>(&req.object)?.map(|p| rules::pool(&p)).unwrap_or_default(),
        _ => vec![],
    })
}

async fn validate(
    State(state): State<AppState>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    let resp = AdmissionResponse::from(&req);
    let resp = match check(&req, state.clock.now()) {
        Ok(v) if v.is_empty() => resp,
        Ok(v) => {
            tracing::info!(kind = %req.kind.kind, name = %req.name, violations = v.len(), "admission denied");
            resp.deny(rules::message(&v))
        }
        Err(e) => resp.deny(e),
    };
    Json(resp.into_review())
}

/// The JSON patch that labels a point with its level, if the label is missing or wrong.
pub fn level_label_patch(point: &ReceptionPoint) -> Option<json_patch::Patch> {
    let want = format!("{:?}", point.spec.level).to_lowercase();
    let labels = point.metadata.labels.as_ref();
    if labels.and_then(|l| l.get(LEVEL_LABEL)) == Some(&want) {
        return None;
    }
    let patch = match labels {
        None => serde_json::json!([{"op": "add", "path": "/metadata/labels", "value": {LEVEL_LABEL: want}}]),
        // '/' in a label key is escaped as '~1' in a JSON pointer (RFC 6901).
        Some(_) => serde_json::json!([{"op": "add", "path": "/metadata/labels/tiepdan.io~1level", "value": want}]),
    };
    serde_json::from_value(patch).ok()
}

async fn mutate(Json(review): Json<AdmissionReview<DynamicObject>>) -> Json<AdmissionReview<DynamicObject>> {
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    let resp = AdmissionResponse::from(&req);
    let patch = match (req.kind.kind.as_str(), parse::<ReceptionPoint>(&req.object)) {
        ("ReceptionPoint", Ok(Some(p))) => level_label_patch(&p),
        _ => None,
    };
    let resp = match patch {
        Some(p) => match resp.clone().with_patch(p) {
            Ok(r) => r,
            Err(e) => resp.deny(e.to_string()),
        },
        None => resp,
    };
    Json(resp.into_review())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(labels: Option<&[(&str, &str)]>) -> ReceptionPoint {
        let mut p: ReceptionPoint = serde_json::from_value(serde_json::json!({"apiVersion": "tiepdan.io/v1alpha1",
            "kind": "ReceptionPoint", "metadata": {"name": "x"}, "spec": {"displayName": "X", "level": "Commune", "parent": "t"}}))
        .unwrap();
        p.metadata.labels = labels.map(|l| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        p
    }

    #[test]
    fn points_get_their_level_label_once() {
        let apply = |p: &ReceptionPoint| {
            let mut v = serde_json::to_value(p).unwrap();
            if let Some(patch) = level_label_patch(p) {
                json_patch::patch(&mut v, &patch).unwrap();
            }
            serde_json::from_value::<ReceptionPoint>(v).unwrap()
        };
        let fresh = apply(&point(None));
        assert_eq!(fresh.metadata.labels.as_ref().unwrap()[LEVEL_LABEL], "commune");
        let kept = apply(&point(Some(&[("tiepdan.io/town", "my-hao")])));
        assert_eq!(kept.metadata.labels.as_ref().unwrap()["tiepdan.io/town"], "my-hao");
        assert_eq!(kept.metadata.labels.as_ref().unwrap()[LEVEL_LABEL], "commune");
        assert!(level_label_patch(&kept).is_none());
    }
}
