//! Media forwarding: RTP over PlainTransports on 127.0.0.1 through the tiepdan worker (its own
//! signaling, statistics poller and `/metrics`, probes as the peers: only probes get plain RTP),
//! through bare mediasoup (the same 0.8.5 crate: a Router and PlainTransports, none of tiepdan's
//! layers) and through a raw UDP relay (`recvmmsg`/`sendmmsg` fan-out), in the same run.
//!
//! For each stream size (Opus ~100 B, VP8 ~1,100 B payloads) and topology (1 publisher → N
//! consumers, an M×M meeting) it finds the highest forwarded packets/s with < 0.1 % loss
//! (doubling, then bisecting the send rate), then measures the one-way latency at half that
//! rate, the CPU seconds per million forwarded packets, and the forwarded rate when offered
//! 1.5× the peak. It prints the ratios worker/bare and worker/relay, the worker with and without
//! its larger RTC receive buffers (`--rtc-receive-buffer-bytes`, see media-worker's
//! `rtc_socket`), and one worker against two.
//!
//! Everything runs in this process (mediasoup 0.8.5's C++ worker is a thread), so the load
//! generator, one thread, is pinned to core 0 and every other thread to core 1: see `host`.
//! The generator receives every forwarded copy on one socket with a 64 MiB buffer, and each
//! trial reports the kernel's drops on that socket and on the forwarder's ingress sockets, so a
//! figure the generator limits says so.
//!
//! `cargo bench -p tiepdan-tests --bench media_forwarding` runs the full matrix (about 4 min on
//! 2 cores: trials of 250 ms, 3 bisection steps). `cargo test` runs it as a smoke (tiny topologies, short trials) that checks only
//! that media flows through each forwarder: figures are printed, never asserted on.
//! Environment: `TIEPDAN_MEDIA_TRIAL_MS` (trial length), `TIEPDAN_MEDIA_FANOUTS` (e.g. `1,10`),
//! `TIEPDAN_MEDIA_MEETINGS` (e.g. `4`), `TIEPDAN_MEDIA_STREAMS` (`opus,vp8`),
//! `TIEPDAN_MEDIA_EXTRAS=0` (skip the before/after and scaling sections).

#![allow(clippy::unwrap_used)]

#[path = "media_forwarding/host.rs"]
mod host;
#[path = "media_forwarding/load.rs"]
mod load;
#[path = "media_forwarding/packets.rs"]
mod packets;
#[path = "media_forwarding/relay.rs"]
mod relay;
#[path = "media_forwarding/sfus.rs"]
mod sfus;

use host::{pin_current, pin_others, GENERATOR_CORE, SFU_CORE};
use load::{search, warm_up, Generator, Trial, Wiring};
use nix::unistd::gettid;
use packets::Stream;
use sfus::Shape;
use std::time::{Duration, Instant};
use tiepdan_media_worker::config::DEFAULT_RTC_RECEIVE_BUFFER;

struct Size {
    full: bool,
    trial: Duration,
    /// The search's first rate (forwarded packets/s), how often it may double, how often bisect.
    start: f64,
    doublings: usize,
    bisect: usize,
    shapes: Vec<Shape>,
    streams: Vec<Stream>,
    extras: bool,
}

impl Size {
    fn from_env() -> Self {
        // `cargo bench` passes --bench; `cargo test` does not.
        let full = std::env::args().any(|a| a == "--bench");
        let list = |name: &str, default: &str| -> Vec<usize> {
            std::env::var(name)
                .unwrap_or_else(|_| default.to_owned())
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("{name}: {s:?} is not a number")))
                .collect()
        };
        let (fanouts, meetings, trial_ms) = if full { ("1,10,50,100", "4,15", "250") } else { ("2", "3", "100") };
        let mut shapes: Vec<Shape> = list("TIEPDAN_MEDIA_FANOUTS", fanouts).into_iter().map(Shape::Fanout).collect();
        shapes.extend(list("TIEPDAN_MEDIA_MEETINGS", meetings).into_iter().map(Shape::Meeting));
        let streams = std::env::var("TIEPDAN_MEDIA_STREAMS")
            .unwrap_or_else(|_| if full { "opus,vp8" } else { "opus" }.to_owned())
            .split(',')
            .map(|s| match s.trim() {
                "opus" => Stream::Opus,
                "vp8" => Stream::Vp8,
                other => panic!("TIEPDAN_MEDIA_STREAMS: {other:?} is neither opus nor vp8"),
            })
            .collect();
        Size {
            full,
            trial: Duration::from_millis(list("TIEPDAN_MEDIA_TRIAL_MS", trial_ms)[0] as u64),
            // The smoke: one trial at a low rate is enough to see every piece work.
            start: if full { 40_000.0 } else { 2_000.0 },
            doublings: if full { 12 } else { 0 },
            bisect: if full { 3 } else { 0 },
            shapes,
            streams,
            extras: std::env::var("TIEPDAN_MEDIA_EXTRAS").map_or(true, |v| v != "0"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sfu {
    Worker,
    Bare,
    Relay,
}

impl Sfu {
    fn name(self) -> &'static str {
        match self {
            Sfu::Worker => "tiepdan worker",
            Sfu::Bare => "bare mediasoup",
            Sfu::Relay => "raw UDP relay",
        }
    }
}

/// What one forwarder did in one case.
struct Outcome {
    peak: Option<Trial>,
    generator_bound: bool,
    /// The lowest-rate trial that failed: where its packets were lost.
    failed: Option<Trial>,
    /// At half the peak rate, with latencies.
    half: Trial,
    overload: Trial,
}

/// Whatever must live while media flows; dropped (or stopped) after the case.
enum Running {
    Worker(Box<sfus::Tiepdan>),
    Bare(sfus::Bare),
    Relay(relay::Relay),
}

fn main() {
    let size = Size::from_env();
    // The generator is this thread; everything else (tokio's threads, mediasoup's, the relay)
    // goes to the other core. Threads inherit their creator's affinity, so tokio's are pinned
    // as they start and the rest are found by listing /proc/self/task after each setup.
    pin_current(GENERATOR_CORE);
    let generator_tid = gettid();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| pin_current(SFU_CORE))
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let buffer = Some(DEFAULT_RTC_RECEIVE_BUFFER);
    println!("\n## Media forwarding ({} mode)\n", if size.full { "full" } else { "smoke" });
    println!("{}", machine());
    println!(
        "Trials of {:?}; the generator on core {GENERATOR_CORE}, every forwarder on core {SFU_CORE}. RTC/ingress \
         receive buffers {} B asked (the worker's default) unless said otherwise.\n",
        size.trial, DEFAULT_RTC_RECEIVE_BUFFER
    );
    let mut generator = Generator::new(size.trial);
    let mut rows = Vec::new();
    for stream in &size.streams {
        for shape in &size.shapes {
            let mut outcomes = Vec::new();
            for sfu in [Sfu::Worker, Sfu::Bare, Sfu::Relay] {
                let o = case(&runtime, &mut generator, generator_tid, sfu, *shape, *stream, buffer, &size);
                outcomes.push((sfu, o));
            }
            rows.push((*stream, *shape, outcomes));
        }
    }
    print_results(&rows);

    if size.extras {
        // Before and after the worker's larger receive buffers, with the same for bare mediasoup
        // and the relay: the kernel's default (net.core.rmem_default) against DEFAULT_RTC_RECEIVE_BUFFER.
        let cases: Vec<(Stream, Shape)> = if size.full {
            vec![(Stream::Opus, Shape::Fanout(1)), (Stream::Vp8, Shape::Fanout(10))]
        } else {
            vec![(Stream::Opus, Shape::Fanout(2))]
        };
        println!("\n### Receive buffers: the kernel's default against {DEFAULT_RTC_RECEIVE_BUFFER} B\n");
        println!("| stream | topology | forwarder | buffer | peak forwarded pkt/s, < 0.1 % loss | lowest failing trial: loss, of it dropped at the forwarder's ingress |");
        println!("|---|---|---|---|---:|---:|");
        for (stream, shape) in cases {
            for sfu in [Sfu::Worker, Sfu::Bare, Sfu::Relay] {
                for (label, b) in [("default", None), ("raised", buffer)] {
                    let o = case(&runtime, &mut generator, generator_tid, sfu, shape, stream, b, &size);
                    println!(
                        "| {} | {} | {} | {label} | {} | {} |",
                        stream.name(),
                        shape.name(),
                        sfu.name(),
                        peak_text(&o),
                        failure_text(&o)
                    );
                }
            }
        }
        scaling(&runtime, &mut generator, generator_tid, &size);
    }
    println!("\nMedia forwarding took {:.0?}; load average at the end {}", started.elapsed(), host::load());
}

#[allow(clippy::too_many_arguments)]
fn case(
    runtime: &tokio::runtime::Runtime,
    generator: &mut Generator,
    generator_tid: nix::unistd::Pid,
    sfu: Sfu,
    shape: Shape,
    stream: Stream,
    buffer: Option<usize>,
    size: &Size,
) -> Outcome {
    let receiver = sfus::receiver();
    let (mut wiring, running): (Wiring, Running) = match sfu {
        Sfu::Worker => {
            let (w, t) = runtime.block_on(sfus::tiepdan(shape, stream, buffer, &receiver));
            (w, Running::Worker(Box::new(t)))
        }
        Sfu::Bare => {
            let (w, b) = runtime.block_on(sfus::bare(shape, stream, buffer, &receiver));
            (w, Running::Bare(b))
        }
        Sfu::Relay => {
            let (w, r) = sfus::relay(shape, stream, buffer, &receiver);
            (w, Running::Relay(r))
        }
    };
    pin_others(generator_tid, SFU_CORE);
    assert!(
        warm_up(generator, &mut wiring),
        "{} {} {}: media did not get through at a low rate",
        sfu.name(),
        stream.name(),
        shape.name()
    );
    let peak = search(generator, &mut wiring, size.start, size.doublings, size.bisect);
    let rate = peak.best.as_ref().map_or(1_000.0, |t| t.target_pps);
    let half = generator.trial(&mut wiring, rate / 2.0, true);
    let overload = generator.trial(&mut wiring, rate * 1.5, false);
    match running {
        Running::Worker(t) => runtime.block_on(t.stop()),
        Running::Bare(b) => drop(b),
        Running::Relay(r) => drop(r),
    }
    Outcome { peak: peak.best, generator_bound: peak.generator_bound, failed: peak.failed, half, overload }
}

fn peak_text(o: &Outcome) -> String {
    match &o.peak {
        Some(t) => format!("{}{:.0}k", if o.generator_bound { "≥ " } else { "" }, t.forwarded_pps() / 1e3),
        None => "none".to_owned(),
    }
}

/// How much the lowest failing trial lost, and how much of that the kernel dropped at the
/// forwarder's ingress sockets (the rest arrived too late: a backlog, or lost elsewhere).
fn failure_text(o: &Outcome) -> String {
    match &o.failed {
        Some(t) => format!(
            "{:.2} % at {:.0}k: {:.0} %",
            t.loss() * 100.0,
            t.target_pps / 1e3,
            t.sfu_drops as f64 * 100.0 * t.copies as f64 / (t.expected - t.received.min(t.expected)).max(1) as f64
        ),
        None => "none failed".to_owned(),
    }
}

fn peak_pps(o: &Outcome) -> f64 {
    o.peak.as_ref().map_or(0.0, Trial::forwarded_pps)
}

/// One stream and topology, and what each forwarder did.
type Row = (Stream, Shape, Vec<(Sfu, Outcome)>);

fn print_results(rows: &[Row]) {
    println!("| stream | topology | forwarder | peak forwarded pkt/s, < 0.1 % loss | latency p50 / p99 at half (µs) | CPU s per M forwarded | at 1.5× peak: forwarded (× peak) | lowest failing trial: loss, of it dropped at the ingress |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (stream, shape, outcomes) in rows {
        for (sfu, o) in outcomes {
            let lat = |p| o.half.latency_us(p).map_or("n/a".to_owned(), |v| format!("{v:.0}"));
            let cpu = o.peak.as_ref().map_or("n/a".to_owned(), |t| format!("{:.2}", t.cpu_per_million()));
            let drops = failure_text(o);
            println!(
                "| {} | {} | {} | {} | {} / {} | {cpu} | {:.0}k ({:.2}×) | {drops} |",
                stream.name(),
                shape.name(),
                sfu.name(),
                peak_text(o),
                lat(50.0),
                lat(99.0),
                o.overload.forwarded_pps() / 1e3,
                o.overload.forwarded_pps() / peak_pps(o).max(1.0),
            );
        }
    }
    println!(
        "\n| stream | topology | worker / bare, peak | worker / relay, peak | worker / bare, per-packet CPU (bare's ÷ worker's) |\n|---|---|---:|---:|---:|"
    );
    for (stream, shape, outcomes) in rows {
        let get = |s: Sfu| outcomes.iter().find(|(x, _)| *x == s).map(|(_, o)| o);
        let pps = |s: Sfu| get(s).map_or(0.0, peak_pps);
        let cpu = |s: Sfu| get(s).and_then(|o| o.peak.as_ref()).map_or(f64::NAN, Trial::cpu_per_million);
        let (w, b, r) = (pps(Sfu::Worker), pps(Sfu::Bare), pps(Sfu::Relay));
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} |",
            stream.name(),
            shape.name(),
            w / b.max(1.0),
            w / r.max(1.0),
            cpu(Sfu::Bare) / cpu(Sfu::Worker)
        );
    }
}

/// Two tiepdan workers (two sessions, as two pods would be), each on its own core, against one.
/// On a 2-core machine the second worker's core is also the generator's, so this understates
/// what a second core gives.
fn scaling(runtime: &tokio::runtime::Runtime, generator: &mut Generator, generator_tid: nix::unistd::Pid, size: &Size) {
    let (stream, shape) = if size.full { (Stream::Opus, Shape::Fanout(50)) } else { (Stream::Opus, Shape::Fanout(2)) };
    let buffer = Some(DEFAULT_RTC_RECEIVE_BUFFER);
    let receiver = sfus::receiver();
    let (mut one, first) = runtime.block_on(sfus::tiepdan(shape, stream, buffer, &receiver));
    let first_threads = pin_others(generator_tid, SFU_CORE);
    assert!(warm_up(generator, &mut one), "the first worker forwards");
    let single = search(generator, &mut one, size.start, size.doublings, size.bisect);
    let (two, second) = runtime.block_on(sfus::tiepdan(shape, stream, buffer, &receiver));
    let threads = pin_others(generator_tid, SFU_CORE);
    if let Some((tid, _)) = threads.iter().find(|t| !first_threads.contains(t)) {
        host::pin_thread(*tid, GENERATOR_CORE);
    }
    one.publishers.extend(two.publishers);
    one.ingress_ports.extend(two.ingress_ports);
    assert!(warm_up(generator, &mut one), "both workers forward");
    let double = search(generator, &mut one, size.start, size.doublings, size.bisect);
    runtime.block_on(first.stop());
    runtime.block_on(second.stop());
    let pps = |p: &load::Peak| p.best.as_ref().map_or(0.0, Trial::forwarded_pps);
    println!("\n### One worker against two ({} {})\n", stream.name(), shape.name());
    println!("| workers | peak forwarded pkt/s, < 0.1 % loss | CPU s per M forwarded |\n|---|---:|---:|");
    for (n, p) in [(1, &single), (2, &double)] {
        let cpu = p.best.as_ref().map_or("n/a".to_owned(), |t| format!("{:.2}", t.cpu_per_million()));
        let peak = match &p.best {
            Some(t) => format!("{}{:.0}k", if p.generator_bound { "≥ " } else { "" }, t.forwarded_pps() / 1e3),
            None => "none".to_owned(),
        };
        println!("| {n} | {peak} | {cpu} |");
    }
    println!("\ntwo / one: {:.2}×", pps(&double) / pps(&single).max(1.0));
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    // Not available_parallelism: this thread is pinned to one core by now.
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}")).map_or("?".to_owned(), |v| v.trim().to_owned())
    };
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} × {model}; load average {} at the start (other work shares these cores: the figures are noisy); \
         net.core.rmem_default {} B, rmem_max {} B; commit {commit}",
        host::load(),
        sysctl("rmem_default"),
        sysctl("rmem_max")
    )
}
