//! The OCI archives that `scripts/images.sh` writes are what `images/README.md` says they are:
//! a layout containerd can import under the right name, blobs that match their digests, a config
//! with the non-root user and the entrypoint, and a single layer holding the entrypoint, every
//! library it needs (by its ELF `DT_NEEDED`, transitively, plus its loader), the few files the
//! generator names, and nothing else: no shell, no package manager.
//!
//! Skipped, with a message, only when an archive is missing and `TIEPDAN_REQUIRE_IMAGES` is unset;
//! `scripts/test` builds the images and sets it, so there it fails instead. Needs `tar`, `gzip` and
//! `readelf`. As root it also runs each entrypoint in a chroot of the layer, as the image's user.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{image_name, workspace_package};

/// What one archive must be.
struct Expected {
    archive: String,
    name: String,
    title: &'static str,
    version: String,
    user: &'static str,
    entrypoint: String,
    /// Arguments that make the entrypoint print `says` and exit 0.
    probe: &'static [&'static str],
    says: &'static str,
    /// Only the binary (and its libraries): no /etc, /tmp or home.
    bare: bool,
    ca_bundle: bool,
}

const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
/// glibc's default library directories (no ld.so.cache in the image), relative to the root.
const LIBRARY_DIRS: [&str; 8] = [
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];
const FORBIDDEN: [&str; 12] = [
    "bin/sh",
    "usr/bin/sh",
    "bin/bash",
    "usr/bin/bash",
    "bin/dash",
    "bin/busybox",
    "usr/bin/busybox",
    "usr/bin/apt",
    "usr/bin/apt-get",
    "usr/bin/dpkg",
    "usr/bin/env",
    "usr/bin/python3",
];

/// `$TIEPDAN_IMAGES_DIR`, else scripts/env.sh's default `$CARGO_TARGET_DIR/images`, found from this
/// test binary's path (`<target>/<profile>/deps/images-…`).
fn images_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TIEPDAN_IMAGES_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("<target>/<profile>/deps/<test>").join("images")
}

/// The archive, or None (after saying so) when it is missing and a skip is allowed.
fn archive(file: &str) -> Option<PathBuf> {
    let path = images_dir().join(file);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("TIEPDAN_REQUIRE_IMAGES").is_none(),
        "{} is missing and TIEPDAN_REQUIRE_IMAGES is set: run scripts/images.sh",
        path.display()
    );
    eprintln!(
        "SKIPPED: {} does not exist; run scripts/images.sh (with TIEPDAN_REQUIRE_IMAGES=1 this test fails instead)",
        path.display()
    );
    None
}

fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn json(data: &[u8], what: &str) -> Value {
    serde_json::from_slice(data).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
}

/// A descriptor's blob, checked against its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("a descriptor has a digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digests");
    let data = fs::read(layout.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(sha256_hex(&data), hex, "blob {digest} holds what its digest says");
    assert_eq!(descriptor["size"].as_u64(), Some(data.len() as u64), "blob {digest} has its descriptor's size");
    data
}

/// One `tar --numeric-owner -tv` line: mode string and owner of each entry, by path.
struct Listed {
    mode: String,
    owner: String,
}

fn list_layer(layer_tar: &Path) -> BTreeMap<String, Listed> {
    let out = run("tar", &["--numeric-owner", "-tvf", path_arg(layer_tar)]);
    String::from_utf8(out)
        .expect("tar lists UTF-8")
        .lines()
        .map(|line| {
            // drwxr-xr-x 0/0   0 1970-01-01 00:00 usr/lib/ [-> target]
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 6, "unexpected tar listing line `{line}`");
            (f[5].trim_end_matches('/').to_owned(), Listed { mode: f[0].to_owned(), owner: f[1].to_owned() })
        })
        .collect()
}

/// `path` resolved inside `root` the way the kernel would inside the container: absolute symlink
/// targets restart at `root`, never at this machine's `/`.
fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = path.split('/').filter(|p| !p.is_empty()).rev().map(str::to_owned).collect();
    let mut current = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        let candidate = current.join(&part);
        let meta = fs::symlink_metadata(root.join(&candidate)).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = fs::read_link(root.join(&candidate)).ok()?;
            let target = target.to_str()?.to_owned();
            if target.starts_with('/') {
                current = PathBuf::new();
            }
            pending.extend(target.split('/').filter(|p| !p.is_empty()).rev().map(str::to_owned));
        } else {
            current = candidate;
        }
    }
    Some(root.join(current))
}

fn readelf(args: &str, file: &Path) -> String {
    String::from_utf8(run("readelf", &[args, path_arg(file)])).expect("readelf prints UTF-8")
}

/// The ELF's `DT_NEEDED` entries.
fn needed(file: &Path) -> Vec<String> {
    readelf("-dW", file)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_owned()))
        .collect()
}

/// The ELF's `PT_INTERP`, or None for a static executable.
fn interpreter(file: &Path) -> Option<String> {
    readelf("-lW", file).lines().find_map(|l| {
        let rest = l.split_once("[Requesting program interpreter: ")?.1;
        Some(rest.trim_end_matches(']').to_owned())
    })
}

/// Every library the loader will look for, found in the layer; the names of all of them.
fn check_libraries(root: &Path, entrypoint: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut queue = vec![entrypoint.to_path_buf()];
    while let Some(file) = queue.pop() {
        for lib in needed(&file) {
            if found.contains(&lib) {
                continue;
            }
            let path = LIBRARY_DIRS
                .iter()
                .filter_map(|dir| resolve_in(root, &format!("{dir}/{lib}")))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{} needs {lib}, which is not in the layer", file.display()));
            found.insert(lib);
            queue.push(path);
        }
    }
    found
}

fn check(want: &Expected) {
    let Some(archive) = archive(&want.archive) else { return };
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("images-{}", want.title));
    let _ = fs::remove_dir_all(&work);
    let (layout, root) = (work.join("layout"), work.join("rootfs"));
    fs::create_dir_all(&layout).expect("work dir");
    fs::create_dir_all(&root).expect("work dir");
    run("tar", &["-xf", path_arg(&archive), "-C", path_arg(&layout)]);

    // The layout: containerd's import names the image after io.containerd.image.name.
    let oci_layout = json(&fs::read(layout.join("oci-layout")).expect("oci-layout"), "oci-layout");
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index = json(&fs::read(layout.join("index.json")).expect("index.json"), "index.json");
    let manifests = index["manifests"].as_array().expect("index.json has manifests");
    assert_eq!(manifests.len(), 1, "one image per archive");
    let annotations = &manifests[0]["annotations"];
    assert_eq!(annotations["io.containerd.image.name"].as_str(), Some(want.name.as_str()), "containerd's name");
    let tag = want.name.rsplit_once(':').expect("a tagged name").1;
    assert_eq!(annotations["org.opencontainers.image.ref.name"].as_str(), Some(tag), "the OCI ref name is the tag");

    let manifest = json(&blob(&layout, &manifests[0]), "the manifest");
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let config = json(&blob(&layout, &manifest["config"]), "the config");
    let layers = manifest["layers"].as_array().expect("manifest layers");
    assert_eq!(layers.len(), 1, "a single layer");
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");

    // The config: user, entrypoint, labels, and the layer's uncompressed digest.
    let c = &config["config"];
    assert_eq!(c["User"].as_str(), Some(want.user), "the image's user");
    assert_eq!(c["Entrypoint"], serde_json::json!([&want.entrypoint]), "the entrypoint");
    assert!(c["Env"]
        .as_array()
        .is_some_and(|env| env.iter().any(|e| e.as_str().is_some_and(|e| e.starts_with("PATH=")))));
    let labels = &c["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"].as_str(), Some(want.title));
    assert_eq!(labels["org.opencontainers.image.version"].as_str(), Some(want.version.as_str()));
    assert!(labels["org.opencontainers.image.source"].as_str().is_some_and(|s| s.starts_with("https://")));
    let gz = work.join("layer.tar.gz");
    fs::write(&gz, blob(&layout, &layers[0])).expect("write layer");
    let raw = run("gzip", &["-dc", path_arg(&gz)]);
    let diff_id = format!("sha256:{}", sha256_hex(&raw));
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([diff_id]), "diff_ids name the uncompressed layer");
    let layer_tar = work.join("layer.tar");
    fs::write(&layer_tar, &raw).expect("write layer");

    // The layer: only what the generator names.
    let listing = list_layer(&layer_tar);
    for bad in FORBIDDEN {
        assert!(!listing.contains_key(bad), "{bad} is in the layer");
    }
    for path in listing.keys() {
        let first = path.split('/').next().unwrap_or_default();
        assert!(
            !["bin", "sbin"].contains(&first) && !path.starts_with("usr/bin") && !path.starts_with("usr/sbin"),
            "{path}: nothing goes in a bin/ or sbin/ directory"
        );
    }
    let entry = want.entrypoint.trim_start_matches('/');
    for (path, e) in &listing {
        let owner = if path == "home/nonroot" { "65532/65532" } else { "0/0" };
        assert_eq!(e.owner, owner, "{path} is owned by {owner}");
        if e.mode.starts_with('-') {
            let library = LIBRARY_DIRS.iter().any(|d| path.starts_with(&format!("{d}/"))) && path.contains(".so");
            let named = ["etc/passwd", "etc/group", "etc/nsswitch.conf"].contains(&path.as_str()) && !want.bare;
            let ca = path == CA_BUNDLE && want.ca_bundle;
            assert!(path == entry || library || named || ca, "{path} is a file the generator does not name");
        }
    }
    assert_eq!(
        listing.contains_key(CA_BUNDLE),
        want.ca_bundle,
        "the CA bundle is there exactly when the binary needs it"
    );
    if want.bare {
        assert!(!listing.contains_key("etc") && !listing.contains_key("tmp"), "a bare image has no /etc or /tmp");
    } else {
        assert_eq!(listing.get("tmp").map(|e| e.mode.as_str()), Some("drwxrwxrwt"), "/tmp is 1777");
    }

    run("tar", &["-xf", path_arg(&layer_tar), "-C", path_arg(&root)]);
    if !want.bare {
        let passwd = fs::read_to_string(root.join("etc/passwd")).expect("etc/passwd");
        assert!(passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")), "etc/passwd has nonroot");
        assert!(passwd.lines().any(|l| l.starts_with("root:x:0:0:")), "etc/passwd has root");
        let group = fs::read_to_string(root.join("etc/group")).expect("etc/group");
        assert!(group.lines().any(|l| l.starts_with("nonroot:x:65532:")), "etc/group has nonroot");
    }
    let binary = root.join(entry);
    let meta =
        fs::symlink_metadata(&binary).unwrap_or_else(|e| panic!("the entrypoint {entry} is not in the layer: {e}"));
    assert!(meta.is_file() && meta.permissions().mode() & 0o111 != 0, "{entry} is an executable file");
    match interpreter(&binary) {
        Some(loader) => {
            let path = resolve_in(&root, &loader).filter(|p| p.is_file());
            assert!(path.is_some(), "the loader {loader} does not resolve to a file in the layer");
            let libraries = check_libraries(&root, &binary);
            assert!(libraries.iter().any(|l| l.starts_with("libc.so")), "a dynamic binary links libc: {libraries:?}");
        }
        None => assert!(needed(&binary).is_empty(), "a static binary needs no libraries"),
    }
    assert!(readelf("-SW", &binary).lines().all(|l| !l.contains(".symtab")), "{entry} is stripped");

    // The layer alone runs the binary, as the image's user (chroot needs root).
    let euid = String::from_utf8(run("id", &["-u"])).expect("id prints UTF-8");
    if euid.trim() == "0" {
        let userspec = format!("--userspec={}", want.user);
        let mut args = vec![userspec.as_str(), path_arg(&root), want.entrypoint.as_str()];
        args.extend_from_slice(want.probe);
        let out = Command::new("chroot").args(&args).output().expect("chroot");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains(want.says), "chroot {args:?} failed: {text}");
    } else {
        eprintln!("not root: {} is not run in a chroot of its layer", want.entrypoint);
    }
    fs::remove_dir_all(&work).expect("remove the work dir");
}

fn tiepdan(binary: &'static str, key: &str, ca_bundle: bool) -> Expected {
    let version = workspace_package("version");
    Expected {
        archive: format!("{binary}.oci.tar"),
        name: format!("{}:{version}", image_name(key)),
        title: binary,
        version,
        user: "65532:65532",
        entrypoint: format!("/usr/local/bin/{binary}"),
        probe: &["--help"],
        says: "Usage:",
        bare: false,
        ca_bundle,
    }
}

#[test]
fn the_operator_image() {
    // The kube client's native roots (rustls-platform-verifier) read the system CA bundle.
    check(&tiepdan("tiepdan-operator", "OPERATOR_IMAGE", true));
}

#[test]
fn the_media_worker_image() {
    // Its only TLS client (OTLP over reqwest) has webpki-roots compiled in.
    check(&tiepdan("tiepdan-media-worker", "MEDIA_WORKER_IMAGE", false));
}

#[test]
fn the_pause_image() {
    let name = image_name("PAUSE_IMAGE");
    let version = name.rsplit_once(':').expect("a tagged pause image").1.to_owned();
    check(&Expected {
        archive: "pause.oci.tar".to_owned(),
        name,
        title: "pause",
        version,
        // Upstream's pause image runs as 65535.
        user: "65535:65535",
        entrypoint: "/pause".to_owned(),
        probe: &["-v"],
        says: "pause.c",
        bare: true,
        ca_bundle: false,
    });
}
