//! HTTP calls from the operator to a media-worker (docs/worker-contract.md): allocation and
//! the per-point status that is copied into the session's status.

use std::time::Duration;

use jiff::Timestamp;

use crate::tokens;
use tiepdan_contract::ids::IdError;

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

// The worker's admin API is defined once, in the contract; these are the operator's names for it.
pub use tiepdan_contract::admin::{
    AllocationBody as Binding, PointStatus as PointReport, TlsStatus as ServedCertificate, WorkerStatus as WorkerReport,
};

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

/// What binds a worker to a session (`PUT /v1/allocation`): the session, the points it admits
/// (the worker refuses any other point's link and closes its connections, so a point taken out of
/// the session loses its way in at once) and each point's lowest accepted link generation, where
/// above 0. The names are Kubernetes object names, which the worker's id types accept; anything
/// else is refused here rather than by the worker.
pub fn binding(
    session: &str,
    title: &str,
    epoch: u64,
    points: &std::collections::BTreeSet<String>,
    link_generations: &std::collections::BTreeMap<String, u32>,
) -> Result<Binding, IdError> {
    Ok(Binding {
        session: session.parse()?,
        title: title.to_owned(),
        epoch,
        points: Some(points.iter().map(|p| p.parse()).collect::<Result<_, _>>()?),
        link_generations: link_generations.iter().map(|(p, g)| Ok((p.parse()?, *g))).collect::<Result<_, IdError>>()?,
        announced_address: None,
    })
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
    pub async fn allocate(&self, base: &str, admin: &Admin<'_>, binding: &Binding) -> Result<(), Error> {
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
