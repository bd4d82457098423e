//! A thread that runs `!Send` futures for the rest of the process.
//!
//! mediasoup 0.8's `Transport` trait is `#[async_trait(?Send)]`, so `produce`, `consume` and
//! `get_stats` return futures that cannot be awaited inside axum handlers or `tokio::spawn`ed
//! tasks. Instead of giving up the multi-threaded runtime, those calls are shipped here: the
//! closure (which is `Send`: it only captures mediasoup handles and options) runs on a
//! current-thread runtime inside a `LocalSet`, and only its `Send` result travels back.

use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum LocalRunnerError {
    #[error("failed to start the media thread")]
    Start(#[source] std::io::Error),
    /// The job never produced a result: the thread is shutting down, or the job panicked (the
    /// panic stays inside that job; the thread keeps serving others).
    #[error("the media thread dropped the job")]
    Lost,
}

/// Cloneable handle; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct LocalRunner {
    jobs: mpsc::UnboundedSender<Job>,
}

impl LocalRunner {
    pub fn start(name: &str) -> Result<Self, LocalRunnerError> {
        let (jobs, mut receiver) = mpsc::unbounded_channel::<Job>();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LocalRunnerError::Start)?;
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some(job) = receiver.recv().await {
                        tokio::task::spawn_local(job());
                    }
                });
            })
            .map_err(LocalRunnerError::Start)?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the media thread and returns its result. If the caller stops waiting, the
    /// job still runs to completion and its result is dropped (closing any mediasoup object it
    /// created), which is exactly the RAII behaviour wanted for abandoned requests.
    pub async fn run<F, Fut, T>(&self, job: F) -> Result<T, LocalRunnerError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                Box::pin(async move {
                    let _ = reply.send(job().await);
                })
            }))
            .map_err(|_| LocalRunnerError::Lost)?;
        result.await.map_err(|_| LocalRunnerError::Lost)
    }

    /// Starts a long-running task on the media thread (e.g. the statistics poller).
    pub fn spawn<F, Fut>(&self, task: F) -> Result<(), LocalRunnerError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.jobs.send(Box::new(move || Box::pin(task()))).map_err(|_| LocalRunnerError::Lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[tokio::test]
    async fn runs_non_send_futures_and_returns_send_results() {
        let runner = LocalRunner::start("test-local").expect("start");
        let value = runner
            .run(|| async {
                // An Rc held across an await point makes this future !Send.
                let rc = Rc::new(20);
                tokio::task::yield_now().await;
                *rc + 22
            })
            .await
            .expect("run");
        assert_eq!(value, 42);
    }
}
