//! Routes from a JSON file, re-read for every lookup so that whoever replaces a worker (a script,
//! a test) only rewrites the file:
//!
//! ```json
//! {"sessions": {"ubnd-hanoi/tiep-dan": {"address": "127.0.0.1:8443",
//!                                       "serverName": "tiep-dan-signaling.ubnd-hanoi.svc"}}}
//! ```
//!
//! A session missing from the file is unknown; one mapped to `null` has no worker now.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use tiepdan_contract::ids::SessionId;

use crate::routes::{RouteError, Upstream};

#[derive(Debug, Clone)]
pub struct StaticRoutes {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    sessions: BTreeMap<String, Option<Entry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    address: SocketAddr,
    server_name: String,
}

impl StaticRoutes {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub async fn find(&self, session: &SessionId) -> Result<Upstream, RouteError> {
        let path = self.path.display().to_string();
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| RouteError::File { path: path.clone(), source })?;
        let file: File =
            serde_json::from_str(&text).map_err(|e| RouteError::FileFormat { path, reason: e.to_string() })?;
        match file.sessions.get(session.as_str()) {
            None => Err(RouteError::UnknownSession { session: session.to_string() }),
            Some(None) => {
                Err(RouteError::NoWorker { session: session.to_string(), reason: "no worker in the routes file" })
            }
            Some(Some(entry)) => Ok(Upstream { addr: entry.address, server_name: entry.server_name.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_is_read_for_every_lookup() {
        let path = std::env::temp_dir().join(format!("tiepdan-entry-routes-{}.json", std::process::id()));
        let routes = StaticRoutes::new(&path);
        let session: SessionId = "ns/s".parse().expect("id");
        let write = |address: &str| {
            std::fs::write(&path, format!(r#"{{"sessions":{{"ns/s":{address}}}}}"#)).expect("write");
        };
        write(r#"{"address":"127.0.0.1:1","serverName":"a"}"#);
        assert_eq!(routes.find(&session).await.expect("found").addr.port(), 1);
        write("null");
        assert!(matches!(routes.find(&session).await, Err(RouteError::NoWorker { .. })));
        write(r#"{"address":"127.0.0.1:2","serverName":"a"}"#);
        assert_eq!(routes.find(&session).await.expect("found").addr.port(), 2);
        let other: SessionId = "ns/other".parse().expect("id");
        assert!(matches!(routes.find(&other).await, Err(RouteError::UnknownSession { .. })));
        std::fs::write(&path, "{").expect("write");
        assert!(matches!(routes.find(&session).await, Err(RouteError::FileFormat { .. })));
        let _ = std::fs::remove_file(&path);
    }
}
