//! Join links for ops (`tiepdan-operator links <session>`): one per point, read from the session's
//! token Secret. Links are secrets: they are printed to the operator of the CLI only, and never
//! written to status, events or logs.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::api::ReceptionSession;
use crate::build::join_tokens;

/// Errors building links.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read session {0}")]
    Session(String, #[source] kube::Error),
    #[error("session {0} has no join tokens (it is not provisioned yet, or it has completed)")]
    NoTokens(String),
    #[error("failed to read the join tokens of session {0}")]
    Tokens(String, #[source] kube::Error),
    #[error("session {0} has no worker yet; pass --base-url")]
    NoBaseUrl(String),
    #[error("failed to read the token keys of pool {0}")]
    SigningKey(String, #[source] kube::Error),
    #[error("pool {0} has no token keys yet")]
    NoSigningKey(String),
    #[error(transparent)]
    Token(#[from] crate::tokens::Error),
}

/// A probe's token and where to use it (`tiepdan-media-worker probe --url … --token …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeLink {
    pub name: String,
    /// The session's signaling URL, when it has a worker.
    pub signaling_url: Option<String>,
    pub token: String,
}

/// One point's link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub point: String,
    pub url: String,
}

/// The console's origin derived from a signaling URL: `ws(s)://host:port/v1/ws` →
/// `http(s)://host:port`.
pub fn base_from_signaling(signaling_url: &str) -> Option<String> {
    let (scheme, rest) = signaling_url.split_once("://")?;
    let http = match scheme {
        "ws" => "http",
        "wss" => "https",
        _ => return None,
    };
    let host = rest.split('/').next()?;
    Some(format!("{http}://{host}"))
}

/// Builds the links from tokens keyed by point name. The token rides in the fragment, which a
/// browser never sends to a server nor in a Referer, so it stays out of access logs and proxies.
pub fn links(base: &str, tokens: impl IntoIterator<Item = (String, String)>) -> Vec<Link> {
    let base = base.trim_end_matches('/');
    tokens.into_iter().map(|(point, token)| Link { url: format!("{base}/join#token={token}"), point }).collect()
}

/// Reads a session's links from the cluster.
pub async fn fetch(
    client: &kube::Client,
    namespace: &str,
    session: &str,
    base_url: Option<&str>,
) -> Result<Vec<Link>, Error> {
    let s = Api::<ReceptionSession>::namespaced(client.clone(), namespace)
        .get(session)
        .await
        .map_err(|e| Error::Session(session.to_owned(), e))?;
    let base = match base_url {
        Some(b) => b.to_owned(),
        None => s
            .status
            .and_then(|st| st.worker)
            .and_then(|w| w.signaling_url)
            .and_then(|u| base_from_signaling(&u))
            .ok_or_else(|| Error::NoBaseUrl(session.to_owned()))?,
    };
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&join_tokens::name(session))
        .await
        .map_err(|e| Error::Tokens(session.to_owned(), e))?
        .ok_or_else(|| Error::NoTokens(session.to_owned()))?;
    let tokens =
        secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()));
    Ok(links(&base, tokens))
}

/// Mints a probe token for a session: signed with its pool's join key, at the session's current token
/// epoch, valid for [`crate::tokens::PROBE_TTL`] from `now`. Not stored anywhere: each call mints
/// a fresh one.
pub async fn probe(
    client: &kube::Client,
    namespace: &str,
    session: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<ProbeLink, Error> {
    use crate::build::token_keys;
    use crate::tokens::{mint_join_token, probe_claims, session_id};
    let s = Api::<ReceptionSession>::namespaced(client.clone(), namespace)
        .get(session)
        .await
        .map_err(|e| Error::Session(session.to_owned(), e))?;
    let pool = s.spec.worker_pool.clone();
    let keys = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&token_keys::private_name(&pool))
        .await
        .map_err(|e| Error::SigningKey(pool.clone(), e))?
        .as_ref()
        .and_then(token_keys::read_private)
        .ok_or_else(|| Error::NoSigningKey(pool.clone()))??;
    let status = s.status.unwrap_or_default();
    let claims = probe_claims(&session_id(namespace, session), &s.spec.title, name, status.token_epoch, now)?;
    Ok(ProbeLink {
        name: name.to_owned(),
        signaling_url: status.worker.and_then(|w| w.signaling_url),
        token: mint_join_token(&keys, &claims)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_origin_comes_from_the_signaling_url() {
        assert_eq!(
            base_from_signaling("ws://s-signaling.my-hao.svc:8080/v1/ws").as_deref(),
            Some("http://s-signaling.my-hao.svc:8080")
        );
        assert_eq!(base_from_signaling("wss://tiepdan.vnpt.vn/v1/ws").as_deref(), Some("https://tiepdan.vnpt.vn"));
        assert_eq!(base_from_signaling("ftp://x"), None);
    }

    #[test]
    fn one_link_per_point() {
        let l = links("http://127.0.1.1:8080/", [("di-su".to_owned(), "T1".to_owned())]);
        assert_eq!(l, vec![Link { point: "di-su".into(), url: "http://127.0.1.1:8080/join#token=T1".into() }]);
    }
}
