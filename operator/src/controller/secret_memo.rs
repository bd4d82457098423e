//! Secrets the reconcilers need whole (the pools' signing keys, the sessions' certificates),
//! remembered by resourceVersion so that a reconcile reads one from the API server only when
//! the metadata cache ([`super::caches`]) says it changed.
//!
//! Secrets are cached as metadata only, which keeps the operator small, but every session
//! reconcile needs its pool's signing keys and its certificate's data: two GETs per reconcile,
//! the most of a steady reconcile's API calls once listing was gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::caches::{self, Caches};

/// The last version read or written of each Secret, keyed by (namespace, name).
#[derive(Default)]
pub struct SecretMemo {
    secrets: Mutex<HashMap<(String, String), Arc<Secret>>>,
}

impl SecretMemo {
    /// `ns`/`name` as the API server has it: the remembered copy when the cache shows that very
    /// version, otherwise read (and remembered). A Secret the cache does not show is always read,
    /// so one just created or deleted is never missed.
    pub async fn get(
        &self,
        caches: &Caches,
        api: &Api<Secret>,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>, kube::Error> {
        let key = (ns.to_owned(), name.to_owned());
        if let Some(rv) = caches::known(&caches.secrets, ns, name).and_then(|m| m.resource_version) {
            let memo = self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(s) = memo.get(&key).filter(|s| s.metadata.resource_version.as_ref() == Some(&rv)) {
                return Ok(Some(s.clone()));
            }
        }
        let read = api.get_opt(name).await?.map(Arc::new);
        let mut memo = self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &read {
            Some(s) => memo.insert(key, s.clone()),
            None => memo.remove(&key),
        };
        Ok(read)
    }

    /// Remembers `secret` as this process just wrote it.
    pub fn remember(&self, secret: &Secret) {
        let key =
            (secret.metadata.namespace.clone().unwrap_or_default(), secret.metadata.name.clone().unwrap_or_default());
        self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, Arc::new(secret.clone()));
    }

    /// Forgets `ns`/`name` (a released session's certificate), so the memo does not grow with
    /// every session ever held.
    pub fn forget(&self, ns: &str, name: &str) {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(ns.to_owned(), name.to_owned()));
    }
}
