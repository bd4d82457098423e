//! The apply step: server-side apply with one field manager, and orphan clean-up by label.

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
    #[error("failed to list {kind} for clean-up")]
    List { kind: String, source: kube::Error },
}

/// Server-side applies `obj` with the operator's field manager. `force` takes ownership of
/// fields another manager set, since the operator is the source of truth for what it builds.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = obj.name_any();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await.map_err(|source| Error::Apply {
        kind: K::kind(&()).into_owned(),
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
