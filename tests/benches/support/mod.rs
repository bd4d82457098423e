//! A small timing harness for the benchmarks (no criterion: it is not in the offline registry
//! mirror's lock file, and these figures only need mean and percentiles). Benchmarks print a
//! Markdown table that goes into `docs/BENCHMARKS.md`; they never assert on time.

#![allow(dead_code)] // each benchmark uses a subset

use std::time::{Duration, Instant};

/// Timings of one measured operation.
pub struct Stats {
    pub name: String,
    pub iterations: usize,
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

/// Runs `f` a few times to warm up, then `iterations` times, timing each run.
pub fn measure(name: &str, iterations: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..iterations.div_ceil(10).max(1) {
        f();
    }
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let total: Duration = times.iter().sum();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Stats { name: name.to_owned(), iterations, mean: total / iterations as u32, p50: at(0.5), p99: at(0.99) }
}

/// Timings already taken elsewhere (e.g. one per join), summarized the same way.
pub fn summarize(name: &str, mut times: Vec<Duration>) -> Stats {
    times.sort();
    let n = times.len().max(1);
    let total: Duration = times.iter().sum();
    let at = |q: f64| times.get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1))).copied();
    Stats {
        name: name.to_owned(),
        iterations: times.len(),
        mean: total / n as u32,
        p50: at(0.5).unwrap_or_default(),
        p99: at(0.99).unwrap_or_default(),
    }
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// Prints the timings as a Markdown table.
pub fn print_table(title: &str, stats: &[Stats]) {
    println!("\n### {title}\n");
    println!("| operation | runs | mean | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    for s in stats {
        println!("| {} | {} | {} | {} | {} |", s.name, s.iterations, show(s.mean), show(s.p50), show(s.p99));
    }
}

/// This process's resident set size in KiB (Linux `/proc/self/status`, `VmRSS`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// What the figures were measured on, for the table's heading.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let profile = if cfg!(debug_assertions) { "debug build (figures not representative)" } else { "release build" };
    format!("{cpus} CPUs, {profile}")
}
