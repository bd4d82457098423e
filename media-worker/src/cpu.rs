//! CPU time of the mediasoup worker threads.
//!
//! mediasoup 0.8 runs each worker as a thread of this process (named `mediasoup-worker-<id>`,
//! which Linux truncates to `mediasoup-worke`) and has no `get_resource_usage`; the per-thread
//! `utime`/`stime` from `/proc/self/task/*/stat` give the same `ru_utime`/`ru_stime` figures.

use std::collections::HashMap;

/// Linux reports `/proc` times in USER_HZ ticks, which is 100 on every supported architecture.
const TICKS_PER_SECOND: f64 = 100.0;
const THREAD_PREFIX: &str = "mediasoup-worke";

/// Remembers the last reading per thread so the counters only ever grow.
#[derive(Debug, Default)]
pub struct CpuTracker {
    last: HashMap<u32, (u64, u64)>,
}

/// CPU seconds used since the previous reading.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CpuDelta {
    pub user_seconds: f64,
    pub system_seconds: f64,
}

impl CpuTracker {
    /// Reads every mediasoup thread; threads that went away are forgotten.
    pub fn sample(&mut self) -> CpuDelta {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return CpuDelta::default();
        };
        let mut now = HashMap::new();
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((name, user, system)) = parse_stat(&stat) {
                if name.starts_with(THREAD_PREFIX) {
                    now.insert(tid, (user, system));
                }
            }
        }
        let mut delta = CpuDelta::default();
        for (tid, (user, system)) in &now {
            let (last_user, last_system) = self.last.get(tid).copied().unwrap_or((0, 0));
            delta.user_seconds += user.saturating_sub(last_user) as f64 / TICKS_PER_SECOND;
            delta.system_seconds += system.saturating_sub(last_system) as f64 / TICKS_PER_SECOND;
        }
        self.last = now;
        delta
    }
}

/// `(comm, utime, stime)` from a `stat` line. The name is parenthesised and may contain spaces
/// or parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u64, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    // After the name: state(3) ... utime is field 14 and stime field 15 of the full line.
    let user = fields.nth(11)?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some((name, user, system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_the_name() {
        let line = "4242 (mediasoup-worke) S 1 1 1 0 -1 4194368 100 0 0 0 1234 567 0 0 20 0 3 0";
        assert_eq!(parse_stat(line), Some(("mediasoup-worke", 1234, 567)));
        let odd = "7 (a) b) R 1 1 1 0 -1 0 0 0 0 0 5 6 0 0";
        assert_eq!(parse_stat(odd), Some(("a) b", 5, 6)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
