//! The apply step: server-side apply with one field manager, only when what was built differs
//! from what was last applied, and orphan clean-up by label.

use std::collections::BTreeSet;
use std::fmt::Debug;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
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
    let mut deleted = vec![];
    for obj in list.items {
        let name = obj.name_any();
        if !keep.contains(&name) && obj.metadata.deletion_timestamp.is_none() {
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
