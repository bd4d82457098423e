//! The controllers: one kube-runtime Controller per kind, sharing a [`Context`].

pub mod allocation;
pub mod ca_rotation;
pub mod caches;
pub mod certificate;
pub mod context;
pub mod crds;
pub mod events;
pub mod failover;
pub mod instrument;
pub mod monitoring;
pub mod pod_view;
pub mod pods;
pub mod point;
pub mod pool;
pub mod secret_memo;
pub mod session;
pub mod session_events;
pub mod session_plan;
pub mod session_status;
#[cfg(test)]
mod session_transitions;
pub mod status;
pub mod token_keys;
pub mod turn_secret;
pub mod watch_backoff;
pub mod worker_health;

pub use context::{Context, OperatorConfig};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::ListParams;
use kube::Client;

use crate::api::{MediaWorkerPool, ReceptionPoint, ReceptionSession};
use crate::clock::Clock;

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    clock: Arc<dyn Clock>,
    config: OperatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    run_gated(client, clock, config, std::future::ready(()), shutdown).await;
}

/// Like [`run`], but the controllers start only once `gate` resolves (e.g. this replica won the
/// leader election); `/healthz`, `/readyz` and `/metrics` answer from the start, so a standby
/// replica is alive and ready without acting.
pub async fn run_gated(
    client: Client,
    clock: Arc<dyn Clock>,
    config: OperatorConfig,
    gate: impl std::future::Future<Output = ()> + Send,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let ctx = Arc::new(Context::new(client, clock, config));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    if let Some(addr) = ctx.config.metrics_addr {
        let (metrics, ready, stopped) = (ctx.metrics.clone(), ctx.ready.clone(), stop());
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve(addr, metrics, ready, stopped).await {
                tracing::error!(error = %e, category = e.category(), "metrics endpoint failed");
            }
        });
    }
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    // Readiness does not wait for the gate: a standby replica that can read every watched kind is
    // ready to take over (and serves the admission webhook meanwhile). Waiting would leave it
    // unready forever, and a rolling update that needs the new pod ready before it stops the
    // leader would never finish.
    let readiness = tokio::spawn({
        let (ctx, stopped) = (ctx.clone(), stop());
        async move {
            tokio::select! {
                () = become_ready(&ctx) => {}
                () = stopped => {}
            }
        }
    });
    tokio::select! {
        () = gate => {}
        () = stop() => {
            readiness.abort();
            return;
        }
    }
    let Some((triggers, watches)) = ctx.start_caches() else {
        tracing::error!("the controllers were already started once in this process");
        return;
    };
    let synced = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.caches.log_until_synced(Duration::from_secs(10)).await }
    });
    let caches::Triggers { session_pods, pool_pods, services, secrets, points, pools } = triggers;
    let session_triggers = session::Triggers { pods: session_pods, services, secrets, points, pools };
    let sessions = session::controller(ctx.clone(), session_triggers, stop()).for_each(log_queue_errors);
    let pools = pool::controller(ctx.clone(), pool_pods, stop()).for_each(log_queue_errors);
    let points = point::controller(ctx.clone(), stop()).for_each(log_queue_errors);
    let ca = ca_rotation::run(ctx.clone(), stop());
    let turn = turn_secret::run(ctx.clone(), stop());
    let all = async {
        tokio::join!(sessions, pools, points, ca, turn);
    };
    // A controller shuts down gracefully only once its cache has listed; with the API server
    // unreachable that never happens, and SIGTERM would wait for the kubelet's SIGKILL. Give the
    // in-flight reconciles a bounded time after the stop signal instead.
    let bounded_after_stop = async {
        stop().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time; exiting anyway");
    };
    tokio::select! {
        () = all => {}
        () = bounded_after_stop => {}
    }
    readiness.abort();
    synced.abort();
    for w in watches {
        w.abort();
    }
}

/// What a controller's stream yields: a reconcile's result, or why none could run.
pub type Outcome<K, E> = Result<
    (kube::runtime::reflector::ObjectRef<K>, kube::runtime::controller::Action),
    kube::runtime::controller::Error<E, kube::runtime::watcher::Error>,
>;

/// Logs what a controller's stream reports besides reconciles. A reconcile's failure is logged
/// where it happens ([`instrument`]); a watch of the controller's own kind that keeps failing
/// (its list refused, timed out or unreadable) held every reconcile of that kind without a word:
/// crash safety once saw an operator start and act on nothing for two minutes, with an empty log.
fn log_queue_errors<K, E>(outcome: Outcome<K, E>) -> futures::future::Ready<()>
where
    K: kube::Resource<DynamicType = ()>,
    E: std::error::Error,
{
    use kube::runtime::controller::Error as C;
    let kind = K::kind(&()).into_owned();
    match outcome {
        Err(C::QueueError(e)) => tracing::warn!(error = %e, kind, "watch failed; retrying"),
        Err(C::RunnerError(e)) => tracing::warn!(error = %e, kind, "the controller's runner failed"),
        // Reconcile failures are logged by `instrument`; a deleted object's is nothing to report.
        Err(C::ReconcilerFailed(..) | C::ObjectNotFound(_)) | Ok(_) => {}
    }
    futures::future::ready(())
}

/// How long reconciles in flight may finish after the stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Marks the operator ready once a list of every watched kind succeeds (CRDs installed, RBAC
/// granted), retrying with backoff until then.
async fn become_ready(ctx: &Context) {
    let one = ListParams::default().limit(1);
    let mut backoff = Duration::from_millis(250);
    loop {
        let sessions = ctx.watched::<ReceptionSession>().list_metadata(&one).await;
        let points = ctx.watched::<ReceptionPoint>().list_metadata(&one).await;
        let pools = ctx.watched::<MediaWorkerPool>().list_metadata(&one).await;
        match (sessions, points, pools) {
            (Ok(_), Ok(_), Ok(_)) => {
                ctx.ready.store(true, Ordering::Relaxed);
                return;
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::warn!(error = %e, "not ready: the API server did not list a watched kind");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use kube::runtime::controller::Error as C;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Counts warnings.
    struct Warnings(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn a_failing_watch_of_a_controllers_own_kind_is_logged_and_a_reconcile_failure_is_not_logged_twice() {
        let warnings = Arc::new(AtomicUsize::new(0));
        let _log = tracing::subscriber::set_default(tracing_subscriber::registry().with(Warnings(warnings.clone())));
        let queue: Outcome<ReceptionSession, session::Error> =
            Err(C::QueueError(kube::runtime::watcher::Error::NoResourceVersion));
        drop(log_queue_errors(queue));
        assert_eq!(warnings.load(Ordering::SeqCst), 1, "the watch error");
        let reconcile: Outcome<ReceptionSession, session::Error> = Err(C::ReconcilerFailed(
            session::Error::ServerVersion(kube::Error::LinesCodecMaxLineLengthExceeded),
            Box::new(kube::runtime::reflector::ObjectRef::<ReceptionSession>::new("s").within("n").erase()),
        ));
        drop(log_queue_errors(reconcile));
        assert_eq!(warnings.load(Ordering::SeqCst), 1, "instrument logs reconcile failures");
    }
}
