//! What `operator/tests/versions.rs` and `operator/tests/images.rs` both read: the workspace's
//! version and the image names of `images/names.env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A string key of the root Cargo.toml's `[workspace.package]` table, read the way
/// `scripts/images.sh` reads it (no TOML crate is in the lock file, and the table is flat).
pub fn workspace_package(key: &str) -> String {
    let toml = read("Cargo.toml");
    let mut in_table = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[workspace.package]";
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == key {
                return v.trim().trim_matches('"').to_owned();
            }
        }
    }
    panic!("Cargo.toml: no `{key}` in [workspace.package]")
}

/// `images/names.env`: the image names `scripts/images.sh` builds.
pub fn image_names() -> BTreeMap<String, String> {
    read("images/names.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("images/names.env: `{l}` is not KEY=value"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

pub fn image_name(key: &str) -> String {
    image_names().remove(key).unwrap_or_else(|| panic!("images/names.env has no {key}"))
}
