//! The controllers: one kube-runtime Controller per kind, sharing a [`Context`].

pub mod allocation;
pub mod context;
pub mod events;
pub mod point;
pub mod pool;
pub mod session;
pub mod status;

pub use context::{Context, OperatorConfig};

use std::sync::Arc;

use futures::StreamExt;
use kube::Client;

use crate::clock::Clock;

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    clock: Arc<dyn Clock>,
    config: OperatorConfig,
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
    let sessions = session::controller(ctx.clone(), stop()).for_each(|_| async {});
    let pools = pool::controller(ctx.clone(), stop()).for_each(|_| async {});
    let points = point::controller(ctx.clone(), stop()).for_each(|_| async {});
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    tokio::join!(sessions, pools, points);
}
