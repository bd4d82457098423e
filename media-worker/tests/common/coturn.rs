//! A real coturn (Debian's `turnserver` 4.6) for the tests: our own process with our own config
//! in a temporary directory, on 127.0.0.1 only, `use-auth-secret` (the TURN REST API), TURN over
//! UDP/TCP on one port and TURN over TLS on another with a fresh self-signed certificate. Stopped
//! by PID on drop. The package's system service is never used.

use super::WAIT;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TURNSERVER: &str = "/usr/bin/turnserver";
pub const UCLIENT: &str = "/usr/bin/turnutils_uclient";
pub const REALM: &str = "tiepdan.test";

pub struct Coturn {
    child: Child,
    dir: PathBuf,
    /// TURN over UDP and TCP.
    pub port: u16,
    /// TURN over TLS.
    pub tls_port: u16,
    /// base64(SHA-256(SPKI)) of the TLS certificate, for Chromium's
    /// `--ignore-certificate-errors-spki-list`.
    pub spki_pin: String,
}

/// A port free for both TCP and UDP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Coturn {
    pub fn start(name: &str, secret: &str) -> Coturn {
        assert!(
            Path::new(TURNSERVER).exists(),
            "{TURNSERVER} is missing: install Debian's coturn (scripts/install-deps.sh does)"
        );
        let dir = std::env::temp_dir().join(format!("tiepdan-coturn-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("coturn dir");
        let spki_pin = write_certificate(&dir);
        let (port, tls_port) = (free_port(), free_port());
        let config = format!(
            "listening-ip=127.0.0.1\n\
             relay-ip=127.0.0.1\n\
             listening-port={port}\n\
             tls-listening-port={tls_port}\n\
             no-dtls\n\
             no-tlsv1\n\
             no-tlsv1_1\n\
             use-auth-secret\n\
             static-auth-secret={secret}\n\
             realm={REALM}\n\
             cert={dir}/cert.pem\n\
             pkey={dir}/key.pem\n\
             fingerprint\n\
             # The worker under test is on loopback too; coturn refuses loopback peers otherwise.\n\
             allow-loopback-peers\n\
             no-multicast-peers\n\
             min-port=50000\n\
             max-port=50999\n\
             userdb={dir}/turndb\n\
             pidfile={dir}/turnserver.pid\n\
             log-file={dir}/turnserver.log\n\
             simple-log\n\
             verbose\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("turnserver.conf"), config).expect("coturn config");
        let child = Command::new(TURNSERVER)
            .arg("-c")
            .arg(dir.join("turnserver.conf"))
            .arg("--no-cli")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        let coturn = Coturn { child, dir, port, tls_port, spki_pin };
        let deadline = Instant::now() + WAIT;
        for port in [port, tls_port] {
            while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
                assert!(Instant::now() < deadline, "coturn does not listen on {port}:\n{}", coturn.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        coturn
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turnserver.log")).unwrap_or_default()
    }

    /// Waits until coturn's log has a line containing every one of `needles`; returns it.
    pub fn log_line_until(&self, what: &str, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.log().lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "coturn never logged {what}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `turnutils_uclient` allocating with these credentials (over TCP when `tcp`, else UDP),
    /// relaying one message between two of its own allocations. (Its TLS mode `-t -S` had the
    /// connection reset by this coturn and was not pursued: Chromium's TURN/TLS is what the
    /// browser test covers.)
    pub fn uclient(&self, username: &str, password: &str, tcp: bool) -> Output {
        let mut command = Command::new(UCLIENT);
        command.args(["-y", "-c", "-n", "1", "-m", "1", "-u", username, "-w", password]);
        command.args(["-p", &self.port.to_string()]);
        if tcp {
            command.arg("-t");
        }
        command.arg("127.0.0.1").stdin(Stdio::null()).output().expect("run turnutils_uclient")
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost; returns its SPKI pin.
fn write_certificate(dir: &Path) -> String {
    use base64::Engine as _;
    use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData as _, SanType};
    use sha2::{Digest as _, Sha256};

    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.distinguished_name.push(DnType::CommonName, "tiepdan test TURN");
    let cert = params.self_signed(&key).expect("self-signed");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(key.subject_public_key_info()))
}
