//! The apply step: server-side apply with one field manager, only when what was built differs
//! from what was last applied, and orphan clean-up by label.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Instant;

use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::build::labels::MANAGER;

/// Errors applying or deleting objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to apply {kind} {name}")]
    Apply { kind: String, name: String, source: kube::Error },
    #[error("failed to delete {kind} {name}")]
    Delete { kind: String, name: String, source: kube::Error },
    #[error("failed to read {kind} {name}")]
    Get { kind: String, name: String, source: kube::Error },
    #[error("failed to list {kind} for clean-up")]
    List { kind: String, source: kube::Error },
}

/// The annotation holding the hash of what the operator last applied to an object.
pub const HASH_ANNOTATION: &str = "tiepdan.io/applied-hash";

/// A short hash of `obj` as built (without [`HASH_ANNOTATION`]). Objects serialize with sorted
/// maps, so the same build gives the same hash.
pub fn hash_of<K: Serialize>(obj: &K) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(obj).unwrap_or_default();
    Sha256::digest(&bytes).iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// Whether `existing` already holds what was built with hash `hash`.
pub fn up_to_date<K: Resource>(existing: &K, hash: &str) -> bool {
    existing.meta().deletion_timestamp.is_none()
        && existing.meta().annotations.as_ref().and_then(|a| a.get(HASH_ANNOTATION)).is_some_and(|h| h == hash)
}

/// Server-side applies `obj` with the operator's field manager, unless the object already carries
/// the hash of this very build: re-applying unchanged children on every poll was most of an idle
/// session's API writes. `force` takes ownership of fields another manager set, since the
/// operator is the source of truth for what it builds. (An edit by hand to a field the operator
/// sets is corrected when the build next changes, as with a Deployment's template hash.)
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = obj.name_any();
    let kind = || K::kind(&()).into_owned();
    let hash = hash_of(obj);
    let existing =
        api.get_opt(&name).await.map_err(|source| Error::Get { kind: kind(), name: name.clone(), source })?;
    if let Some(existing) = existing.filter(|e| up_to_date(e, &hash)) {
        return Ok(existing);
    }
    let mut obj = obj.clone();
    obj.annotations_mut().insert(HASH_ANNOTATION.to_owned(), hash);
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj)).await.map_err(|source| Error::Apply {
        kind: kind(),
        name,
        source,
    })
}

/// Like [`apply`], with the object's metadata as the operator's cache last saw it (`known`)
/// instead of a read: an unchanged child costs neither a read nor a write. What this process
/// applied itself is remembered in `ledger` until the cache shows it, so a reconcile that comes
/// before the watch event does not apply the same build again. Returns the object's name.
pub async fn apply_known<K>(api: &Api<K>, obj: &K, known: Option<&ObjectMeta>, ledger: &Ledger) -> Result<String, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = obj.name_any();
    let hash = hash_of(obj);
    let key = (K::kind(&()).into_owned(), obj.namespace().unwrap_or_default(), name.clone());
    if ledger.current(&key, &hash, known) {
        return Ok(name);
    }
    let mut obj = obj.clone();
    obj.annotations_mut().insert(HASH_ANNOTATION.to_owned(), hash.clone());
    let applied = api
        .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj))
        .await
        .map_err(|source| Error::Apply { kind: key.0.clone(), name: name.clone(), source })?;
    ledger.record(key, hash, resource_version(applied.meta()));
    Ok(name)
}

/// An applied object: (kind, namespace, name).
type Key = (String, String, String);
/// What was applied to it: the build's hash, the resourceVersion the apply returned, and when.
type Applied = (String, u64, Instant);

/// The builds this process applied that its caches may not show yet: (kind, namespace, name) →
/// (hash, resourceVersion the apply returned).
#[derive(Default)]
pub struct Ledger {
    applied: std::sync::Mutex<std::collections::HashMap<Key, Applied>>,
}

impl Ledger {
    /// Whether the object `key` already holds the build `hash`: the cache says so, or this
    /// process applied it and the cache has not caught up with that apply yet. An entry the cache
    /// has caught up with is dropped: from then on the cache alone decides (an edit by someone
    /// else is seen there), and so is one older than [`SHADOW_FOR`] (the object was deleted
    /// before the cache ever showed it).
    fn current(&self, key: &(String, String, String), hash: &str, known: Option<&ObjectMeta>) -> bool {
        let cached = known.filter(|m| m.deletion_timestamp.is_none());
        if cached.and_then(|m| m.annotations.as_ref()).and_then(|a| a.get(HASH_ANNOTATION)).is_some_and(|h| h == hash) {
            return true;
        }
        let mut applied = self.applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((mine, rv, at)) = applied.get(key) else { return false };
        let behind = known.map(resource_version).is_none_or(|seen| seen < *rv);
        if !behind || at.elapsed() >= SHADOW_FOR {
            applied.remove(key);
            return false;
        }
        mine == hash
    }

    fn record(&self, key: (String, String, String), hash: String, rv: u64) {
        self.applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, (hash, rv, Instant::now()));
    }
}

/// How long an apply counts without the cache showing it: the watch delivers in well under a
/// second.
pub const SHADOW_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// An object's resourceVersion as a number (this API server's are etcd revisions, which only
/// grow; see controller::pod_view), 0 when it does not parse.
fn resource_version(meta: &ObjectMeta) -> u64 {
    meta.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Deletes `name`, treating "already gone" as success.
pub async fn delete<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Delete { kind: K::kind(&()).into_owned(), name: name.to_owned(), source }),
    }
}

/// Deletes every object matching `selector` whose name is not in `keep`. Returns what it deleted.
pub async fn delete_orphans<K>(api: &Api<K>, selector: &str, keep: &BTreeSet<String>) -> Result<Vec<String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(|source| Error::List { kind: K::kind(&()).into_owned(), source })?;
    let found: Vec<ObjectMeta> = list.items.into_iter().map(|o| o.metadata).collect();
    delete_unkept(api, &found, keep).await
}

/// Deletes each of `found` (objects already selected, e.g. from a cache) whose name is not in
/// `keep` and that is not already being deleted. Returns what it deleted.
pub async fn delete_unkept<K>(api: &Api<K>, found: &[ObjectMeta], keep: &BTreeSet<String>) -> Result<Vec<String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut deleted = vec![];
    for meta in found {
        let Some(name) = meta.name.clone() else { continue };
        if !keep.contains(&name) && meta.deletion_timestamp.is_none() {
            delete(api, &name).await?;
            deleted.push(name);
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta { name: Some("c".into()), ..Default::default() },
            data: Some([("k".to_owned(), value.to_owned())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn what_this_process_applied_counts_until_the_cache_catches_up() {
        let ledger = Ledger::default();
        let key = ("ConfigMap".to_owned(), "n".to_owned(), "c".to_owned());
        let meta = |hash: &str, rv: &str| ObjectMeta {
            resource_version: Some(rv.to_owned()),
            annotations: Some([(HASH_ANNOTATION.to_owned(), hash.to_owned())].into()),
            ..Default::default()
        };
        assert!(!ledger.current(&key, "h2", None), "never applied, not cached");
        assert!(ledger.current(&key, "h1", Some(&meta("h1", "5"))), "the cache has it");
        ledger.record(key.clone(), "h2".to_owned(), 9);
        assert!(ledger.current(&key, "h2", None), "created, the cache has not seen it yet");
        assert!(ledger.current(&key, "h2", Some(&meta("h1", "5"))), "the cache is behind the apply");
        assert!(!ledger.current(&key, "h3", Some(&meta("h1", "5"))), "another build still needs applying");
        // Caught up, then edited by someone else: the cache decides.
        assert!(!ledger.current(&key, "h2", Some(&meta("edited", "12"))));
        assert!(ledger.applied.lock().unwrap().is_empty());
    }

    #[test]
    fn only_a_different_build_needs_applying() {
        let built = cm("a");
        let hash = hash_of(&built);
        assert_eq!(hash, hash_of(&cm("a")), "stable");
        assert_ne!(hash, hash_of(&cm("b")));
        let mut existing = cm("a");
        assert!(!up_to_date(&existing, &hash), "never applied by this operator version");
        existing.annotations_mut().insert(HASH_ANNOTATION.to_owned(), hash.clone());
        assert!(up_to_date(&existing, &hash));
        assert!(!up_to_date(&existing, &hash_of(&cm("b"))));
        existing.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2025-06-11T07:00:00Z".parse().unwrap()));
        assert!(!up_to_date(&existing, &hash), "a terminating object is applied again");
    }
}
