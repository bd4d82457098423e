//! Whether optional CRDs (prometheus-operator's, cert-manager's) are installed, checked with a
//! short-lived cache so installing them later is noticed without a restart.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::Client;

/// Whether every CRD in a set exists, remembered for `ttl`.
#[derive(Debug)]
pub struct Detector {
    crds: &'static [&'static str],
    ttl: Duration,
    last: Mutex<Option<(Instant, bool)>>,
}

impl Detector {
    pub fn new(crds: &'static [&'static str], ttl: Duration) -> Self {
        Self { crds, ttl, last: Mutex::new(None) }
    }

    /// Whether all the CRDs are installed. (A `get` of each CRD: `Discovery::run_aggregated()`
    /// finds no groups on a 1.20 API server, and this needs nothing else.)
    pub async fn present(&self, client: &Client) -> Result<bool, kube::Error> {
        if let Some((at, present)) = *self.lock() {
            if at.elapsed() < self.ttl {
                return Ok(present);
            }
        }
        let api = Api::<CustomResourceDefinition>::all(client.clone());
        let mut present = true;
        for name in self.crds {
            present &= api.get_opt(name).await?.is_some();
        }
        *self.lock() = Some((Instant::now(), present));
        Ok(present)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, bool)>> {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
