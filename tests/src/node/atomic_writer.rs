//! Kubelet's AtomicWriter, for `secret` and `configMap` volumes that change while a process reads
//! them.
//!
//! ```text
//!  <volume>/
//!  ├── ..2025_06_12_01_00_00.123456789/   the payload, written in full before anyone can see it
//!  │   ├── tls.crt
//!  │   └── tls.key
//!  ├── ..data    -> ..2025_06_12_01_00_00.123456789   swapped by renaming ..data_tmp over it
//!  ├── tls.crt   -> ..data/tls.crt                    stable paths: one per top-level name
//!  └── tls.key   -> ..data/tls.key
//! ```
//!
//! An update writes a new timestamped directory, points `..data_tmp` at it and renames that over
//! `..data` (a rename replaces a symlink atomically), adds the links of new top-level names, then
//! removes links of names that are gone and every other timestamped directory. A reader that opens
//! `<volume>/tls.crt` therefore gets either the old or the new file, whole; a reader that needs
//! several files from one version resolves `..data` once. A payload equal to what `..data` holds
//! is not written again.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::jiff::Timestamp;

/// The symlink to the current payload directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// Relative path in the volume → file content.
pub type Payload = BTreeMap<String, Vec<u8>>;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("path {0:?} is not a relative path inside the volume (or starts with \"..\")")]
    BadPath(String),
    #[error("failed to write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WriteError {
    let path = path.to_owned();
    move |source| WriteError::Io { path, source }
}

/// `path` as `a/b/c` if it is a plain relative path whose first component does not start with
/// `..` (kubelet's rule: such names are the writer's own, like `..data`).
pub fn normalize(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            _ => return None,
        }
    }
    let first = parts.first()?;
    (!first.starts_with("..")).then(|| parts.join("/"))
}

/// Makes `dir` hold exactly `payload`, in the layout above. Returns whether anything was written
/// (`false`: `..data` already held this payload).
pub fn write(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    let mut files = Payload::new();
    for (path, bytes) in payload {
        let normalized = normalize(path).ok_or_else(|| WriteError::BadPath(path.clone()))?;
        files.insert(normalized, bytes.clone());
    }
    let visible: BTreeSet<&str> = files.keys().map(|p| p.split('/').next().unwrap_or(p)).collect();
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;

    match std::fs::read_link(dir.join(DATA_DIR)) {
        Ok(current) => {
            // Unreadable counts as different: writing a fresh copy repairs it.
            if read_tree(&dir.join(current)).is_ok_and(|old| old == files) {
                link_visible(dir, &visible)?;
                return Ok(false);
            }
        }
        // Never written the kubelet way (a plain directory from an older run reusing the node's
        // dir, or a crash before the first swap): start from nothing.
        Err(_) => clear(dir)?,
    }

    let ts_dir = new_payload_dir(dir)?;
    for (path, bytes) in &files {
        let file = ts_dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        std::fs::write(&file, bytes).map_err(io_at(&file))?;
    }
    let ts_name = ts_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(DATA_DIR_TMP);
    remove_entry(&tmp)?; // left by a crash between the symlink and the rename
    std::os::unix::fs::symlink(&ts_name, &tmp).map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, dir.join(DATA_DIR)).map_err(io_at(&tmp))?;
    link_visible(dir, &visible)?;

    // Now that `..data` points at the new payload, the old one and links to gone names can go.
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale =
            if name.starts_with("..") { name != DATA_DIR && name != ts_name } else { !visible.contains(&*name) };
        if stale {
            remove_entry(&entry.path())?;
        }
    }
    Ok(true)
}

/// A new, empty `..<UTC time>.<nanoseconds>` directory in `dir`.
fn new_payload_dir(dir: &Path) -> Result<PathBuf, WriteError> {
    loop {
        let now = Timestamp::now();
        let name = format!("..{}.{:09}", now.strftime("%Y_%m_%d_%H_%M_%S"), now.subsec_nanosecond());
        let path = dir.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            // Two writes within one clock tick: take the next one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_at(&path)(e)),
        }
    }
}

/// Creates `<name> -> ..data/<name>` for each top-level name that lacks it.
fn link_visible(dir: &Path, names: &BTreeSet<&str>) -> Result<(), WriteError> {
    for name in names {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => continue,
            Ok(_) => remove_entry(&link)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(Path::new(DATA_DIR).join(name), &link).map_err(io_at(&link))?;
    }
    Ok(())
}

/// Every regular file under `root`, by `/`-joined path relative to it.
fn read_tree(root: &Path) -> io::Result<Payload> {
    fn walk(dir: &Path, prefix: &str, out: &mut Payload) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            if entry.file_type()?.is_dir() {
                walk(&entry.path(), &relative, out)?;
            } else {
                out.insert(relative, std::fs::read(entry.path())?);
            }
        }
        Ok(())
    }
    let mut out = Payload::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

fn clear(dir: &Path) -> Result<(), WriteError> {
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        remove_entry(&entry.map_err(io_at(dir))?.path())?;
    }
    Ok(())
}

/// Removes a file, symlink (not its target) or directory tree; a missing one is fine.
fn remove_entry(path: &Path) -> Result<(), WriteError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str)]) -> Payload {
        files.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The current payload directory's name, checked to be the only one.
    fn current(dir: &Path) -> String {
        let target = std::fs::read_link(dir.join(DATA_DIR)).expect("..data is a symlink");
        let target = target.to_string_lossy().into_owned();
        let payload_dirs: Vec<String> =
            names(dir).into_iter().filter(|n| n.starts_with("..") && n != DATA_DIR).collect();
        assert_eq!(payload_dirs, std::slice::from_ref(&target), "exactly one payload dir, the one ..data points at");
        target
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("volume dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn visible(dir: &Path) -> Vec<String> {
        names(dir).into_iter().filter(|n| !n.starts_with("..")).collect()
    }

    #[test]
    fn create_update_and_key_removal_swap_data_atomically() {
        let root = crate::process::make_temp_dir("atomic-writer-test").expect("temp dir");
        let dir = root.join("tls");

        // Create: payload dir, ..data and one link per key.
        assert!(write(&dir, &payload(&[("tls.crt", "cert-1"), ("tls.key", "key-1")])).expect("created"));
        let first = current(&dir);
        assert!(first.starts_with("..20") && first.len() == "..2025_06_12_01_00_00.123456789".len(), "{first}");
        assert_eq!(visible(&dir), ["tls.crt", "tls.key"]);
        assert_eq!(std::fs::read_link(dir.join("tls.crt")).expect("link"), Path::new("..data/tls.crt"));
        assert_eq!(read(&dir.join("tls.crt")), "cert-1");
        assert_eq!(read(&dir.join("tls.key")), "key-1");

        // The same payload again: nothing is written.
        assert!(!write(&dir, &payload(&[("tls.crt", "cert-1"), ("tls.key", "key-1")])).expect("unchanged"));
        assert_eq!(current(&dir), first);

        // Update: a new payload dir replaces the old one; the stable paths show the new content.
        assert!(write(&dir, &payload(&[("tls.crt", "cert-2"), ("tls.key", "key-2")])).expect("updated"));
        let second = current(&dir);
        assert_ne!(second, first);
        assert!(!dir.join(&first).exists(), "the old payload dir is removed after the swap");
        assert_eq!(read(&dir.join("tls.crt")), "cert-2");
        assert_eq!(read(&dir.join("tls.key")), "key-2");

        // A key removed: its link goes, the others stay valid.
        assert!(write(&dir, &payload(&[("tls.crt", "cert-2")])).expect("key removed"));
        assert_eq!(visible(&dir), ["tls.crt"]);
        assert_eq!(read(&dir.join("tls.crt")), "cert-2");
        current(&dir);

        // Nested item paths get one link for their top-level directory.
        assert!(write(&dir, &payload(&[("certs/tls.crt", "cert-3"), ("ca.crt", "ca")])).expect("nested"));
        assert_eq!(visible(&dir), ["ca.crt", "certs"]);
        assert_eq!(read(&dir.join("certs/tls.crt")), "cert-3");

        // Everything removed (an optional source deleted): an empty volume, still with ..data.
        assert!(write(&dir, &Payload::new()).expect("emptied"));
        assert!(visible(&dir).is_empty());
        assert!(names(&dir.join(current(&dir))).is_empty());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_reader_holding_the_old_file_keeps_it_and_new_opens_see_the_new_one() {
        let root = crate::process::make_temp_dir("atomic-writer-test").expect("temp dir");
        let dir = root.join("v");
        write(&dir, &payload(&[("k", "old")])).expect("created");
        let mut held = std::fs::File::open(dir.join("k")).expect("open through the stable path");
        write(&dir, &payload(&[("k", "new")])).expect("updated");
        let mut old = String::new();
        std::io::Read::read_to_string(&mut held, &mut old).expect("the open file stays readable");
        assert_eq!(old, "old");
        assert_eq!(read(&dir.join("k")), "new");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_plain_directory_is_replaced_and_leftovers_of_a_crash_are_cleaned() {
        let root = crate::process::make_temp_dir("atomic-writer-test").expect("temp dir");
        let dir = root.join("v");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("stale"), "from an older layout").expect("stale file");
        write(&dir, &payload(&[("k", "1")])).expect("created");
        assert_eq!(visible(&dir), ["k"]);

        // A payload dir and ..data_tmp left by a write that died before its swap.
        std::fs::create_dir(dir.join("..2000_01_01_00_00_00.000000000")).expect("orphan dir");
        std::os::unix::fs::symlink("..2000_01_01_00_00_00.000000000", dir.join(DATA_DIR_TMP)).expect("tmp link");
        write(&dir, &payload(&[("k", "2")])).expect("updated");
        current(&dir);
        assert!(!dir.join(DATA_DIR_TMP).exists());
        assert_eq!(read(&dir.join("k")), "2");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn paths_outside_the_volume_or_in_its_own_namespace_are_refused() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "..data", "..data/x", "..2025_x", "./a", ""] {
            assert!(normalize(bad).is_none(), "{bad:?} accepted");
        }
        assert_eq!(normalize("a//b").as_deref(), Some("a/b"));
        assert_eq!(normalize("a/..b").as_deref(), Some("a/..b"));
        let root = crate::process::make_temp_dir("atomic-writer-test").expect("temp dir");
        let err = write(&root.join("v"), &payload(&[("../escape", "x")])).expect_err("refused");
        assert!(matches!(err, WriteError::BadPath(p) if p == "../escape"));
        assert!(!root.join("escape").exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
