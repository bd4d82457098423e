//! How long a controller's watches wait after an error before they try again.
//!
//! kube-runtime's default follows client-go (0.8 s doubling to 30 s, reset only after 120 s
//! without errors), but one backoff is shared by *all* of a controller's trigger watches: the
//! session controller has six. After an API server restart each watch hit an error in turn, and
//! the shared delay grew until every watch stalled for 13–45 s at a time. New sessions went unseen
//! and deleted ones were not cleaned up for up to three minutes (found by
//! `tests/tests/crash_safety.rs`). A short cap keeps a restart to seconds; the watches still back
//! off from a struggling API server, which is what the default protects.

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// The first delay after an error.
pub const FIRST: Duration = Duration::from_millis(250);
/// The longest delay between two attempts.
pub const MAX: Duration = Duration::from_secs(2);

/// Doubles from [`FIRST`] to [`MAX`]; any event a watch delivers resets it.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(MAX);
        Some(now)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = WatchBackoff::default();
        let first: Vec<Duration> = b.by_ref().take(6).collect();
        assert_eq!(
            first,
            [250, 500, 1000, 2000, 2000, 2000].map(Duration::from_millis).to_vec(),
            "never more than 2 s"
        );
        b.reset();
        assert_eq!(b.next(), Some(FIRST));
    }
}
