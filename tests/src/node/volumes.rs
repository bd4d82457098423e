//! Volumes without a mount namespace: `secret`, `configMap` and `emptyDir` volumes become
//! directories under the pod's directory, and paths under a container's `mountPath`s in its
//! args and env are rewritten to point there.
//!
//! Secret and configMap volumes are written the kubelet way ([`atomic_writer`]) so that
//! [`sync`] can update them under a running process; emptyDir volumes are plain directories,
//! created once and never rewritten. A `subPath` mount points into the volume's stable paths, so
//! unlike kubelet's (a bind mount fixed at container start) it sees updates too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

use super::atomic_writer::{self, Payload, WriteError};
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
    let (mut secrets, mut config_maps) = volume_sources(pod);
    for from in container.env_from.iter().flatten() {
        secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        config_maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
    }
    for var in container.env.iter().flatten() {
        let source = var.value_from.as_ref();
        secrets.extend(source.and_then(|s| s.secret_key_ref.as_ref()).map(|r| r.name.clone()));
        config_maps.extend(source.and_then(|s| s.config_map_key_ref.as_ref()).map(|r| r.name.clone()));
    }
    (secrets, config_maps)
}

/// Names of the Secrets and ConfigMaps the pod's volumes refer to: what [`sync`] needs.
pub fn volume_sources(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    for volume in volumes(pod) {
        secrets.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
        config_maps.extend(volume.config_map.as_ref().map(|c| c.name.clone()));
    }
    (secrets, config_maps)
}

fn volumes(pod: &Pod) -> impl Iterator<Item = &Volume> {
    pod.spec.iter().flat_map(|s| s.volumes.iter().flatten())
}

/// A `secret` or `configMap` volume's source.
struct Projection<'a> {
    kind: &'static str,
    name: String,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

fn projection(volume: &Volume) -> Option<Projection<'_>> {
    if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        Some(Projection { kind: "Secret", name, items: s.items.as_deref(), optional: s.optional.unwrap_or(false) })
    } else {
        volume.config_map.as_ref().map(|c| Projection {
            kind: "ConfigMap",
            name: c.name.clone(),
            items: c.items.as_deref(),
            optional: c.optional.unwrap_or(false),
        })
    }
}

/// Writes the pod's materializable volumes under `root/<volume>/`, returning their directories.
/// Other volume types are skipped (their mounts are left unrewritten).
pub fn materialize(pod: &Pod, sources: &Sources, root: &Path) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut dirs = BTreeMap::new();
    for volume in volumes(pod) {
        let dir = root.join(&volume.name);
        if let Some(projection) = projection(volume) {
            let files = payload(&volume.name, &projection, sources)?;
            write(&volume.name, &dir, &files)?;
        } else if volume.empty_dir.is_some() {
            create_dir(&dir)?;
        } else {
            continue;
        }
        dirs.insert(volume.name.clone(), dir);
    }
    Ok(dirs)
}

/// Brings the pod's secret and configMap volumes under `root` in line with `sources`, as
/// kubelet's periodic sync does: a volume is rewritten only when its content changed (`Ok(true)`),
/// and an optional source that is missing empties it. A volume whose source is missing (and not
/// optional) or invalid keeps its last content and reports the error. Only volumes that
/// [`materialize`] wrote are touched, so nothing is recreated once the pod's directory is gone.
pub fn sync(pod: &Pod, sources: &Sources, root: &Path) -> Vec<(String, Result<bool, VolumeError>)> {
    volumes(pod)
        .filter_map(|volume| Some((volume, projection(volume)?)))
        .filter(|(volume, _)| root.join(&volume.name).is_dir())
        .map(|(volume, projection)| {
            let dir = root.join(&volume.name);
            let result =
                payload(&volume.name, &projection, sources).and_then(|files| write(&volume.name, &dir, &files));
            (volume.name.clone(), result)
        })
        .collect()
}

/// What a secret/configMap volume holds: every key, or only `items` (key → path) when given;
/// nothing for a missing optional source.
fn payload(volume: &str, projection: &Projection<'_>, sources: &Sources) -> Result<Payload, VolumeError> {
    let Projection { kind, name, items, optional } = projection;
    let entries = match *kind {
        "Secret" => sources.secrets.get(name).map(secret_entries),
        _ => sources.config_maps.get(name).map(config_map_entries),
    };
    let mut entries = match entries {
        Some(entries) => entries,
        None if *optional => return Ok(Payload::new()),
        None => return Err(VolumeError::MissingObject { volume: volume.into(), kind, name: name.clone() }),
    };
    let Some(items) = items else {
        return Ok(entries);
    };
    let mut files = Payload::new();
    for item in *items {
        match entries.remove(&item.key) {
            Some(bytes) => drop(files.insert(item.path.clone(), bytes)),
            None if *optional => {}
            None => {
                return Err(VolumeError::MissingKey {
                    volume: volume.into(),
                    kind,
                    name: name.clone(),
                    key: item.key.clone(),
                })
            }
        }
    }
    Ok(files)
}

fn write(volume: &str, dir: &Path, files: &Payload) -> Result<bool, VolumeError> {
    atomic_writer::write(dir, files).map_err(|e| match e {
        WriteError::BadPath(path) => VolumeError::BadPath { volume: volume.into(), path },
        WriteError::Io { path, source } => VolumeError::Write { path, source },
    })
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
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
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

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        let data = pairs.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect();
        Secret { data: Some(data), ..Secret::default() }
    }

    fn config_map(pairs: &[(&str, &str)]) -> ConfigMap {
        let data = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        ConfigMap { data: Some(data), ..ConfigMap::default() }
    }

    /// A worker pod as the operator builds it: an optional TLS Secret that usually does not exist
    /// yet, a required ConfigMap projected through `items`, and scratch space.
    fn tls_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "w-1"},
            "spec": {
                "containers": [{"name": "media-worker", "volumeMounts": [
                    {"name": "tls", "mountPath": "/var/run/tiepdan/tls"},
                    {"name": "settings", "mountPath": "/etc/tiepdan"},
                    {"name": "scratch", "mountPath": "/scratch"}
                ]}],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "w-1-tls", "optional": true}},
                    {"name": "settings", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "conf/mode"}]}},
                    {"name": "scratch", "emptyDir": {}}
                ]
            }
        }))
        .expect("valid pod")
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("volume dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        names.sort();
        names
    }

    fn synced(pod: &Pod, sources: &Sources, root: &Path) -> BTreeMap<String, String> {
        sync(pod, sources, root)
            .into_iter()
            .map(|(volume, result)| (volume, result.map_or_else(|e| format!("error: {e}"), |c| c.to_string())))
            .collect()
    }

    #[test]
    fn sync_follows_an_optional_secret_and_keeps_a_missing_required_source() {
        let pod = tls_pod();
        let root = crate::process::make_temp_dir("volumes-test").expect("temp dir");
        let mut sources = Sources::default();
        sources.config_maps.insert("settings".into(), config_map(&[("mode", "warm"), ("other", "x")]));

        // The optional Secret does not exist yet: the pod starts with an empty directory.
        let dirs = materialize(&pod, &sources, &root).expect("materialized");
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let crt = rewrite("/var/run/tiepdan/tls/tls.crt", &mounts(container, &dirs));
        let (tls, settings, scratch) = (root.join("tls"), root.join("settings"), root.join("scratch"));
        assert!(tls.is_dir() && visible(&tls).is_empty());
        assert_eq!(std::fs::read_to_string(settings.join("conf/mode")).expect("item"), "warm");
        assert_eq!(visible(&settings), ["conf"]);
        std::fs::write(scratch.join("state"), "mine").expect("scratch file");
        let unchanged = BTreeMap::from([("settings".to_owned(), "false".to_owned()), ("tls".into(), "false".into())]);
        assert_eq!(synced(&pod, &sources, &root), unchanged);

        // Created, then rotated: the path the process was given shows each version.
        sources.secrets.insert("w-1-tls".into(), secret(&[("tls.crt", "cert-1"), ("tls.key", "key-1")]));
        assert_eq!(synced(&pod, &sources, &root)["tls"], "true");
        assert_eq!(std::fs::read_to_string(&crt).expect("cert"), "cert-1");
        sources.secrets.insert("w-1-tls".into(), secret(&[("tls.crt", "cert-2"), ("tls.key", "key-2")]));
        assert_eq!(synced(&pod, &sources, &root)["tls"], "true");
        assert_eq!(std::fs::read_to_string(&crt).expect("cert"), "cert-2");
        assert_eq!(synced(&pod, &sources, &root), unchanged);

        // Deleted: an optional source's volume becomes empty again.
        sources.secrets.clear();
        assert_eq!(synced(&pod, &sources, &root)["tls"], "true");
        assert!(visible(&tls).is_empty());

        // A required source gone, or missing a key: the last good content stays.
        sources.config_maps.insert("settings".into(), config_map(&[("other", "x")]));
        assert!(synced(&pod, &sources, &root)["settings"].contains("key \"mode\" not found"));
        sources.config_maps.clear();
        assert!(synced(&pod, &sources, &root)["settings"].contains("not found"));
        assert_eq!(std::fs::read_to_string(settings.join("conf/mode")).expect("kept"), "warm");

        // emptyDir is never rewritten, by a sync or by a restart's materialize.
        sources.config_maps.insert("settings".into(), config_map(&[("mode", "cold")]));
        assert_eq!(synced(&pod, &sources, &root)["settings"], "true");
        materialize(&pod, &sources, &root).expect("materialized again");
        assert_eq!(std::fs::read_to_string(scratch.join("state")).expect("scratch kept"), "mine");
        assert_eq!(std::fs::read_to_string(settings.join("conf/mode")).expect("item"), "cold");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_missing_required_source_fails_the_start_and_bad_item_paths_are_refused() {
        let pod = tls_pod();
        let root = crate::process::make_temp_dir("volumes-test").expect("temp dir");
        let err = materialize(&pod, &Sources::default(), &root).expect_err("settings is required");
        assert!(matches!(err, VolumeError::MissingObject { kind: "ConfigMap", .. }), "{err}");

        let mut pod = tls_pod();
        let volumes = pod.spec.as_mut().and_then(|s| s.volumes.as_mut()).expect("volumes");
        volumes[1].config_map.as_mut().and_then(|c| c.items.as_mut()).expect("items")[0].path = "../../x".into();
        let mut sources = Sources::default();
        sources.config_maps.insert("settings".into(), config_map(&[("mode", "warm")]));
        let err = materialize(&pod, &sources, &root).expect_err("path escapes");
        assert!(matches!(err, VolumeError::BadPath { ref path, .. } if path == "../../x"), "{err}");
        assert!(!root.parent().expect("parent").join("x").exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
