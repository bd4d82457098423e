//! What the benchmark reads from and does to its own process: which core each thread runs on,
//! how much CPU the SFU's threads used, and how many datagrams the kernel dropped on a socket.

use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::resource::{getrusage, UsageWho};
use nix::unistd::{gettid, Pid};
use std::collections::HashMap;
use std::time::Duration;

/// The load generator's core; everything else (the SFU under test, tokio's threads, mediasoup's
/// worker threads, the relay) runs on [`SFU_CORE`]. With 2 cores that is one each.
pub const GENERATOR_CORE: usize = 0;
pub const SFU_CORE: usize = 1;

fn set(tid: Pid, core: usize) {
    let mut cpus = CpuSet::new();
    if cpus.set(core).is_ok() {
        // A thread that exits between listing and pinning is no error worth stopping for.
        let _ = sched_setaffinity(tid, &cpus);
    }
}

/// Pins the calling thread to `core`.
pub fn pin_current(core: usize) {
    set(gettid(), core);
}

/// Pins every thread of this process except `keep` to `core`. mediasoup 0.8.5 runs its C++
/// worker as a thread of this process (named `mediasoup-worker-<id>`, which `comm` shows cut to
/// 15 bytes), started from whichever thread created it, so its affinity is whatever that thread
/// had: listing `/proc/self/task` after each setup is what makes sure it is on the SFU's core and
/// not the generator's. Linux affinity is per thread, so a thread id works as the `pid`.
/// Returns the mediasoup worker threads found, to report them.
pub fn pin_others(keep: Pid, core: usize) -> Vec<(Pid, String)> {
    let mut mediasoup = Vec::new();
    for (tid, name) in threads() {
        if tid == keep {
            continue;
        }
        set(tid, core);
        if name.starts_with("mediasoup-worke") {
            mediasoup.push((tid, name));
        }
    }
    mediasoup
}

/// Pins the named mediasoup worker thread to `core` (the two-worker scaling case).
pub fn pin_thread(tid: Pid, core: usize) {
    set(tid, core);
}

fn threads() -> Vec<(Pid, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let tid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            Some((Pid::from_raw(tid), comm.trim().to_owned()))
        })
        .collect()
}

/// CPU time (user + system) of the whole process and of the calling thread.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    process: Duration,
    thread: Duration,
}

impl Cpu {
    pub fn now() -> Self {
        let total = |who| {
            getrusage(who).map_or(Duration::ZERO, |u| {
                let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
                Duration::from_micros(us(u.user_time()) + us(u.system_time()))
            })
        };
        Cpu { process: total(UsageWho::RUSAGE_SELF), thread: total(UsageWho::RUSAGE_THREAD) }
    }

    /// CPU used since `earlier` by every thread but the caller (the generator): the SFU, plus
    /// the little the benchmark's own idle tokio threads use.
    pub fn others_since(&self, earlier: &Cpu) -> Duration {
        (self.process.saturating_sub(earlier.process)).saturating_sub(self.thread.saturating_sub(earlier.thread))
    }
}

/// Datagrams the kernel dropped on each 127.0.0.1 UDP socket, by local port
/// (`/proc/net/udp`'s last column: a full receive buffer, mostly).
pub fn udp_drops() -> HashMap<u16, u64> {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (fields.get(1), fields.last()) else { continue };
        let Some((ip, port)) = local.split_once(':') else { continue };
        // Little-endian hex: 127.0.0.1 is 0100007F.
        if ip != "0100007F" {
            continue;
        }
        if let (Ok(port), Ok(drops)) = (u16::from_str_radix(port, 16), drops.parse::<u64>()) {
            *out.entry(port).or_default() += drops;
        }
    }
    out
}

/// The sum of drops on `ports` between two snapshots.
pub fn drops_between(before: &HashMap<u16, u64>, after: &HashMap<u16, u64>, ports: &[u16]) -> u64 {
    ports.iter().map(|p| after.get(p).unwrap_or(&0).saturating_sub(*before.get(p).unwrap_or(&0))).sum()
}

/// One line about the machine and its load right now (other builds share these cores).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
