//! Binds the listener and serves until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::http;
use crate::proxy::Proxy;
use crate::tls::{CertificateStore, TlsError};

/// How long open connections get after a stop signal (the console reconnects to another replica).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-dir: the certificate is not usable")]
    Tls(#[source] TlsError),
    #[error("failed to serve")]
    Serve(#[source] std::io::Error),
    #[error("failed to install the signal handlers")]
    Signals(#[source] std::io::Error),
}

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls_dir: Option<PathBuf>,
    pub tls_reload_interval: Duration,
    pub proxy: Proxy,
}

pub async fn serve(options: ServeOptions) -> Result<(), ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signals)?;
    let app = http::router(Arc::new(options.proxy));
    let listener = std::net::TcpListener::bind(options.listen)
        .map_err(|source| ServerError::Bind { addr: options.listen, source })?;
    listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: options.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: options.listen, source })?;
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping");
        shutdown.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let service = app.into_make_service();
    match options.tls_dir {
        Some(dir) => {
            let store = CertificateStore::load(&dir).map_err(ServerError::Tls)?;
            let config = store.server_config().map_err(ServerError::Tls)?;
            tokio::spawn(Arc::clone(&store).watch(options.tls_reload_interval));
            tracing::info!(addr = %addr, tls = true, "listening");
            axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(config))
                .handle(handle)
                .serve(service)
                .await
                .map_err(ServerError::Serve)
        }
        None => {
            tracing::info!(addr = %addr, tls = false, "listening");
            axum_server::from_tcp(listener).handle(handle).serve(service).await.map_err(ServerError::Serve)
        }
    }
}
