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
    let caches::Triggers { session_pods, pool_pods, services, secrets, points, pools } = triggers;
    let session_triggers = session::Triggers { pods: session_pods, services, secrets, points, pools };
    let sessions = session::controller(ctx.clone(), session_triggers, stop()).for_each(|_| async {});
    let pools = pool::controller(ctx.clone(), pool_pods, stop()).for_each(|_| async {});
    let points = point::controller(ctx.clone(), stop()).for_each(|_| async {});
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
    for w in watches {
        w.abort();
    }
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
