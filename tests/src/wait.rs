//! Bounded waits on conditions: the only way tests here wait (no fixed sleeps).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {timeout:?} waiting for {what}; last observed: {last}")]
    TimedOut { what: String, timeout: Duration, last: String },
}

const FIRST_INTERVAL: Duration = Duration::from_millis(25);
const MAX_INTERVAL: Duration = Duration::from_millis(500);

/// Polls `check` until it returns `Ok`, for at most `timeout`.
///
/// `check` returns `Err(why_not_yet)` while the condition does not hold; the last such reason
/// ends up in the timeout message next to `what`, e.g.
/// `timed out after 20s waiting for pod a/b to be Ready; last observed: phase Pending`.
/// Each call of `check` is itself bounded by the time left. Polls start at 25 ms apart and
/// back off to 500 ms.
pub async fn wait_for<T, E, F, Fut>(timeout: Duration, what: impl Display, mut check: F) -> Result<T, WaitError>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = FIRST_INTERVAL;
    let mut last = String::from("(no check completed)");
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(why)) => last = why.to_string(),
            Err(_) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::TimedOut { what: what.to_string(), timeout, last });
        }
        tokio::time::sleep_until((now + interval).min(deadline)).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let value = wait_for(Duration::from_secs(5), "the third call", || {
            calls += 1;
            let n = calls;
            async move {
                if n >= 3 {
                    Ok(n)
                } else {
                    Err(format!("call {n}"))
                }
            }
        })
        .await;
        assert_eq!(value.ok(), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_naming_what_was_awaited_and_the_last_observation() {
        let err = wait_for(Duration::from_secs(2), "the impossible", || async { Err::<(), _>("still impossible") })
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("the impossible"), "{err}");
        assert!(err.contains("still impossible"), "{err}");
    }
}
