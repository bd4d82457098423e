//! Real processes for the entry's tests: media workers (the `tiepdan-media-worker` binary) with a
//! session certificate from a test CA standing in for the operator's, and the `tiepdan-entry`
//! binary with a certificate of its own for the entry's host name. Every process is killed by
//! its PID on drop; every log line is kept, so a test can check what the servers wrote.

#![allow(dead_code)] // each test binary uses a different subset

#[path = "../../../media-worker/tests/common/browser.rs"]
pub mod browser;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiepdan_contract::ids::{PointName, SessionId};
use tiepdan_contract::tokens::{generate_keys, JoinClaims, KeyUse, SigningKeys};
use tiepdan_contract::Role;

pub const SESSION_NAMESPACE: &str = "ubnd-hung-yen";
pub const SESSION_NAME: &str = "tiep-dan-thang-6";
/// The host offices' links name (mapped to 127.0.0.1 for the browser).
pub const ENTRY_HOST: &str = "tiepdan.hungyen.test";

/// Upper bound for any wait on a condition in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn session() -> SessionId {
    format!("{SESSION_NAMESPACE}/{SESSION_NAME}").parse().expect("session id")
}

/// The name the session's certificates cover, as the operator issues them.
pub fn signaling_name() -> String {
    format!("{SESSION_NAME}-signaling.{SESSION_NAMESPACE}.svc")
}

/// The worker binary: `TIEPDAN_MEDIA_WORKER_BIN`, else the debug build in Cargo's target dir.
pub fn worker_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TIEPDAN_MEDIA_WORKER_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    let bin = target.join("debug/tiepdan-media-worker");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p media-worker --bin tiepdan-media-worker` first (scripts/test builds it)",
        bin.display()
    );
    bin
}

/// A directory of its own, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(purpose: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tiepdan-entry-{purpose}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, and leaves it signs into `kubernetes.io/tls`-style directories.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf written to a directory.
pub struct Leaf {
    /// base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's `--ignore-certificate-errors-spki-list` takes.
    pub spki_pin: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA");
        Self { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes `tls.crt` (leaf, then CA) and `tls.key` for `dns_name` into `dir`.
    pub fn issue(&self, dns_name: &str, dir: &Path) -> Leaf {
        use base64::Engine as _;
        use rcgen::PublicKeyData as _;
        use sha2::{Digest as _, Sha256};
        std::fs::create_dir_all(dir).expect("tls dir");
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec![dns_name.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, dns_name);
        let leaf = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        std::fs::write(dir.join("tls.crt"), format!("{}{}", leaf.pem(), self.issuer.pem())).expect("tls.crt");
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("tls.key");
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.der()).expect("parse the leaf");
        let spki = parsed.tbs_certificate.subject_pki.raw;
        assert_eq!(spki, key.subject_public_key_info().as_slice());
        Leaf { spki_pin: base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki)) }
    }
}

/// The pool's keys, written where a worker reads them.
pub struct Keys {
    pub signing: SigningKeys,
    pub join_public: PathBuf,
    pub admin_public: PathBuf,
}

impl Keys {
    pub fn write(dir: &Path) -> Self {
        let (signing, _) = generate_keys();
        let join_public = dir.join("join.pub.pem");
        let admin_public = dir.join("admin.pub.pem");
        std::fs::write(&join_public, signing.public_pem(KeyUse::Join).expect("pem")).expect("write");
        std::fs::write(&admin_public, signing.public_pem(KeyUse::Admin).expect("pem")).expect("write");
        Self { signing, join_public, admin_public }
    }

    /// A point's join token for [`session`], valid for two hours.
    pub fn token(&self, point: &str, role: Role) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let now = i64::try_from(now).expect("now");
        let point: PointName = point.parse().expect("point name");
        let claims =
            JoinClaims::for_point(&session(), &point, "UBND xã Tân Hưng", role, "Tiếp công dân", now - 60, 7200);
        self.signing.key(KeyUse::Join).mint_join(&claims).expect("mint")
    }
}

/// A running process whose stderr (JSON log lines) is kept in memory; killed by its PID on drop.
pub struct Process {
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    /// The fields of its "listening" line.
    pub listening: Value,
}

impl Process {
    fn spawn(mut command: Command, what: &str) -> Process {
        let mut child = command
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = Arc::clone(&log);
        // Keeps reading to the end, so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                kept.lock().expect("log").push(line);
                if value["fields"]["message"] == "listening" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(value["fields"].clone());
                    }
                }
            }
        });
        let listening = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let log = log.lock().expect("log").join("\n");
            panic!("{what} did not report listening within {WAIT:?}:\n{log}")
        });
        Process { child, log, listening }
    }

    pub fn addr(&self, field: &str) -> SocketAddr {
        self.listening[field]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{field} in {}", self.listening))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL by PID, as a node loses a pod; waits for the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A worker bound to [`session`], serving signaling over TLS from `tls_dir`.
pub fn spawn_worker(keys: &Keys, tls_dir: &Path, rtc_ports: (u16, u16)) -> Process {
    let mut command = Command::new(worker_bin());
    command
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--signaling-listen", "127.0.0.1:0"])
        .arg("--tls-dir")
        .arg(tls_dir)
        .args(["--workers", "1", "--session-title", "Tiếp công dân", "--session-id"])
        .arg(session().to_string())
        .args(["--rtc-min-port", &rtc_ports.0.to_string(), "--rtc-max-port", &rtc_ports.1.to_string()])
        .arg("--join-public-key-file")
        .arg(&keys.join_public)
        .arg("--admin-public-key-file")
        .arg(&keys.admin_public);
    Process::spawn(command, "the worker")
}

/// The entry on an ephemeral port, with its certificate in `tls_dir`, trusting `ca_file` for
/// workers and routing by `routes_file`.
pub fn spawn_entry(tls_dir: &Path, ca_file: &Path, routes_file: &Path) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tiepdan-entry"));
    command
        .args(["--log-format", "json", "--listen", "127.0.0.1:0", "--tls-dir"])
        .arg(tls_dir)
        .arg("--upstream-ca-file")
        .arg(ca_file)
        .arg("--routes-file")
        .arg(routes_file);
    Process::spawn(command, "the entry")
}

/// Points the session at `worker` (or at none) in the routes file, as the operator's failover
/// does in the cluster.
pub fn route(routes_file: &Path, worker: Option<SocketAddr>) {
    let target = match worker {
        Some(addr) => serde_json::json!({"address": addr.to_string(), "serverName": signaling_name()}),
        None => Value::Null,
    };
    let routes = serde_json::json!({"sessions": {session().to_string(): target}});
    // Written whole and renamed, so the entry never reads half a file.
    let tmp = routes_file.with_extension("tmp");
    std::fs::write(&tmp, routes.to_string()).expect("write routes");
    std::fs::rename(&tmp, routes_file).expect("rename routes");
}
