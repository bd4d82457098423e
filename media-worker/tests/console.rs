//! The reception-point console in real Chromium (Debian's chromium + chromium-driver, fake
//! camera and microphone) against a worker on 127.0.0.1: three points see and hear each other,
//! get verified, and come back by themselves after the worker restarts; broken links and a
//! refused camera get clear Vietnamese messages.

mod common;

use common::browser::{artifact_dir, write_silent_wav, write_speech_wav, Browser, Camera, Driver};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tiepdan_media_worker::config::SignalingTls;
use tiepdan_media_worker::signaling::protocol::Role;
use tiepdan_media_worker::tls::certificate_sha256;
use tiepdan_media_worker::tokens::{unix_now, JoinClaims};

const BINARY: &str = env!("CARGO_BIN_EXE_tiepdan-media-worker");

/// One browser test at a time: three Chromiums decoding video already fill two cores.
static BROWSERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bound: each page decodes every other point within this after joining.
const MEDIA_DEADLINE: Duration = Duration::from_secs(15);
/// Every point verified after joining: the media period (3 s here) and the checklist (a few
/// microphone beeps, the camera's frames, the host's media decoded), with slack for busy cores.
const VERIFY_DEADLINE: Duration = Duration::from_secs(30);
/// Reconnection after a restart: the drain (1 s), the backoff (1 s, then 2 s, ...) and a join.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(30);

struct Point {
    name: &'static str,
    display: &'static str,
    role: Role,
}

const POINTS: [Point; 3] = [
    Point { name: "tinh-hung-yen", display: "UBND tỉnh Hưng Yên", role: Role::Host },
    Point { name: "phuong-ban-yen-nhan", display: "UBND phường Bần Yên Nhân", role: Role::Participant },
    Point { name: "xa-nhan-hoa", display: "UBND xã Nhân Hòa", role: Role::Participant },
];

fn point_claims(point: &Point, nbf: i64, ttl: i64) -> JoinClaims {
    let mut claims = JoinClaims::for_point(
        &session(),
        &point.name.parse().expect("point name"),
        point.display,
        point.role,
        "Tiếp công dân định kỳ tháng 6",
        nbf,
        ttl,
    );
    claims.start = Some(rfc3339(nbf + 3600));
    claims.end = Some(rfc3339(nbf + 3 * 3600));
    claims
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).expect("timestamp").to_string()
}

fn mint(claims: &JoinClaims) -> String {
    key().mint_join(claims).expect("mint")
}

/// The real binary, as the demo and the pods run it; restartable on the same address.
struct WorkerProcess {
    child: Option<Child>,
    addr: SocketAddr,
}

impl WorkerProcess {
    fn spawn(listen: &str, dir: &Path, log_name: &str) -> WorkerProcess {
        let keys = KeyFiles::write(dir);
        let mut child = Command::new(BINARY)
            .args(["--log-format", "json", "serve", "--listen", listen, "--workers", "1"])
            .args(["--session-id", SESSION, "--session-title", "Tiếp công dân định kỳ tháng 6"])
            // Short enough for a test, long enough for several healthy statistics polls.
            .args(["--verify-seconds", "3", "--stats-interval-ms", "250", "--drain-timeout-seconds", "1"])
            .args(["--rtc-min-port", "46000", "--rtc-max-port", "46999"])
            .args(keys.serve_args())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the worker");
        let stderr = child.stderr.take().expect("stderr");
        let log_path = dir.join(log_name);
        let (tx, rx) = std::sync::mpsc::channel();
        // Copy the log to a file (for failures) and report the listening address.
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(&log_path).expect("worker log");
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if let Some(sender) = tx.as_ref() {
                    let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if value["fields"]["message"] == "listening" {
                        let addr = value["fields"]["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
                        let _ = sender.send(addr);
                        tx = None;
                    }
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).ok().flatten().expect("the worker reports its address");
        WorkerProcess { child: Some(child), addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, as Kubernetes stops a pod; waits (bounded) for the drain to finish.
    async fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let status = eventually("the worker to exit", || {
            let status = child.try_wait().expect("wait");
            async move { status }
        })
        .await;
        assert!(status.success(), "the worker exited with {status:?}");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `count` points are verified; on a timeout, says which checklist items were not
/// passed.
async fn verified_within(
    addr: SocketAddr,
    count: usize,
    deadline: Duration,
) -> tiepdan_media_worker::verification::WorkerStatus {
    let until = Instant::now() + deadline;
    loop {
        let status = status(addr).await;
        if status.points.len() == count && status.points.iter().all(|p| p.verified) {
            return status;
        }
        if Instant::now() > until {
            let open: Vec<_> = status
                .points
                .iter()
                .map(|p| {
                    let items: Vec<_> = p
                        .checks
                        .iter()
                        .filter(|c| serde_json::to_value(c.state).ok() != Some(Value::from("passed")))
                        .map(|c| (c.item.as_str(), c.state))
                        .collect();
                    (p.name.to_string(), p.verified, items)
                })
                .collect();
            panic!("not every point verified within {deadline:?}: {open:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a page decoded from the others, from `window.tiepdan.stats()` (per consumer: transport
/// statistics would mix in the probe stream).
#[derive(Debug, Clone, Copy, Default)]
struct Received {
    /// Every other point's video has decoded frames and its audio has packets and samples.
    complete: bool,
    any_frame: bool,
    /// Frames decoded over all video consumers.
    frames: u64,
}

fn received(stats: &Value, me: &str, points: &[Point]) -> Received {
    let consumers = stats["consumers"].as_array().cloned().unwrap_or_default();
    let of = |point: &str, kind: &str| {
        consumers.iter().filter(move |c| c["point"] == point && c["kind"] == kind).collect::<Vec<_>>()
    };
    let number = |c: &Value, field: &str| c[field].as_u64().unwrap_or(0);
    let mut complete = stats["phase"] == "room";
    for other in points.iter().filter(|p| p.name != me) {
        let video = of(other.name, "video").iter().any(|c| number(c, "framesDecoded") > 0);
        let audio = of(other.name, "audio")
            .iter()
            .any(|c| number(c, "packetsReceived") > 0 && number(c, "totalSamplesReceived") > 0);
        complete &= video && audio;
    }
    let frames: u64 = consumers.iter().filter(|c| c["kind"] == "video").map(|c| number(c, "framesDecoded")).sum();
    Received { complete, any_frame: frames > 0, frames }
}

fn stats(page: &Browser) -> Value {
    page.eval("return window.tiepdan.stats();")
}

/// Polls every page (page `i` is `points[i]`) until each has decoded all the others, or fails
/// after `deadline`. Returns, per page, the time to its first decoded frame and to complete
/// reception, from `since`.
fn until_everyone_receives(
    pages: &[Browser],
    points: &[Point],
    since: &[Instant],
    deadline: Duration,
) -> Vec<(Duration, Duration)> {
    let start = Instant::now();
    let mut first: Vec<Option<Duration>> = vec![None; pages.len()];
    let mut done: Vec<Option<Duration>> = vec![None; pages.len()];
    loop {
        for (i, page) in pages.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let got = received(&stats(page), points[i].name, points);
            if got.any_frame && first[i].is_none() {
                first[i] = Some(since[i].elapsed());
            }
            if got.complete {
                done[i] = Some(since[i].elapsed());
            }
        }
        if done.iter().all(Option::is_some) {
            break;
        }
        if start.elapsed() > deadline {
            for (i, page) in pages.iter().enumerate().filter(|(i, _)| done[*i].is_none()) {
                eprintln!("{} stats: {:#}", points[i].name, stats(page));
                eprintln!("{} console:\n{}", points[i].name, page.console_log());
            }
            panic!("not every page decoded every other point within {deadline:?}: {done:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    first.into_iter().zip(done).map(|(f, d)| (f.unwrap_or_default(), d.unwrap_or_default())).collect()
}

/// Opens `point`'s link (valid from a minute before `now`) on `worker` and waits until the
/// lobby lets the officer join.
fn open_link(page: &Browser, worker: &WorkerProcess, point: &Point, now: i64) {
    page.goto(&format!("{}/join#token={}", worker.url(), mint(&point_claims(point, now - 60, 7200))));
    page.until("the join-check to enable joining", "return !document.getElementById('join').disabled;");
}

/// Clicks "Vào phiên" on every page, returning when each was clicked.
fn click_join(pages: &[Browser]) -> Vec<Instant> {
    pages
        .iter()
        .map(|page| {
            page.click("#join");
            Instant::now()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_points_see_and_hear_each_other_get_verified_and_survive_a_worker_restart() {
    let _one_at_a_time = BROWSERS.lock().await;
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let dir = std::env::temp_dir().join(format!("tiepdan-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut worker = WorkerProcess::spawn("127.0.0.1:0", &dir, "worker-1.log");
    let addr = worker.addr;
    let now = unix_now();
    let driver = Driver::start();

    let mut pages = Vec::new();
    for point in &POINTS {
        let page = driver.browser(point.name);
        let token = mint(&point_claims(point, now - 60, 7200));
        page.goto(&format!("{}/join#token={token}", worker.url()));
        pages.push(page);
    }
    for page in &pages {
        // http://127.0.0.1 is a secure context, so the camera works without TLS.
        assert_eq!(page.eval("return window.isSecureContext;"), Value::Bool(true));
        page.until("the join-check to enable joining", "return !document.getElementById('join').disabled;");
    }

    // The self-test on the host's page: camera, microphone, and a loopback through the SFU.
    let host = &pages[0];
    host.until("the self-test button", "return !document.getElementById('self-test').disabled;");
    let self_test_started = Instant::now();
    host.click("#self-test");
    let result = host.until("the self-test result", "return window.tiepdan.selfTest();");
    let self_test_time = self_test_started.elapsed();
    assert_eq!(result["camera"]["ok"], true, "{result:#}");
    assert_eq!(result["microphone"]["ok"], true, "{result:#}");
    assert_eq!(result["network"]["ok"], true, "{result:#}");
    let summary = host.eval("return document.getElementById('self-test-status').textContent;");
    assert!(summary.as_str().is_some_and(|s| s.starts_with("Đạt")), "{summary}");
    host.screenshot(&artifacts.join("console-self-test.png"));
    host.until("the join button after the self-test", "return !document.getElementById('join').disabled;");

    let mut clicked = Vec::new();
    for page in &pages {
        page.click("#join");
        clicked.push(Instant::now());
    }
    let timings = until_everyone_receives(&pages, &POINTS, &clicked, MEDIA_DEADLINE);
    let last_click = *clicked.last().expect("three clicks");
    let verified = verified_within(addr, 3, VERIFY_DEADLINE).await;
    let verification_time = last_click.elapsed();
    for point in &POINTS {
        let status = verified.points.iter().find(|p| p.name.as_str() == point.name).expect("listed");
        assert_eq!(status.display_name, point.display);
        // The worker cut each office once its other items passed, and the console came back by
        // itself (the checklist's `reconnect` item); verification needs it.
        assert_eq!(check_state(&verified, point.name, "reconnect"), "passed", "{}", point.name);
    }
    let interruptions = std::fs::read_to_string(dir.join("worker-1.log")).unwrap_or_default();
    assert_eq!(
        interruptions.matches("interrupting the point to prove it reconnects").count(),
        POINTS.len(),
        "one interruption per point: {interruptions}"
    );
    let mut frames = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        frames.push(received(&stats(page), POINTS[i].name, &POINTS).frames);
    }

    // What a person sees: a participant's page with the host's larger tile, the other point and
    // their own picture, all with video.
    let participant = &pages[1];
    participant.until("three tiles with video", "return document.querySelectorAll('.tile.has-video').length === 3;");
    let tiles = participant.eval("return [...document.querySelectorAll('.tile .name')].map(n => n.textContent);");
    let tiles = tiles.to_string();
    for point in &POINTS {
        assert!(tiles.contains(point.display), "{tiles} lacks {}", point.display);
    }
    let host_tile = participant.eval("return document.querySelector('.tile.host')?.dataset.point ?? null;");
    assert_eq!(host_tile, POINTS[0].name);
    let screenshot = artifacts.join("console-3-points.png");
    participant.screenshot(&screenshot);

    // Mute and unmute: the button and the own tile say so.
    participant.click("#mic-toggle");
    assert_eq!(participant.eval("return document.getElementById('mic-toggle').textContent;"), "Bật micro");
    assert_eq!(
        participant.eval("return document.querySelector('.tile.self .muted-flag')?.textContent ?? null;"),
        "Micro đang tắt"
    );
    participant.click("#mic-toggle");
    assert_eq!(participant.eval("return document.querySelector('.tile.self .muted-flag') === null;"), true);

    // The worker restarts (SIGTERM, drain, exit, a new process on the same address): every page
    // reconnects by itself and receives the others again.
    worker.terminate().await;
    let restarted_at = Instant::now();
    let _restarted = WorkerProcess::spawn(&addr.to_string(), &dir, "worker-2.log");
    let since = vec![restarted_at; pages.len()];
    let reconnect = until_everyone_receives(&pages, &POINTS, &since, RECONNECT_DEADLINE);

    eprintln!("self-test: {:.1} s", self_test_time.as_secs_f64());
    for (i, ((first, all), frames)) in timings.iter().zip(&frames).enumerate() {
        eprintln!(
            "{}: first decoded frame {:.2} s, every other point decoded {:.2} s, {frames} frames decoded",
            POINTS[i].name,
            first.as_secs_f64(),
            all.as_secs_f64()
        );
    }
    eprintln!("all three verified {:.2} s after the last join", verification_time.as_secs_f64());
    for (i, (_, all)) in reconnect.iter().enumerate() {
        eprintln!("{}: receiving again {:.2} s after the restart", POINTS[i].name, all.as_secs_f64());
    }
    eprintln!("screenshot: {}", screenshot.canonicalize().unwrap_or(screenshot.clone()).display());

    for page in pages {
        page.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A camera that films black: a few 160×120 frames of Y=0 (full range, `C420jpeg`), which
/// Chromium loops as its fake capture.
fn write_black_y4m(path: &Path) {
    let (w, h) = (160, 120);
    let mut bytes = format!("YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..5 {
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend(std::iter::repeat_n(0u8, w * h));
        bytes.extend(std::iter::repeat_n(128u8, w * h / 2));
    }
    std::fs::write(path, bytes).expect("write the y4m");
}

/// A point's check item from `/v1/status`, as JSON (`{"item", "state", ...}`).
fn check_state(status: &tiepdan_media_worker::verification::WorkerStatus, point: &str, item: &str) -> String {
    let point = status.points.iter().find(|p| p.name.as_str() == point);
    let check = point.and_then(|p| p.checks.iter().find(|c| c.item.as_str() == item));
    check.map(|c| serde_json::to_value(c.state).expect("state").as_str().unwrap_or("").to_owned()).unwrap_or_default()
}

/// The connection checklist on a page: item -> state.
fn page_checks(page: &Browser) -> std::collections::BTreeMap<String, String> {
    let checks = page.eval("return window.tiepdan.checks();");
    checks
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| (c["item"].as_str().unwrap_or("").to_owned(), c["state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// Polls `/v1/status` until `decided` accepts the points' checklists, for as long as the console
/// takes to give up on an item (12 s) plus joining and media; on a timeout, prints each page's
/// checklist and console log and fails with the points' status.
async fn checklist_until(
    addr: SocketAddr,
    pages: &[Browser],
    decided: impl Fn(&tiepdan_media_worker::verification::WorkerStatus) -> bool,
) -> tiepdan_media_worker::verification::WorkerStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status(addr).await;
        if decided(&status) {
            return status;
        }
        if Instant::now() > deadline {
            for page in pages {
                eprintln!("checks: {:?}\nconsole:\n{}", page_checks(page), page.console_log());
            }
            panic!(
                "the checklist did not come out as expected: {:#}",
                serde_json::to_value(&status.points).expect("json")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_camera_and_a_silent_microphone_are_not_verified_and_the_checklist_names_them() {
    let _one_at_a_time = BROWSERS.lock().await;
    let dir = std::env::temp_dir().join(format!("tiepdan-console-checks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (black, silent) = (dir.join("black.y4m"), dir.join("silent.wav"));
    write_black_y4m(&black);
    write_silent_wav(&silent);
    let worker = WorkerProcess::spawn("127.0.0.1:0", &dir, "worker-checks.log");
    let addr = worker.addr;
    let now = unix_now();
    let driver = Driver::start();
    // The host has working (fake) devices; one participant films black, the other hears nothing.
    let args: [Vec<String>; 3] = [
        vec![],
        vec![format!("--use-file-for-fake-video-capture={}", black.display())],
        vec![format!("--use-file-for-fake-audio-capture={}", silent.display())],
    ];
    let mut pages = Vec::new();
    for (point, args) in POINTS.iter().zip(&args) {
        let page = driver.browser_with_args(point.name, Camera::Allowed, args);
        open_link(&page, &worker, point, now);
        pages.push(page);
    }
    let joined_at = Instant::now();
    for page in &pages {
        page.click("#join");
    }
    let [host, camera_point, mic_point] = [POINTS[0].name, POINTS[1].name, POINTS[2].name];
    let status = checklist_until(addr, &pages, |status| {
        status.points.iter().any(|p| p.name.as_str() == host && p.verified)
            && check_state(status, camera_point, "camera") == "failed"
            && check_state(status, camera_point, "mediaFlow") == "passed"
            && check_state(status, mic_point, "microphone") == "failed"
            && check_state(status, mic_point, "mediaFlow") == "passed"
            // Only the item at fault fails: the black camera's microphone works (the console
            // and the SFU say so), the silent point's camera works.
            && check_state(status, camera_point, "microphone") == "passed"
            && check_state(status, camera_point, "sfuAudio") == "passed"
            && check_state(status, mic_point, "camera") == "passed"
            && check_state(status, mic_point, "sfuVideo") == "passed"
    })
    .await;
    let verified = |point: &str| status.points.iter().any(|p| p.name.as_str() == point && p.verified);
    assert!(verified(host), "the host, with working devices, is verified");
    assert!(!verified(camera_point), "a black camera is not verified though its media flows");
    assert!(!verified(mic_point), "a silent microphone is not verified though its media flows");
    assert_ne!(check_state(&status, mic_point, "sfuAudio"), "passed", "the SFU heard only silence");
    // Offices still failing an item are not cut to test reconnection: that comes last.
    assert_eq!(check_state(&status, camera_point, "reconnect"), "pending");
    assert_eq!(check_state(&status, mic_point, "reconnect"), "pending");
    assert_eq!(check_state(&status, host, "reconnect"), "passed");
    let since = status
        .points
        .iter()
        .find(|p| p.name.as_str() == camera_point)
        .expect("listed")
        .checks
        .iter()
        .find(|c| c.item.as_str() == "camera")
        .and_then(|c| c.since);
    assert!(since.is_some(), "each item carries its time");

    // Each office's checklist says, in Vietnamese, which item failed and what to do.
    let item_text = |page: &Browser, item: &str| {
        page.eval(&format!("return document.querySelector('#checks li[data-item=\"{item}\"]')?.textContent ?? '';"))
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let camera_page = &pages[1];
    assert_eq!(page_checks(camera_page).get("camera").map(String::as_str), Some("failed"));
    let text = item_text(camera_page, "camera");
    assert!(text.starts_with("Camera có hình") && text.contains("tối đen"), "{text}");
    let mic_page = &pages[2];
    assert_eq!(page_checks(mic_page).get("microphone").map(String::as_str), Some("failed"));
    let text = item_text(mic_page, "microphone");
    assert!(text.starts_with("Micro có tiếng") && text.contains("không thu được tiếng"), "{text}");
    let host_checks = page_checks(&pages[0]);
    assert!(host_checks.values().all(|s| s == "passed"), "{host_checks:?}");
    let shown = camera_page.eval("return document.getElementById('checks-status').textContent;");
    assert!(shown.as_str().is_some_and(|s| s.starts_with("Chưa đạt")), "{shown}");
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    camera_page.screenshot(&artifacts.join("console-checks-black-camera.png"));
    eprintln!("black camera and silent microphone decided {:.1} s after joining", joined_at.elapsed().as_secs_f64());

    for page in pages {
        page.close();
    }
    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_host_fails_the_host_audio_item_of_the_points_that_hear_it() {
    let _one_at_a_time = BROWSERS.lock().await;
    let dir = std::env::temp_dir().join(format!("tiepdan-console-silent-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let silent = dir.join("silent.wav");
    write_silent_wav(&silent);
    let worker = WorkerProcess::spawn("127.0.0.1:0", &dir, "worker-silent-host.log");
    let now = unix_now();
    let driver = Driver::start();
    // The host's microphone hears nothing; the participant speaks.
    let (host, point) = (&POINTS[0], &POINTS[1]);
    let host_page = driver.browser_with_args(
        host.name,
        Camera::Allowed,
        &[format!("--use-file-for-fake-audio-capture={}", silent.display())],
    );
    open_link(&host_page, &worker, host, now);
    let point_page = driver.browser_with_args(point.name, Camera::Allowed, &[]);
    open_link(&point_page, &worker, point, now);
    let pages = [host_page, point_page];
    click_join(&pages);
    // The participant hears nothing from the host: decoded silence must not pass the item,
    // though it adds to the received energy. The host hears the participant: it passes.
    checklist_until(worker.addr, &pages, |status| {
        check_state(status, point.name, "hostAudio") == "failed"
            && check_state(status, point.name, "hostVideo") == "passed"
            && check_state(status, host.name, "hostAudio") == "passed"
            && check_state(status, host.name, "microphone") == "failed"
    })
    .await;
    pages[1].screenshot(&artifact_dir().join("console-checks-silent-host.png"));
    for page in pages {
        page.close();
    }
    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A per-session certificate as the operator issues one: a CA, and a leaf it signs for
/// 127.0.0.1 (an IP SAN), written to a `--tls-dir` (`tls.crt` leaf first, then the CA).
struct SessionCertificate {
    /// Lowercase hex SHA-256 of the leaf's DER, as `/v1/status` reports it.
    sha256: String,
    /// base64(SHA-256(the leaf's SubjectPublicKeyInfo DER)): what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    spki_pin: String,
}

fn write_session_certificate(tls_dir: &Path) -> SessionCertificate {
    use base64::Engine as _;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    use rcgen::{PublicKeyData as _, SanType};
    use sha2::{Digest as _, Sha256};

    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "tiepdan console test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA");
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::IpAddress(Ipv4Addr::LOCALHOST.into())];
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let leaf = params.signed_by(&key, &ca).expect("sign the leaf");
    std::fs::write(tls_dir.join("tls.crt"), format!("{}{}", leaf.pem(), ca.pem())).expect("tls.crt");
    std::fs::write(tls_dir.join("tls.key"), key.serialize_pem()).expect("tls.key");

    // The SPKI exactly as the certificate carries it (what Chromium hashes), checked against
    // rcgen's encoding of the key; `KeyPair::public_key_raw` would be only the key bits.
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.der()).expect("parse the leaf");
    let spki = parsed.tbs_certificate.subject_pki.raw;
    assert_eq!(spki, key.subject_public_key_info().as_slice(), "the leaf carries its key's SPKI");
    SessionCertificate {
        sha256: certificate_sha256(leaf.der()),
        spki_pin: base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki)),
    }
}

/// Split mode, as in a pod: the console and signaling over HTTPS/WSS on their own listener with
/// the session's certificate, the admin surface over plain HTTP. Chromium trusts exactly that
/// certificate (pinned by its key), not certificates in general: without the pin it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_points_see_and_hear_each_other_over_https_and_wss_with_the_session_certificate() {
    let _one_at_a_time = BROWSERS.lock().await;
    let tls_dir = std::env::temp_dir().join(format!("tiepdan-console-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tls_dir);
    std::fs::create_dir_all(&tls_dir).expect("tls dir");
    let certificate = write_session_certificate(&tls_dir);
    let mut config = config();
    config.signaling = Some(SignalingTls::local(&tls_dir));
    let server = start_with(config).await;
    let admin = server.local_addr();
    let base = server.http_url();
    assert_ne!(server.signaling_addr(), admin);
    assert_eq!(base, format!("https://{}", server.signaling_addr()));
    assert_eq!(status(admin).await.tls.expect("a certificate is served").sha256, certificate.sha256);

    let points = &POINTS[..2];
    let now = unix_now();
    let links: Vec<String> =
        points.iter().map(|p| format!("/join#token={}", mint(&point_claims(p, now - 60, 7200)))).collect();

    // A link to the plain admin port is told where to go instead of getting the console.
    let misdirected = get(admin, &links[0]).await;
    assert_eq!(misdirected.status, 421, "{}", misdirected.body);
    assert!(misdirected.body.contains("tls_required"), "{}", misdirected.body);

    let driver = Driver::start();
    // Nothing else makes Chromium accept the certificate: without the pin, an error page.
    let unpinned = driver.browser("tls-unpinned");
    unpinned.goto(&format!("{base}/"));
    let href = unpinned.eval("return location.href;");
    assert!(href.as_str().is_some_and(|h| h.starts_with("chrome-error:")), "without the pin: {href}");
    unpinned.close();

    // The pin works in headless Chromium 156 (with --user-data-dir, which every browser here
    // has); no blanket --ignore-certificate-errors.
    let pin = [format!("--ignore-certificate-errors-spki-list={}", certificate.spki_pin)];
    let mut pages = Vec::new();
    for (point, link) in points.iter().zip(&links) {
        let page = driver.browser_with_args(point.name, Camera::Allowed, &pin);
        page.goto(&format!("{base}{link}"));
        pages.push(page);
    }
    for page in &pages {
        assert_eq!(page.eval("return location.origin;"), base.as_str(), "{}", page.console_log());
        // A trusted certificate, not a clicked-through error: the camera needs a secure context.
        assert_eq!(page.eval("return window.isSecureContext;"), Value::Bool(true));
        // The join-check is a fetch to the page's https: origin.
        page.until("the join-check to enable joining", "return !document.getElementById('join').disabled;");
    }

    let mut clicked = Vec::new();
    for page in &pages {
        page.click("#join");
        clicked.push(Instant::now());
    }
    // Signaling can only have gone over wss: to the TLS listener: an https: page may not open
    // ws:, and the plain port answers /v1/ws with 421.
    let timings = until_everyone_receives(&pages, points, &clicked, MEDIA_DEADLINE);
    let connected = status_until(admin, "both points connected, sending and receiving", |s| {
        s.points.len() == points.len()
            && s.points
                .iter()
                .all(|p| p.connected && p.sends_audio && p.sends_video && p.receives_audio && p.receives_video)
    })
    .await;
    for point in points {
        let status = connected.points.iter().find(|p| p.name.as_str() == point.name).expect("listed");
        assert_eq!(status.display_name, point.display);
    }
    assert_eq!(get(admin, "/v1/ws").await.status, 421);
    for page in &pages {
        assert_eq!(page.eval("return location.protocol;"), "https:");
        assert_eq!(stats(page)["phase"], "room");
        // What the officer sees: the connection indicator rates a connected transport pair.
        page.until("the quality indicator", "return document.getElementById('quality').dataset.level !== 'none';");
    }
    let screenshot = artifact_dir().join("console-tls-2-points.png");
    pages[1].screenshot(&screenshot);

    for (i, (first, all)) in timings.iter().enumerate() {
        eprintln!(
            "{} over https/wss: first decoded frame {:.2} s, every other point decoded {:.2} s",
            points[i].name,
            first.as_secs_f64(),
            all.as_secs_f64()
        );
    }
    eprintln!("screenshot: {}", screenshot.display());
    for page in pages {
        page.close();
    }
    server.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&tls_dir);
}

fn notice_titles(page: &Browser) -> String {
    page.eval("return window.tiepdan.notices().map(n => n.title + ': ' + n.body).join('\\n');")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_links_are_explained_in_vietnamese_and_english() {
    let _one_at_a_time = BROWSERS.lock().await;
    let server = start().await;
    let base = server.http_url();
    let driver = Driver::start();
    let page = driver.browser("links");
    let point = &POINTS[1];
    let now = unix_now();

    // Expired: the session ended yesterday.
    let expired = mint(&point_claims(point, now - 86_400, 3600));
    page.goto(&format!("{base}/join#token={expired}"));
    page.until("the expired-link message", "return window.tiepdan.notices().length > 0;");
    let text = notice_titles(&page);
    assert!(text.contains("Đường dẫn đã hết hạn"), "{text}");
    assert_eq!(page.eval("return document.getElementById('join').disabled;"), true);
    assert_eq!(page.eval("return document.getElementById('point-name').textContent;"), point.display);
    page.until("the camera preview", "return document.getElementById('preview').videoWidth > 0;");
    page.screenshot(&artifact_dir().join("console-expired-link.png"));

    // The English toggle translates the message in place, and back.
    page.click("#lang");
    let text = notice_titles(&page);
    assert!(text.contains("This link has expired"), "{text}");
    page.click("#lang");

    // Not open yet: says from when (in Vietnam time) and when the reception starts.
    let opens = now + 2 * 3600;
    let early = mint(&point_claims(point, opens, 3 * 3600));
    page.goto(&format!("{base}/join#token={early}"));
    page.until("the not-open-yet message", "return window.tiepdan.notices().length > 0;");
    let text = notice_titles(&page);
    assert!(text.contains("Phiên chưa mở"), "{text}");
    let hanoi = jiff::Timestamp::from_second(opens)
        .expect("ts")
        .to_zoned(jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").expect("tz"));
    let hhmm = format!("{:02}:{:02}", hanoi.hour(), hanoi.minute());
    assert!(text.contains(&hhmm), "{text} should say the session opens at {hhmm}");

    // A link cut short, and one signed with another key: both "not valid".
    page.goto(&format!("{base}/join#token=eyJhbGciOiJIUzI1NiJ9.abc"));
    page.until("the invalid-link message", "return window.tiepdan.notices().length > 0;");
    assert!(notice_titles(&page).contains("Đường dẫn không hợp lệ"));
    let forged = tiepdan_media_worker::tokens::PrivateKey::generate(tiepdan_media_worker::tokens::KeyUse::Join)
        .mint_join(&point_claims(point, now - 60, 3600))
        .expect("mint");
    page.goto(&format!("{base}/join#token={forged}"));
    page.until("the invalid-link message", "return window.tiepdan.notices().length > 0;");
    assert!(notice_titles(&page).contains("Đường dẫn không hợp lệ"));

    page.close();
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_camera_gets_advice_instead_of_a_black_picture() {
    let _one_at_a_time = BROWSERS.lock().await;
    let server = start().await;
    let driver = Driver::start();
    let page = driver.browser_with("refused", Camera::Refused);
    let token = mint(&point_claims(&POINTS[2], unix_now() - 60, 3600));
    page.goto(&format!("{}/join#token={token}", server.http_url()));
    page.until("the permission message", "return window.tiepdan.notices().some(n => n.slot === 'media');");
    let text = notice_titles(&page);
    assert!(text.contains("Chưa được phép dùng camera và micro"), "{text}");
    // The link itself is fine: joining (to listen) stays possible.
    page.until("the join button", "return !document.getElementById('join').disabled;");
    page.screenshot(&artifact_dir().join("console-camera-refused.png"));
    page.close();
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_whose_link_is_opened_elsewhere_says_so_and_the_link_may_have_leaked() {
    let _one_at_a_time = BROWSERS.lock().await;
    let server = start().await;
    let driver = Driver::start();
    let token = mint(&point_claims(&POINTS[1], unix_now() - 60, 3600));
    let joinable = "return !document.getElementById('join').disabled;";
    let in_room = "return window.tiepdan.phase() === 'room';";
    let office = driver.browser("office");
    office.goto(&format!("{}/join#token={token}", server.http_url()));
    office.until("the join button", joinable);
    office.click("#join");
    office.until("the office in the room", in_room);
    let other = driver.browser("someone-else");
    other.goto(&format!("{}/join#token={token}", server.http_url()));
    other.until("the join button", joinable);
    other.click("#join");
    other.until("the second browser in the room", in_room);
    office.until("the notice", "return window.tiepdan.notices().some(n => n.slot === 'connection');");
    let text = notice_titles(&office);
    assert!(text.contains("Đường dẫn đang được dùng ở nơi khác"), "{text}");
    let body = office.eval("return window.tiepdan.notices().find(n => n.slot === 'connection').body;");
    assert!(body.as_str().is_some_and(|b| b.contains("có thể đã bị lộ")), "{body}");
    office.screenshot(&artifact_dir().join("console-link-in-use-elsewhere.png"));
    other.close();
    office.close();
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_links_token_leaves_the_address_bar_and_history_and_survives_a_reload() {
    let _one_at_a_time = BROWSERS.lock().await;
    let server = start().await;
    let driver = Driver::start();
    let page = driver.browser("link");
    let token = mint(&point_claims(&POINTS[1], unix_now() - 60, 3600));
    let base = server.http_url();
    let joinable = "return !document.getElementById('join').disabled;";
    page.goto(&format!("{base}/join#token={token}"));
    page.until("the join-check to enable joining", joinable);
    let href = page.eval("return location.href;");
    assert_eq!(href, Value::from(format!("{base}/join")), "the token must leave the address bar");
    // A reload (the address bar no longer has it) keeps the point's link for this tab.
    page.eval("location.reload(); return true;");
    page.until("the join-check after a reload", joinable);
    assert_eq!(page.eval("return location.href;"), Value::from(format!("{base}/join")));
    // An older link with the token in the query is cleaned the same way.
    page.goto(&format!("{base}/join?token={token}"));
    page.until("the join-check from a query link", joinable);
    assert_eq!(page.eval("return location.href;"), Value::from(format!("{base}/join")));
    // Back through the history: no entry carries the token.
    let entries = page.eval("return history.length;").as_u64().expect("history length");
    for _ in 1..entries {
        // The marker is gone once the previous entry's document has replaced this one.
        page.eval("window.tiepdanMarker = true; history.back(); return true;");
        let href = page.until(
            "the previous history entry",
            "return !window.tiepdanMarker && document.readyState === 'complete' && location.href;",
        );
        assert!(!href.as_str().is_some_and(|h| h.contains(&token)), "a history entry keeps the token: {href}");
    }
    page.close();
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_and_join_check_answers_like_join() {
    let server = start().await;
    let addr = server.local_addr();
    for path in ["/", "/join", "/join?token=abc"] {
        let page = get(addr, path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(page.header("content-security-policy").is_some_and(|csp| csp.contains("default-src 'self'")));
        // An older link's token in the query must not leak onward through the Referer header.
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert!(page.body.contains("/assets/console.js"));
    }
    let script = get(addr, "/assets/console.js").await;
    assert_eq!(script.status, 200);
    assert!(script.header("content-type").is_some_and(|t| t.starts_with("text/javascript")));
    assert_eq!(get(addr, "/assets/console.css").await.status, 200);

    let check = |token: String| async move {
        let body = serde_json::json!({ "token": token }).to_string();
        let response = http(addr, "POST", "/v1/join-check", None, Some(&body)).await;
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str::<Value>(&response.body).expect("JSON")
    };
    let now = unix_now();
    let valid = check(token("xa-a")).await;
    assert_eq!(valid["valid"], true, "{valid}");
    assert!(valid["serverTime"].as_i64().is_some_and(|t| (t - now).abs() <= 5));
    let cases = [
        (mint(&point_claims(&POINTS[0], now - 86_400, 3600)), "token_expired"),
        (mint(&point_claims(&POINTS[0], now + 7200, 3600)), "token_not_yet_valid"),
        ("not.a.token".to_owned(), "invalid_token"),
    ];
    for (token, code) in cases {
        let answer = check(token).await;
        assert_eq!((answer["valid"].clone(), answer["code"].clone()), (Value::Bool(false), Value::from(code)));
    }
    // Checking joins nothing.
    assert!(status(addr).await.points.is_empty());
    let malformed = http(addr, "POST", "/v1/join-check", None, Some("{\"tok\": 1}")).await;
    assert_eq!(malformed.status, 400);
    server.stop().await.expect("stop");
}

#[test]
fn the_console_sources_typecheck() {
    let web: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_owned());
    // build.rs installed node_modules before this test could be compiled.
    let output = Command::new(npm).args(["run", "--silent", "check"]).current_dir(&web).output().expect("run npm");
    assert!(
        output.status.success(),
        "tsc found errors in media-worker/web:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The audio energy `page` has played out from `point` so far, and its audio packets.
fn audio_from(page: &Browser, point: &str) -> (f64, u64) {
    let stats = stats(page);
    let consumers = stats["consumers"].as_array().cloned().unwrap_or_default();
    consumers.iter().filter(|c| c["point"] == point && c["kind"] == "audio").fold((0.0, 0), |(e, p), c| {
        (e + c["totalAudioEnergy"].as_f64().unwrap_or(0.0), p + c["packetsReceived"].as_u64().unwrap_or(0))
    })
}

/// Energy `page` plays out from each of `points` over `window`, measured once `page` has stopped
/// or resumed receiving `quiet`'s packets as `expect_quiet` says (a condition, with a deadline).
fn energy_over(page: &Browser, points: &[&str], quiet: &str, expect_quiet: bool, window: Duration) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = audio_from(page, quiet).1;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = audio_from(page, quiet).1;
        if (now == last) == expect_quiet {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{quiet}'s audio packets never {}",
            if expect_quiet { "stopped" } else { "resumed" }
        );
        last = now;
    }
    let before: Vec<f64> = points.iter().map(|p| audio_from(page, p).0).collect();
    let started = Instant::now();
    while started.elapsed() < window {
        std::thread::sleep(Duration::from_millis(100));
    }
    points.iter().zip(before).map(|(p, b)| audio_from(page, p).0 - b).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_mutes_a_point_for_everyone_and_asks_it_to_unmute() {
    let _one_at_a_time = BROWSERS.lock().await;
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let dir = std::env::temp_dir().join(format!("tiepdan-moderation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let worker = WorkerProcess::spawn("127.0.0.1:0", &dir, "worker-moderation.log");
    let driver = Driver::start();
    let now = unix_now();
    let mut pages = Vec::new();
    for point in &POINTS {
        let page = driver.browser(point.name);
        open_link(&page, &worker, point, now);
        pages.push(page);
    }
    for page in &pages {
        page.click("#join");
    }
    // Verified, so the worker's reconnection check is behind us and the consumers stay put.
    verified_within(worker.addr, 3, VERIFY_DEADLINE).await;
    let (host, muted, listener) = (&pages[0], &pages[1], &pages[2]);
    let (host_name, muted_name) = (POINTS[0].name, POINTS[1].name);
    let tile_button = format!(".tile[data-point=\"{muted_name}\"] button.moderate");
    host.until(
        "the host's mute button on the point's tile",
        &format!("return document.querySelector('{tile_button}') !== null;"),
    );
    assert_eq!(
        listener.eval("return document.querySelectorAll('.tile button.moderate').length;"),
        0,
        "only the host moderates"
    );
    assert_eq!(host.eval(&format!("return document.querySelector('{tile_button}').textContent;")), "Tắt micro");

    host.click(&tile_button);
    // The muted office sees, in Vietnamese, who muted it, and cannot unmute by itself.
    muted.until("the muted-by-host notice", "return document.querySelector('[data-slot=\"moderation\"]') !== null;");
    let notice = muted.eval("return document.querySelector('[data-slot=\"moderation\"]').textContent;");
    assert!(notice.as_str().is_some_and(|n| n.contains("đã tắt micro") && n.contains(POINTS[0].display)), "{notice}");
    assert_eq!(muted.eval("return document.getElementById('mic-toggle').disabled;"), true);
    assert_eq!(muted.eval("return document.getElementById('mic-toggle').textContent;"), "Micro bị chủ trì tắt");
    muted.screenshot(&artifacts.join("console-muted-by-host.png"));
    listener.until(
        "the muted point's tile to say so",
        &format!("return document.querySelector('.tile[data-point=\"{muted_name}\"] .host-muted-flag') !== null;"),
    );
    // What the others hear: nothing from the muted point, the host as before.
    let window = Duration::from_secs(2);
    for page in [listener, host] {
        let heard = energy_over(page, &[muted_name, host_name], muted_name, true, window);
        assert!(heard[0] < 1e-6, "the muted point is still heard: {heard:?}");
        if std::ptr::eq(page, listener) {
            assert!(heard[1] > 1e-4, "the host should still be heard: {heard:?}");
        }
    }
    host.screenshot(&artifacts.join("console-host-muted-a-point.png"));
    // A tampered console sends its microphone anyway: the worker holds the mute, so still
    // nothing reaches the others.
    muted.eval("window.tiepdan.sendAudioAnyway(); return true;");
    let sent_before = muted.eval("return window.tiepdan.stats();")["producers"].clone();
    let heard = energy_over(listener, &[muted_name], muted_name, true, window);
    assert!(heard[0] < 1e-6, "the SFU forwarded a muted point's audio: {heard:?}");
    let sent_after = muted.eval("return window.tiepdan.stats();")["producers"].clone();
    let audio_sent = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["kind"] == "audio")
            .map(|p| p["packetsSent"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert!(
        audio_sent(&sent_after) > audio_sent(&sent_before),
        "the tampered console did send: {sent_before} -> {sent_after}"
    );

    // The host asks; the office unmutes from the notice and is heard again.
    let ask = format!(".tile[data-point=\"{muted_name}\"] button.moderate.ask");
    host.until("the ask-to-unmute button", &format!("return document.querySelector('{ask}') !== null;"));
    host.click(&ask);
    muted.until(
        "the ask-to-unmute notice with its button",
        "const b = document.querySelector('[data-slot=\"moderation\"] button'); return b !== null && !b.hidden;",
    );
    muted.screenshot(&artifacts.join("console-asked-to-unmute.png"));
    muted.click("[data-slot=\"moderation\"] button");
    muted.until("the microphone on again", "return document.getElementById('mic-toggle').textContent === 'Tắt micro';");
    let heard = energy_over(listener, &[muted_name], muted_name, false, window);
    assert!(heard[0] > 1e-4, "the point is heard again: {heard:?}");
    listener.until(
        "the muted flag to go",
        &format!("return document.querySelector('.tile[data-point=\"{muted_name}\"] .host-muted-flag') === null;"),
    );
    for page in pages {
        page.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Which point each page shows as the speaker and as having the floor.
fn focus(page: &Browser) -> (Value, Value) {
    let speaker = page.eval("return document.querySelector('.tile.speaker')?.dataset.point ?? null;");
    let floor = page.eval("return document.querySelector('.tile.floor')?.dataset.point ?? null;");
    (speaker, floor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_point_that_speaks_comes_forward_and_the_host_gives_the_floor() {
    let _one_at_a_time = BROWSERS.lock().await;
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let dir = std::env::temp_dir().join(format!("tiepdan-speaker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (silent, speech) = (dir.join("silent.wav"), dir.join("speech.wav"));
    write_silent_wav(&silent);
    write_speech_wav(&speech);
    let worker = WorkerProcess::spawn("127.0.0.1:0", &dir, "worker-speaker.log");
    let driver = Driver::start();
    let now = unix_now();
    // The host and one commune are silent; the other commune speaks (muted until the test says).
    let files = [&silent, &speech, &silent];
    let mut pages = Vec::new();
    for (point, file) in POINTS.iter().zip(files) {
        let args = [format!("--use-file-for-fake-audio-capture={}", file.display())];
        let page = driver.browser_with_args(point.name, Camera::Allowed, &args);
        open_link(&page, &worker, point, now);
        pages.push(page);
    }
    let speaker_name = POINTS[1].name;
    // Muted before joining, so its first words cannot race the measurement.
    pages[1].eval("document.getElementById('mic-toggle').click(); return true;");
    let clicked = click_join(&pages);
    until_everyone_receives(&pages, &POINTS, &clicked, MEDIA_DEADLINE);
    for page in &pages {
        assert_eq!(focus(page).0, Value::Null, "nobody has spoken yet");
    }

    // Timed in the pages (one machine, one clock), not by polling them: when the officer
    // unmuted, and when each console learnt who speaks.
    let unmuted_at = pages[1]
        .eval("const t = Date.now(); document.getElementById('mic-toggle').click(); return t;")
        .as_f64()
        .expect("a time");
    let mut followed = Vec::new();
    for page in &pages {
        let state = page.until(
            "this console to show the speaker",
            &format!("const f = window.tiepdan.focus(); return f.speaker === '{speaker_name}' && f;"),
        );
        assert_eq!(focus(page).0, speaker_name, "the tile says so");
        followed.push((state["speakerAt"].as_f64().expect("a time") - unmuted_at) / 1000.0);
    }
    let slowest = followed.iter().copied().fold(0.0, f64::max);
    eprintln!("the speaker came forward in every console within {slowest:.2} s: {followed:.2?}");
    assert!(slowest <= 2.0, "the issue's bound is 2 s: {followed:?}");
    let label = pages[2].eval(&format!(
        "return document.querySelector('.tile[data-point=\"{speaker_name}\"] .focus-flag')?.textContent ?? '';"
    ));
    assert_eq!(label, "Đang phát biểu");
    pages[2].screenshot(&artifacts.join("console-active-speaker.png"));

    // The host gives the floor to the silent commune: it is pinned large for everyone.
    let floor_name = POINTS[2].name;
    assert_eq!(pages[1].eval("return document.querySelectorAll('button.floor-button').length;"), 0, "only the host");
    pages[0].click(&format!(".tile[data-point=\"{floor_name}\"] button.floor-button"));
    for page in &pages {
        page.until(
            "the floor on every console",
            &format!("return document.querySelector('.tile.floor')?.dataset.point === '{floor_name}';"),
        );
    }
    // The speaker stays marked beside the floor (waited for: a reconnect in between would make
    // the room pick it again from its next two reports).
    pages[1].until(
        "the speaker still marked beside the floor",
        &format!("return document.querySelector('.tile.speaker')?.dataset.point === '{speaker_name}';"),
    );
    pages[1].screenshot(&artifacts.join("console-floor-given.png"));
    pages[0].click(&format!(".tile[data-point=\"{floor_name}\"] button.floor-button"));
    for page in &pages {
        page.until("the floor taken back", "return document.querySelector('.tile.floor') === null;");
    }
    for page in pages {
        page.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether `page` shows `point`'s shared document, decoded.
const fn share_shown(point: &str) -> impl Fn(&Browser) -> bool + '_ {
    move |page| {
        page.eval(&format!(
            "const v = document.querySelector('.tile.share[data-share=\"{point}\"] video'); return v !== null && v.videoWidth > 0;"
        )) == Value::Bool(true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_point_shares_a_document_large_for_everyone_and_the_host_can_stop_it() {
    let _one_at_a_time = BROWSERS.lock().await;
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let dir = std::env::temp_dir().join(format!("tiepdan-share-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let worker = WorkerProcess::spawn("127.0.0.1:0", &dir, "worker-share.log");
    let driver = Driver::start();
    let now = unix_now();
    let mut pages = Vec::new();
    for point in &POINTS {
        // Chromium's fake capture answers getDisplayMedia without a picker.
        let args = [
            "--auto-accept-this-tab-capture".to_owned(),
            "--auto-select-desktop-capture-source=Entire screen".to_owned(),
        ];
        let page = driver.browser_with_args(point.name, Camera::Allowed, &args);
        open_link(&page, &worker, point, now);
        pages.push(page);
    }
    let clicked = click_join(&pages);
    until_everyone_receives(&pages, &POINTS, &clicked, MEDIA_DEADLINE);
    // Verified, so the worker's reconnection check is behind us: in CI run 9 it closed the second
    // office's connection just as it clicked, and the click was lost with it.
    verified_within(worker.addr, POINTS.len(), VERIFY_DEADLINE).await;
    let (host, sharer, second) = (&pages[0], &pages[1], &pages[2]);
    assert_eq!(sharer.eval("return document.getElementById('share-toggle').textContent;"), "Chia sẻ tài liệu");

    sharer.click("#share-toggle");
    let wait = |page: &Browser, what: &str, shown: &dyn Fn(&Browser) -> bool| {
        let deadline = Instant::now() + MEDIA_DEADLINE;
        while !shown(page) {
            assert!(Instant::now() < deadline, "{}: timed out waiting for {what}", page.eval("return location.href;"));
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for page in [host, second] {
        wait(page, "the shared document", &share_shown(POINTS[1].name));
        // Large: the document spans the whole row, wider than any point's tile.
        let widths = page.eval(
            "const share = document.querySelector('.tile.share').getBoundingClientRect().width; \
             const others = [...document.querySelectorAll('.tile:not(.share)')].map(t => t.getBoundingClientRect().width); \
             return share > Math.max(...others);",
        );
        assert_eq!(widths, Value::Bool(true), "the share is the largest tile");
    }
    let label = second.eval("return document.querySelector('.tile.share .name').textContent;");
    assert_eq!(label, format!("Tài liệu do {} chia sẻ", POINTS[1].display));
    second.screenshot(&artifacts.join("console-document-shared.png"));

    // A second share is refused while the first is on, and the office is told why.
    second.click("#share-toggle");
    second.until(
        "the refusal",
        "return (document.querySelector('[data-slot=\"share\"]')?.textContent ?? '').includes('mỗi lúc chỉ một điểm cầu');",
    );
    assert_eq!(second.eval("return document.getElementById('share-toggle').textContent;"), "Chia sẻ tài liệu");
    assert!(!share_shown(POINTS[2].name)(host), "the refused share never reaches the others");

    // The host stops it: the sharer is told, the document goes everywhere.
    assert_eq!(second.eval("return document.querySelectorAll('button.stop-share').length;"), 0, "only the host");
    host.click(".tile.share button.stop-share");
    sharer.until(
        "the sharer told who stopped it",
        "return (document.querySelector('[data-slot=\"share\"]')?.textContent ?? '').includes('đã dừng phần chia sẻ');",
    );
    for page in [host, second] {
        page.until("the share tile to go", "return document.querySelector('.tile.share') === null;");
    }
    // Now the other point may share, and stops it itself.
    second.click("#share-toggle");
    wait(host, "the second point's document", &share_shown(POINTS[2].name));
    second.click("#share-toggle");
    host.until("the share tile to go again", "return document.querySelector('.tile.share') === null;");
    for page in pages {
        page.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_keeps_the_media_without_a_rejoin() {
    let _one_at_a_time = BROWSERS.lock().await;
    let dir = std::env::temp_dir().join(format!("tiepdan-ice-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let worker = WorkerProcess::spawn("127.0.0.1:0", &dir, "worker-ice.log");
    let driver = Driver::start();
    let now = unix_now();
    let points = &POINTS[..2];
    let mut pages = Vec::new();
    for point in points {
        let page = driver.browser(point.name);
        open_link(&page, &worker, point, now);
        pages.push(page);
    }
    let clicked = click_join(&pages);
    until_everyone_receives(&pages, points, &clicked, MEDIA_DEADLINE);
    // Past the worker's reconnection check, so any later join would be the restart's doing.
    verified_within(worker.addr, 2, VERIFY_DEADLINE).await;
    let joins =
        || std::fs::read_to_string(dir.join("worker-ice.log")).unwrap_or_default().matches("\"point joined\"").count();
    let joins_before = joins();
    assert!(joins_before >= points.len(), "the log counts joins: {joins_before}");
    let frames_before = received(&stats(&pages[0]), points[0].name, points).frames;

    let restarted_at = Instant::now();
    pages[0].eval("return window.tiepdan.restartIce().then(() => true);");
    // Media goes on: more frames decoded, both transports connected again.
    let deadline = Instant::now() + MEDIA_DEADLINE;
    loop {
        let frames = received(&stats(&pages[0]), points[0].name, points).frames;
        let states = pages[0].eval("return window.tiepdan.stats().then(s => s.phase);");
        if frames > frames_before + 30 && states == "room" {
            break;
        }
        assert!(Instant::now() < deadline, "no media after the ICE restart: {frames} frames, phase {states}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("media flowing again {:.2} s after the ICE restart", restarted_at.elapsed().as_secs_f64());
    assert_eq!(joins(), joins_before, "an ICE restart is not a rejoin");
    for page in pages {
        page.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
