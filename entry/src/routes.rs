//! Where a session's signaling goes now: the worker's address and the name its certificate
//! covers. Looked up for every new connection, so a replaced worker is found at the console's
//! next reconnect; nothing is cached that could point at a dead pod.

use std::net::SocketAddr;
use tiepdan_contract::ids::SessionId;
use tiepdan_contract::ErrorCode;

use crate::kube_routes::KubeRoutes;
use crate::static_routes::StaticRoutes;

/// The session's current worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The worker's signaling listener (its pod IP and signaling port).
    pub addr: SocketAddr,
    /// The name the worker's certificate is checked against: the session's signaling Service
    /// (`<session>-signaling.<namespace>.svc`), which every certificate of the session covers.
    pub server_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("session {session} does not exist (it was deleted, or the link is not from this system)")]
    UnknownSession { session: String },
    #[error("session {session} has no worker ready now ({reason}); the console tries again")]
    NoWorker { session: String, reason: &'static str },
    #[error("failed to read the routes file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the routes file {path} is not valid: {reason}")]
    FileFormat { path: String, reason: String },
    #[error("failed to read session {session} from the Kubernetes API")]
    Api {
        session: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl RouteError {
    /// The signaling error code the console sees: a session that is gone is closed for good;
    /// anything else passes (a worker being replaced), so the console retries.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownSession { .. } => ErrorCode::SessionClosed,
            Self::NoWorker { .. } | Self::File { .. } | Self::FileFormat { .. } | Self::Api { .. } => {
                ErrorCode::SessionNotAllocated
            }
        }
    }

    /// What the console is told: the entry's own faults are not the office's business.
    pub fn public_message(&self) -> String {
        match self {
            Self::UnknownSession { .. } | Self::NoWorker { .. } => self.to_string(),
            Self::File { .. } | Self::FileFormat { .. } | Self::Api { .. } => {
                "the entry cannot find the session's worker right now; the console tries again".to_owned()
            }
        }
    }

    /// A bounded label for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownSession { .. } => "unknown_session",
            Self::NoWorker { reason, .. } => reason,
            Self::File { .. } | Self::FileFormat { .. } => "routes_file",
            Self::Api { .. } => "api",
        }
    }
}

/// Where routes come from.
#[derive(Debug, Clone)]
pub enum Routes {
    /// ReceptionSession status and worker pods, read from the Kubernetes API (the cluster).
    Kube(KubeRoutes),
    /// A JSON file, re-read for every connection (a host without Kubernetes, and tests).
    Static(StaticRoutes),
}

impl Routes {
    pub async fn find(&self, session: &SessionId) -> Result<Upstream, RouteError> {
        match self {
            Self::Kube(routes) => routes.find(session).await,
            Self::Static(routes) => routes.find(session).await,
        }
    }
}
