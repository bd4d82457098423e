//! HTTP calls from the operator to a media-worker (docs/worker-contract.md): allocation and
//! the per-point status that is copied into the session's status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::tokens;

/// Errors talking to a worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to reach worker at {url}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("worker at {url} answered {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error(transparent)]
    Token(#[from] tokens::Error),
}

/// `GET /v1/status` of a worker.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub draining: bool,
    /// The session's points as the worker last heard them from the operator.
    #[serde(default)]
    pub allowed_points: Option<BTreeSet<String>>,
    /// Each point's lowest accepted link generation as the worker holds it (only those above 0).
    #[serde(default)]
    pub link_generations: BTreeMap<String, u32>,
    #[serde(default)]
    pub points: Vec<PointReport>,
    /// The certificate the worker serves signaling with, if any.
    #[serde(default)]
    pub tls: Option<ServedCertificate>,
}

/// What a worker reports of its signaling certificate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServedCertificate {
    /// SHA-256 of the leaf certificate's DER, lowercase hex.
    pub sha256: String,
}

/// One point as a worker sees it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PointReport {
    pub name: String,
    #[serde(default)]
    pub joined: bool,
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub verified: bool,
    /// When the worker saw the point pass verification, on the worker's own clock (the media's
    /// time, not when the operator happened to poll).
    #[serde(default)]
    pub verified_at: Option<jiff::Timestamp>,
    /// When a second connection last took this point over with its link, on the worker's clock.
    #[serde(default)]
    pub link_reused_at: Option<jiff::Timestamp>,
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    #[serde(default)]
    pub loss_percent: Option<f64>,
    #[serde(default)]
    pub jitter_ms: Option<f64>,
}

/// What the operator's admin calls to one worker pod are signed with: each call gets its own
/// token, minted for that pod.
pub struct Admin<'a> {
    /// The pool's keys: admin tokens are signed with its admin key.
    pub keys: &'a tokens::SigningKeys,
    pub now: Timestamp,
    pub pod: &'a str,
}

impl Admin<'_> {
    fn token(&self) -> Result<String, tokens::Error> {
        tokens::mint_admin_token(self.keys, self.now, self.pod)
    }
}

/// What binds a worker to a session (`PUT /v1/allocation`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding<'a> {
    pub session: &'a str,
    pub title: &'a str,
    /// Join tokens below this epoch are refused.
    pub epoch: u64,
    /// The session's points: the worker refuses any other point's link and closes its
    /// connections, so a point taken out of the session loses its way in at once.
    pub points: &'a BTreeSet<String>,
    /// Each point's lowest accepted link generation, where above 0: the worker refuses the
    /// point's older links and closes their connections.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub link_generations: &'a BTreeMap<String, u32>,
}

/// A client for workers' admin and status endpoints.
#[derive(Clone, Debug)]
pub struct WorkerClient {
    http: reqwest::Client,
}

impl Default for WorkerClient {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self { http }
    }

    /// The base URL of a worker pod's admin port.
    pub fn base_url(pod_ip: &str, admin_port: i32) -> String {
        format!("http://{pod_ip}:{admin_port}")
    }

    /// Binds the worker to a session (idempotent).
    pub async fn allocate(&self, base: &str, admin: &Admin<'_>, binding: &Binding<'_>) -> Result<(), Error> {
        let url = format!("{base}/v1/allocation");
        let token = admin.token()?;
        let resp = self
            .http
            .put(&url)
            .bearer_auth(token)
            .json(binding)
            .send()
            .await
            .map_err(|source| Error::Unreachable { url: url.clone(), source })?;
        check(url, resp).await.map(|_| ())
    }

    /// Reads the worker's per-point status (an admin call: it names the session's points).
    pub async fn status(&self, base: &str, admin: &Admin<'_>) -> Result<WorkerReport, Error> {
        let url = format!("{base}/v1/status");
        let token = admin.token()?;
        let resp = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|source| Error::Unreachable { url: url.clone(), source })?;
        let resp = check(url.clone(), resp).await?;
        resp.json().await.map_err(|source| Error::Unreachable { url, source })
    }
}

async fn check(url: String, resp: reqwest::Response) -> Result<reqwest::Response, Error> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default().chars().take(300).collect();
    Err(Error::Refused { url, status, body })
}
