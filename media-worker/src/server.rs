//! Wiring and lifecycle: start the media thread, the mediasoup workers, the statistics poller and
//! the HTTP server; drain on SIGTERM/SIGINT; stop.
//!
//! ```text
//! running ──signal──> draining (joins refused, /readyz 503) ──last point left or timeout──> stopped
//! ```

use crate::config::ServeConfig;
use crate::http::{self, AppState};
use crate::local_runner::{LocalRunner, LocalRunnerError};
use crate::metrics::{Metrics, MetricsError};
use crate::registry::{AllocationError, Registry, RegistrySettings};
use crate::room::Kick;
use crate::stats_poller;
use crate::workers::{WorkerPool, WorkerPoolError};
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long open HTTP requests get to finish once the server stops.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to set up metrics")]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    MediaThread(#[from] LocalRunnerError),
    #[error("failed to start the mediasoup workers")]
    Workers(#[from] WorkerPoolError),
    #[error("failed to bind the HTTP listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to load the TLS certificate or key")]
    Tls(#[source] std::io::Error),
    #[error("failed to bind to the configured session")]
    Allocate(#[from] AllocationError),
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("the HTTP server task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("failed to listen for shutdown signals")]
    Signals(#[source] std::io::Error),
}

/// A started worker. Dropping it without [`RunningServer::stop`] leaves the HTTP task running
/// until the runtime ends.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    tls: bool,
    registry: Arc<Registry>,
    metrics: Metrics,
    handle: Handle,
    stop: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    drain_timeout: Duration,
}

/// Starts everything and returns once the HTTP listener is bound.
pub async fn start(config: ServeConfig) -> Result<RunningServer, ServerError> {
    let metrics = Metrics::new()?;
    let media = LocalRunner::start("tiepdan-media")?;
    let workers = WorkerPool::start(config.workers, config.rtc_ports.clone(), &metrics).await?;
    let health = workers.health();
    let registry = Arc::new(Registry::new(
        RegistrySettings {
            token_key: config.token_key.clone(),
            rtc_listen_ip: config.rtc_listen_ip,
            announced_ip: config.announced_ip,
            thresholds: config.thresholds,
        },
        workers,
        media.clone(),
        metrics.clone(),
    ));
    if let Some((session, title)) = config.session.clone() {
        registry.allocate(session, title, 0)?;
    }
    {
        let registry = Arc::downgrade(&registry);
        let metrics = metrics.clone();
        let interval = config.stats_interval;
        media.spawn(move || stats_poller::poll_forever(registry, metrics, interval))?;
    }

    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: config.listen, source })?;

    let (stop, stop_rx) = watch::channel(false);
    let app =
        http::router(AppState { registry: Arc::clone(&registry), metrics: metrics.clone(), health, stop: stop_rx });
    let handle = Handle::new();
    let service = app.into_make_service();
    let http = match &config.tls {
        Some(tls) => {
            // The crate is built without a default rustls provider; pick ring explicitly. An
            // error only means one was installed already (e.g. by an earlier server in tests).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls_config = RustlsConfig::from_pem_file(&tls.cert, &tls.key).await.map_err(ServerError::Tls)?;
            let server = axum_server::from_tcp_rustls(listener, tls_config).handle(handle.clone());
            tokio::spawn(server.serve(service))
        }
        None => {
            let server = axum_server::from_tcp(listener).handle(handle.clone());
            tokio::spawn(server.serve(service))
        }
    };
    tracing::info!(addr = %local_addr, tls = config.tls.is_some(), "listening");
    Ok(RunningServer {
        local_addr,
        tls: config.tls.is_some(),
        registry,
        metrics,
        handle,
        stop,
        http,
        drain_timeout: config.drain_timeout,
    })
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http(s)://addr`
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// `ws(s)://addr/v1/ws`
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/v1/ws", self.local_addr)
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Refuses new joins and waits (up to the drain timeout) for every point to leave, then
    /// stops.
    pub async fn drain_and_stop(self) -> Result<(), ServerError> {
        self.registry.begin_drain();
        let present = self.registry.present_count();
        tracing::info!(present, timeout = ?self.drain_timeout, "draining");
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        loop {
            // Register interest before checking, so a leave between the two is not missed.
            let left = self.registry.point_left_notification();
            if self.registry.present_count() == 0 {
                break;
            }
            tokio::select! {
                () = left => {}
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        present = self.registry.present_count(),
                        "drain timeout reached; disconnecting the remaining points"
                    );
                    break;
                }
            }
        }
        self.stop().await
    }

    /// Disconnects everyone and stops serving.
    pub async fn stop(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        self.registry.kick_everyone(Kick::Shutdown);
        self.handle.graceful_shutdown(Some(HTTP_SHUTDOWN_GRACE));
        self.http.await?.map_err(ServerError::Http)?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs the worker until SIGTERM/SIGINT, drains, and returns. A second signal during the drain
/// stops at once.
pub async fn serve(config: ServeConfig) -> Result<(), ServerError> {
    let server = start(config).await?;
    shutdown_signal().await?;
    tracing::info!("shutdown signal received");
    let registry = Arc::clone(&server.registry);
    let drain = server.drain_and_stop();
    tokio::pin!(drain);
    tokio::select! {
        result = &mut drain => result,
        second = shutdown_signal() => {
            second?;
            tracing::warn!("second signal; stopping without waiting for points");
            registry.kick_everyone(Kick::Shutdown);
            Ok(())
        }
    }
}

async fn shutdown_signal() -> Result<(), ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signals)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
