//! Time goes through a [`Clock`] so the session timeline (and the 15:00-day-before rule) can be
//! driven by a simulated clock in tests.

use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// A stream that yields whenever time jumps (a simulated clock being advanced), so
    /// controllers can re-evaluate timelines at once. The system clock never yields: there,
    /// controllers requeue for the next boundary instead.
    fn jumps(&self) -> BoxStream<'static, ()>;

    /// How long to wait in real time until `at` on this clock. `None` when the clock only moves
    /// by jumps (a simulated clock): the jump stream wakes reconcilers instead.
    fn real_wait_until(&self, at: Timestamp) -> Option<std::time::Duration> {
        let d = at.duration_since(self.now());
        Some(d.max(SignedDuration::ZERO).unsigned_abs())
    }
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn jumps(&self) -> BoxStream<'static, ()> {
        futures::stream::pending().boxed()
    }
}

/// A clock that only moves when told to.
#[derive(Clone, Debug)]
pub struct SimClock {
    now: Arc<Mutex<Timestamp>>,
    tx: Arc<watch::Sender<Timestamp>>,
}

impl SimClock {
    pub fn new(start: Timestamp) -> Self {
        let (tx, _rx) = watch::channel(start);
        Self { now: Arc::new(Mutex::new(start)), tx: Arc::new(tx) }
    }

    /// Sets the time and wakes every reconciler waiting on [`Clock::jumps`].
    pub fn set(&self, t: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
        self.tx.send_replace(t);
    }

    pub fn advance(&self, d: SignedDuration) {
        let t = self.now() + d;
        self.set(t);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn jumps(&self) -> BoxStream<'static, ()> {
        let mut rx = self.tx.subscribe();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
        .boxed()
    }

    fn real_wait_until(&self, _at: Timestamp) -> Option<std::time::Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sim_clock_jumps_wake_subscribers() {
        let c = SimClock::new("2025-06-01T00:00:00Z".parse().unwrap());
        let mut jumps = c.jumps();
        c.advance(SignedDuration::from_hours(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), jumps.next())
            .await
            .expect("a jump within the deadline")
            .expect("stream open");
        assert_eq!(c.now(), "2025-06-01T01:00:00Z".parse::<Timestamp>().unwrap());
    }
}
