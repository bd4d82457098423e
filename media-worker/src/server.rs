//! Wiring and lifecycle: start the media thread, the mediasoup workers, the statistics poller and
//! the HTTP server; drain on SIGTERM/SIGINT; stop.
//!
//! ```text
//! running ──signal──> draining (joins refused, /readyz 503) ──last point left or timeout──> stopped
//! ```
//!
//! Listeners, by configuration:
//!
//! ```text
//! (default)                          --listen: everything, plain HTTP
//! --tls-cert/--tls-key               --listen: everything, TLS with a certificate read once
//! --signaling-listen + --tls-dir     --listen: admin, plain HTTP; --signaling-listen: signaling,
//!                                    TLS with a certificate reloaded from the directory
//! ```

use crate::admin_auth::AdminAuth;
use crate::config::ServeConfig;
use crate::http::{self, AppState};
use crate::local_runner::{LocalRunner, LocalRunnerError};
use crate::metrics::{Metrics, MetricsError};
use crate::registry::{Allocation, AllocationError, Registry, RegistrySettings};
use crate::room::Kick;
use crate::stats_poller;
use crate::tls::{CertificateStore, LoadedCertificate, Reloader, TlsError, TlsFiles};
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
    Tls(#[source] TlsError),
    #[error("--tls-cert/--tls-key and --signaling-listen/--tls-dir cannot be used together")]
    TlsModes,
    #[error("failed to bind to the configured session")]
    Allocate(#[from] AllocationError),
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("the HTTP server task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("failed to listen for shutdown signals")]
    Signals(#[source] std::io::Error),
}

/// One bound, serving HTTP listener.
#[derive(Debug)]
struct Listener {
    addr: SocketAddr,
    tls: bool,
    handle: Handle,
    task: JoinHandle<std::io::Result<()>>,
}

impl Listener {
    fn bind(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), ServerError> {
        let bind_error = |source| ServerError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        Ok((listener, local_addr))
    }

    /// Serves `app` on `listener`, over TLS when a configuration is given.
    fn serve(
        listener: std::net::TcpListener,
        addr: SocketAddr,
        app: axum::Router,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let handle = Handle::new();
        let service = app.into_make_service();
        let task = match &tls {
            Some(config) => {
                let config = RustlsConfig::from_config(Arc::clone(config));
                tokio::spawn(axum_server::from_tcp_rustls(listener, config).handle(handle.clone()).serve(service))
            }
            None => tokio::spawn(axum_server::from_tcp(listener).handle(handle.clone()).serve(service)),
        };
        Self { addr, tls: tls.is_some(), handle, task }
    }

    async fn stop(self) -> Result<(), ServerError> {
        self.handle.graceful_shutdown(Some(HTTP_SHUTDOWN_GRACE));
        self.task.await?.map_err(ServerError::Http)
    }
}

/// A started worker. Dropping it without [`RunningServer::stop`] leaves the HTTP tasks running
/// until the runtime ends.
#[derive(Debug)]
pub struct RunningServer {
    /// `--listen`: everything, or only the admin surface when `signaling` is set.
    main: Listener,
    /// `--signaling-listen`.
    signaling: Option<Listener>,
    registry: Arc<Registry>,
    metrics: Metrics,
    stop: watch::Sender<bool>,
    reloader: Option<JoinHandle<()>>,
    drain_timeout: Duration,
}

/// Starts everything and returns once the HTTP listeners are bound. A `--tls-dir` worker binds
/// its signaling listener even with no certificate yet.
pub async fn start(config: ServeConfig) -> Result<RunningServer, ServerError> {
    if config.tls.is_some() && config.signaling.is_some() {
        return Err(ServerError::TlsModes);
    }
    let metrics = Metrics::new()?;
    let media = LocalRunner::start("tiepdan-media")?;
    let workers = WorkerPool::start(config.workers, config.rtc_ports.clone(), &metrics).await?;
    let health = workers.health();
    let registry = Arc::new(Registry::new(
        RegistrySettings {
            public_keys: config.public_keys.clone(),
            rtc_listen_ip: config.rtc_listen_ip,
            announce: config.announce.clone(),
            rtc_receive_buffer: config.rtc_receive_buffer,
            thresholds: config.thresholds,
            turn: config.turn.clone(),
        },
        workers,
        media.clone(),
        metrics.clone(),
    ));
    if let Some((session, title)) = config.session.clone() {
        registry.allocate(Allocation::new(session, title, 0))?;
    }
    {
        let registry = Arc::downgrade(&registry);
        let metrics = metrics.clone();
        let interval = config.stats_interval;
        media.spawn(move || stats_poller::poll_forever(registry, metrics, interval))?;
    }

    let (stop, stop_rx) = watch::channel(false);
    let store = (config.tls.is_some() || config.signaling.is_some()).then(|| {
        metrics.init_tls();
        Arc::new(CertificateStore::new())
    });
    let mut reloader = None;
    if let (Some(store), Some(paths)) = (&store, &config.tls) {
        // Static: the certificate must be there, as before reloading existed.
        let files = TlsFiles { cert: paths.cert.clone(), key: paths.key.clone() };
        store.install(LoadedCertificate::from_files(&files).await.map_err(ServerError::Tls)?, &metrics);
    }
    if let (Some(store), Some(signaling)) = (&store, &config.signaling) {
        let mut watcher = Reloader::new(TlsFiles::in_dir(&signaling.tls_dir), Arc::clone(store), metrics.clone());
        // A worker restarted after its certificate arrived serves it from the first handshake.
        watcher.check().await;
        reloader = Some(tokio::spawn(watcher.run(signaling.reload_interval, stop_rx.clone())));
    }
    let server_tls = store.as_ref().map(CertificateStore::server_config).transpose().map_err(ServerError::Tls)?;

    let state = AppState {
        registry: Arc::clone(&registry),
        metrics: metrics.clone(),
        health,
        stop: stop_rx,
        tls: store.clone(),
        admin: Arc::new(AdminAuth::new(config.public_keys.clone(), config.pod_name.clone())),
    };
    let (listener, addr) = Listener::bind(config.listen)?;
    let (main, signaling) = match &config.signaling {
        None => (Listener::serve(listener, addr, http::router(state), server_tls), None),
        Some(signaling) => {
            let (signaling_listener, signaling_addr) = Listener::bind(signaling.listen)?;
            let admin = http::admin_router(state.clone(), signaling_addr.port());
            let main = Listener::serve(listener, addr, admin, None);
            let signaling =
                Listener::serve(signaling_listener, signaling_addr, http::signaling_router(state), server_tls);
            (main, Some(signaling))
        }
    };
    tracing::info!(
        addr = %main.addr,
        tls = main.tls,
        signaling_addr = signaling.as_ref().map(|s| tracing::field::display(s.addr)),
        certificate = store.as_ref().and_then(|s| s.status()).map(|t| tracing::field::display(t.sha256)),
        "listening"
    );
    Ok(RunningServer { main, signaling, registry, metrics, stop, reloader, drain_timeout: config.drain_timeout })
}

impl RunningServer {
    /// The `--listen` address (the admin surface when signaling has its own listener).
    pub fn local_addr(&self) -> SocketAddr {
        self.main.addr
    }

    /// Where signaling is served: the `--signaling-listen` address, else [`Self::local_addr`].
    pub fn signaling_addr(&self) -> SocketAddr {
        self.signaling_listener().addr
    }

    fn signaling_listener(&self) -> &Listener {
        self.signaling.as_ref().unwrap_or(&self.main)
    }

    /// `http(s)://addr` of the signaling surface (the console).
    pub fn http_url(&self) -> String {
        let listener = self.signaling_listener();
        let scheme = if listener.tls { "https" } else { "http" };
        format!("{scheme}://{}", listener.addr)
    }

    /// `ws(s)://addr/v1/ws`
    pub fn ws_url(&self) -> String {
        let listener = self.signaling_listener();
        let scheme = if listener.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/v1/ws", listener.addr)
    }

    /// `http(s)://addr` of the admin surface (`/v1/status`, `/v1/allocation`, `/metrics`).
    pub fn admin_url(&self) -> String {
        let scheme = if self.main.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.main.addr)
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
        let main = self.main.stop();
        let signaling = async {
            match self.signaling {
                Some(listener) => listener.stop().await,
                None => Ok(()),
            }
        };
        let (main, signaling) = tokio::join!(main, signaling);
        if let Some(reloader) = self.reloader {
            // It ends on the stop signal; waiting makes "stopped" mean no more file reads.
            reloader.await?;
        }
        main?;
        signaling?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs the worker until SIGTERM/SIGINT, drains, and returns. A second signal during the drain
/// stops at once.
pub async fn serve(config: ServeConfig) -> Result<(), ServerError> {
    // Installed before the worker says "listening": a SIGTERM that arrives right after (the
    // kubelet deleting a pod that just started) must drain, not kill the process with the
    // default action.
    let mut signals = ShutdownSignals::install()?;
    let server = start(config).await?;
    signals.next().await;
    tracing::info!("shutdown signal received");
    let registry = Arc::clone(&server.registry);
    let drain = server.drain_and_stop();
    tokio::pin!(drain);
    tokio::select! {
        result = &mut drain => result,
        () = signals.next() => {
            tracing::warn!("second signal; stopping without waiting for points");
            registry.kick_everyone(Kick::Shutdown);
            Ok(())
        }
    }
}

/// SIGTERM and SIGINT, handled (not the default action) from [`Self::install`] on.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self, ServerError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(ServerError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(ServerError::Signals)?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
