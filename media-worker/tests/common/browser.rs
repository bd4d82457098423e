//! Debian's Chromium driven over WebDriver (chromium-driver), with fake camera and microphone:
//! enough W3C WebDriver for the console tests.
//!
//! The client is blocking on purpose: calls take milliseconds, the worker under test runs on
//! other threads, and `Drop` can close browser sessions even while a failed test unwinds.

use super::WAIT;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Debian's `/usr/bin/chromium` is a shell wrapper; chromedriver must start the real binary.
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What the fake permission prompt answers when the page asks for camera and microphone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Camera {
    Allowed,
    Refused,
}

/// A chromedriver process; killed (by PID) on drop, after its browser sessions are closed.
pub struct Driver {
    child: Child,
    addr: SocketAddr,
    /// The user chromedriver and its browsers run as (`None`: this process's).
    uid: Option<u32>,
    /// Their home directory when `uid` is set, removed on drop.
    home: Option<PathBuf>,
    /// Sessions still open, closed on drop so no browser outlives a failed test.
    sessions: Arc<Mutex<Vec<String>>>,
}

impl Driver {
    pub fn start() -> Driver {
        Self::start_with(None)
    }

    /// chromedriver and every browser it starts as the user `uid` (group `uid` too), with a home
    /// of their own: a test can then tell their packets apart (an iptables owner match).
    pub fn start_as(uid: u32) -> Driver {
        Self::start_with(Some(uid))
    }

    fn start_with(uid: Option<u32>) -> Driver {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install Debian's chromium and chromium-driver (scripts/install-deps.sh does)"
            );
        }
        let mut command = Command::new(CHROMEDRIVER);
        command.arg("--port=0").stdout(Stdio::piped()).stderr(Stdio::null());
        let home = uid.map(|uid| {
            use std::os::unix::process::CommandExt as _;
            let home = std::env::temp_dir().join(format!("tiepdan-chromium-home-{}-{uid}", std::process::id()));
            let _ = std::fs::remove_dir_all(&home);
            std::fs::create_dir_all(&home).expect("home dir");
            std::os::unix::fs::chown(&home, Some(uid), Some(uid)).expect("chown the home dir");
            command.uid(uid).gid(uid).env("HOME", &home).env_remove("XDG_RUNTIME_DIR");
            home
        });
        let mut child = command.spawn().expect("start chromedriver");
        let stdout = child.stdout.take().expect("chromedriver stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // chromedriver picks a free port and says which; keep reading so it never blocks on a
        // full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(port) = line.split("started successfully on port ").nth(1) {
                    let _ = tx.send(port.trim_end_matches('.').parse::<u16>().ok());
                    break;
                }
            }
            for _ in lines {}
        });
        let port = rx.recv_timeout(WAIT).ok().flatten().expect("chromedriver reports its port");
        // It says so a moment before it accepts connections.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver does not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Driver { child, addr, uid, home, sessions: Arc::default() }
    }

    /// A new headless browser with its own profile directory, camera and microphone allowed.
    pub fn browser(&self, name: &str) -> Browser {
        self.browser_with(name, Camera::Allowed)
    }

    pub fn browser_with(&self, name: &str, camera: Camera) -> Browser {
        self.browser_with_args(name, camera, &[])
    }

    /// [`Driver::browser_with`] plus more Chromium switches, e.g. a certificate to trust.
    pub fn browser_with_args(&self, name: &str, camera: Camera, extra_args: &[String]) -> Browser {
        let profile = std::env::temp_dir().join(format!("tiepdan-chromium-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("profile dir");
        if let Some(uid) = self.uid {
            std::os::unix::fs::chown(&profile, Some(uid), Some(uid)).expect("chown the profile dir");
        }
        let mut args = vec![
            "--headless".to_owned(),
            // Fake camera (a test pattern) and microphone (a beep), permission granted without a
            // prompt: what an officer's browser has after clicking "Allow".
            "--use-fake-device-for-media-stream".to_owned(),
            match camera {
                Camera::Allowed => "--use-fake-ui-for-media-stream".to_owned(),
                Camera::Refused => "--use-fake-ui-for-media-stream=deny".to_owned(),
            },
            // Chromium refuses its sandbox as root, which CI is; the rest keeps it quiet and offline.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--window-size=1280,800".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        // A microphone that speaks, unless the test gives its own file: Chromium's default beep is
        // short enough that the SFU's half-second level average sometimes calls it silence, which
        // made a working office's checklist (sfuAudio) flaky.
        if !extra_args.iter().any(|a| a.starts_with("--use-file-for-fake-audio-capture")) {
            let speech = profile.join("speech.wav");
            write_speech_wav(&speech);
            if let Some(uid) = self.uid {
                std::os::unix::fs::chown(&speech, Some(uid), Some(uid)).expect("chown the speech file");
            }
            args.push(format!("--use-file-for-fake-audio-capture={}", speech.display()));
        }
        args.extend_from_slice(extra_args);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let value = command(self.addr, "POST", "/session", Some(capabilities));
        let session = value["sessionId"].as_str().expect("session id").to_owned();
        self.sessions.lock().expect("sessions").push(session.clone());
        Browser { driver: self.addr, session, profile, name: name.to_owned(), sessions: Arc::clone(&self.sessions) }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let open = std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|e| e.into_inner()));
        for session in open {
            let _ = request(self.addr, "DELETE", &format!("/session/{session}"), None);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(home) = &self.home {
            let _ = std::fs::remove_dir_all(home);
        }
    }
}

/// One browser window (one WebDriver session). Close it with [`Browser::close`]; chromedriver
/// also ends it when it is killed.
pub struct Browser {
    driver: SocketAddr,
    session: String,
    profile: PathBuf,
    pub name: String,
    sessions: Arc<Mutex<Vec<String>>>,
}

impl Browser {
    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        command(self.driver, "POST", &self.path("/url"), Some(json!({"url": url})));
    }

    /// Runs `script` in every page this window loads from now on, before the page's own scripts
    /// (Chrome DevTools' `Page.addScriptToEvaluateOnNewDocument`, through chromedriver).
    #[allow(dead_code)] // Each test binary compiles this module; only some use it.
    pub fn before_each_page(&self, script: &str) {
        command(
            self.driver,
            "POST",
            &self.path("/goog/cdp/execute"),
            Some(json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": script}})),
        );
    }

    /// Runs `script` (a function body; `return` a value or a promise) and returns its result.
    pub fn eval(&self, script: &str) -> Value {
        command(self.driver, "POST", &self.path("/execute/sync"), Some(json!({"script": script, "args": []})))
    }

    /// Clicks the element matching `css` as a person would (pointer events, a user gesture).
    pub fn click(&self, css: &str) {
        let found =
            command(self.driver, "POST", &self.path("/element"), Some(json!({"using": "css selector", "value": css})));
        let id = found[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("no element {css}")).to_owned();
        command(self.driver, "POST", &self.path(&format!("/element/{id}/click")), Some(json!({})));
    }

    /// Waits (up to [`WAIT`]) until `script` returns something truthy and returns it.
    pub fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.eval(script);
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            if Instant::now() > deadline {
                panic!("{}: timed out waiting for {what}\nconsole:\n{}", self.name, self.console_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn screenshot(&self, to: &Path) {
        let value = command(self.driver, "GET", &self.path("/screenshot"), None);
        let png = base64_decode(value.as_str().expect("base64 screenshot"));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(to, png).expect("write screenshot");
    }

    /// The page's console messages so far (for failure reports).
    pub fn console_log(&self) -> String {
        let value = command(self.driver, "POST", &self.path("/se/log"), Some(json!({"type": "browser"})));
        value
            .as_array()
            .map(|entries| {
                entries.iter().map(|e| format!("{} {}", e["level"], e["message"])).collect::<Vec<_>>().join("\n")
            })
            .unwrap_or_default()
    }

    pub fn close(self) {
        command(self.driver, "DELETE", &self.path(""), None);
        self.sessions.lock().expect("sessions").retain(|s| s != &self.session);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One WebDriver command; returns `value`, panicking with the driver's error otherwise.
fn command(driver: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, body) = request(driver, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let parsed: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
    assert_eq!(status, 200, "{method} {path}: {}", parsed["value"]);
    parsed["value"].clone()
}

/// HTTP/1.1 to chromedriver. It answers `Connection: close` but keeps the socket open, so the
/// body is read by its Content-Length rather than to the end of the stream.
fn request(driver: SocketAddr, method: &str, path: &str, body: Option<Value>) -> std::io::Result<(u16, String)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(driver)?;
    // Generous: creating a session starts a browser, on a machine shared with compilers.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {driver}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).expect("valid base64")
}

/// Where test artifacts go: `$CARGO_TARGET_DIR/e2e`, or the workspace's `target/e2e`.
pub fn artifact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("e2e")
}

/// A microphone that hears nothing: one second of 16-bit mono silence at 48 kHz.
#[allow(dead_code)]
pub fn write_silent_wav(path: &Path) {
    write_wav(path, |_| 0);
}

/// A second of something a level meter takes for speech: two tones under a syllable-rate
/// (4 Hz) envelope at about -12 dBFS (Chromium loops the file).
pub fn write_speech_wav(path: &Path) {
    write_wav(path, |i| {
        let t = f64::from(i) / 48_000.0;
        let envelope = (std::f64::consts::TAU * 4.0 * t).sin().abs();
        let tone = 0.6 * (std::f64::consts::TAU * 220.0 * t).sin() + 0.4 * (std::f64::consts::TAU * 660.0 * t).sin();
        (tone * envelope * 0.25 * f64::from(i16::MAX)) as i16
    });
}

/// A 48 kHz mono 16-bit PCM WAV of one second, sample `i` from `sample(i)`.
fn write_wav(path: &Path, sample: impl Fn(u32) -> i16) {
    let (rate, samples) = (48_000u32, 48_000u32);
    let data = samples * 2;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data.to_le_bytes());
    for i in 0..samples {
        bytes.extend_from_slice(&sample(i).to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write the wav");
}
