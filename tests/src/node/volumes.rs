//! Volumes without a mount namespace: `secret`, `configMap` and `emptyDir` volumes become
//! directories under the pod's directory, and paths under a container's `mountPath`s in its
//! args and env are rewritten to point there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod};

use super::env::{config_map_entries, secret_entries, Sources};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {kind} {name:?} not found")]
    MissingObject { volume: String, kind: &'static str, name: String },
    #[error("volume {volume}: key {key:?} not found in {kind} {name:?}")]
    MissingKey { volume: String, kind: &'static str, name: String, key: String },
    #[error("volume {volume}: path {path:?} escapes the volume")]
    BadPath { volume: String, path: String },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Names of the Secrets and ConfigMaps that `container` (env, envFrom) and the pod's volumes
/// refer to.
pub fn referenced(pod: &Pod, container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        config_maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
    }
    for var in container.env.iter().flatten() {
        let source = var.value_from.as_ref();
        secrets.extend(source.and_then(|s| s.secret_key_ref.as_ref()).map(|r| r.name.clone()));
        config_maps.extend(source.and_then(|s| s.config_map_key_ref.as_ref()).map(|r| r.name.clone()));
    }
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        secrets.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
        config_maps.extend(volume.config_map.as_ref().map(|c| c.name.clone()));
    }
    (secrets, config_maps)
}

/// Writes the pod's materializable volumes under `root/<volume>/`, returning their directories.
/// Other volume types are skipped (their mounts are left unrewritten).
pub fn materialize(pod: &Pod, sources: &Sources, root: &Path) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut dirs = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = root.join(&volume.name);
        let (kind, name, items, optional, entries) = if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let entries = sources.secrets.get(&name).map(secret_entries);
            ("Secret", name, &s.items, s.optional.unwrap_or(false), entries)
        } else if let Some(c) = &volume.config_map {
            let entries = sources.config_maps.get(&c.name).map(config_map_entries);
            ("ConfigMap", c.name.clone(), &c.items, c.optional.unwrap_or(false), entries)
        } else if volume.empty_dir.is_some() {
            create_dir(&dir)?;
            dirs.insert(volume.name.clone(), dir);
            continue;
        } else {
            continue;
        };
        let volume_name = volume.name.clone();
        let entries = match entries {
            Some(entries) => entries,
            None if optional => BTreeMap::new(),
            None => return Err(VolumeError::MissingObject { volume: volume_name, kind, name }),
        };
        let files = select(&volume_name, kind, &name, entries, items.as_deref(), optional)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| VolumeError::Write { path: dir.clone(), source })?;
        }
        create_dir(&dir)?;
        for (relative, bytes) in files {
            let path = safe_join(&dir, &relative)
                .ok_or_else(|| VolumeError::BadPath { volume: volume_name.clone(), path: relative })?;
            if let Some(parent) = path.parent() {
                create_dir(parent)?;
            }
            std::fs::write(&path, bytes).map_err(|source| VolumeError::Write { path, source })?;
        }
        dirs.insert(volume_name, dir);
    }
    Ok(dirs)
}

/// The files of one volume: every key, or only `items` (key → path) when given.
fn select(
    volume: &str,
    kind: &'static str,
    name: &str,
    mut entries: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let Some(items) = items else {
        return Ok(entries.into_iter().collect());
    };
    let mut files = Vec::new();
    for item in items {
        match entries.remove(&item.key) {
            Some(bytes) => files.push((item.path.clone(), bytes)),
            None if optional => {}
            None => {
                return Err(VolumeError::MissingKey {
                    volume: volume.into(),
                    kind,
                    name: name.into(),
                    key: item.key.clone(),
                })
            }
        }
    }
    Ok(files)
}

fn create_dir(dir: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(|source| VolumeError::Write { path: dir.to_owned(), source })
}

/// `dir/relative`, refusing absolute paths and `..`.
fn safe_join(dir: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative);
    rel.components().all(|c| matches!(c, Component::Normal(_))).then(|| dir.join(rel))
}

/// Where one of the container's `mountPath`s lives on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub mount_path: String,
    pub host_path: PathBuf,
}

/// The container's mounts of materialized volumes, longest `mountPath` first.
pub fn mounts(container: &Container, volume_dirs: &BTreeMap<String, PathBuf>) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let dir = volume_dirs.get(&m.name)?;
            let host_path = match m.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() => safe_join(dir, sub)?,
                _ => dir.clone(),
            };
            Some(Mount { mount_path: m.mount_path.trim_end_matches('/').to_owned(), host_path })
        })
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    mounts
}

/// Rewrites a value that is a path under a mount (`/mnt/key`) or a flag with such a path
/// (`--key-file=/mnt/key`) to the materialized path. Anything else is returned unchanged.
pub fn rewrite(value: &str, mounts: &[Mount]) -> String {
    let (flag, path) = match value.split_once('=') {
        Some((flag, path)) if !value.starts_with('/') => (Some(flag), path),
        _ => (None, value),
    };
    for mount in mounts {
        if let Some(rest) = path.strip_prefix(&mount.mount_path) {
            if rest.is_empty() || rest.starts_with('/') {
                let host = format!("{}{rest}", mount.host_path.display());
                return match flag {
                    Some(flag) => format!("{flag}={host}"),
                    None => host,
                };
            }
        }
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn signing_mount() -> Vec<Mount> {
        vec![Mount {
            mount_path: "/var/run/tiepdan/signing-key".into(),
            host_path: PathBuf::from("/tmp/pod/volumes/signing-key"),
        }]
    }

    #[test]
    fn paths_under_a_mount_are_rewritten_in_plain_and_flag_form() {
        let m = signing_mount();
        let host = "/tmp/pod/volumes/signing-key/signing.key";
        assert_eq!(rewrite("/var/run/tiepdan/signing-key/signing.key", &m), host);
        assert_eq!(
            rewrite("--token-key-file=/var/run/tiepdan/signing-key/signing.key", &m),
            format!("--token-key-file={host}")
        );
        assert_eq!(rewrite("/var/run/tiepdan/signing-keys/x", &m), "/var/run/tiepdan/signing-keys/x");
        assert_eq!(rewrite("--listen=127.0.1.1:8080", &m), "--listen=127.0.1.1:8080");
    }

    #[test]
    fn secret_volumes_become_files_and_mounts_point_at_them() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "media-worker", "volumeMounts": [
                    {"name": "signing-key", "mountPath": "/var/run/tiepdan/signing-key/"}
                ]}],
                "volumes": [
                    {"name": "signing-key", "secret": {"secretName": "pool-signing-key"}},
                    {"name": "scratch", "emptyDir": {}}
                ]
            }
        }))
        .expect("valid pod");
        let mut sources = Sources::default();
        let data = [("signing.key".to_owned(), ByteString(b"ab".to_vec()))].into();
        sources.secrets.insert("pool-signing-key".into(), Secret { data: Some(data), ..Secret::default() });
        let root = crate::process::make_temp_dir("volumes-test").expect("temp dir");

        let dirs = materialize(&pod, &sources, &root).expect("materialized");
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let mounts = mounts(container, &dirs);
        let key = rewrite("/var/run/tiepdan/signing-key/signing.key", &mounts);
        assert_eq!(std::fs::read(&key).expect("key file"), b"ab");
        assert!(root.join("scratch").is_dir());
        let (secrets, _) = referenced(&pod, container);
        assert!(secrets.contains("pool-signing-key"));
        let _ = std::fs::remove_dir_all(root);
    }
}
