//! Join links for ops (`tiepdan-operator links <session>`): one per point, read from the session's
//! token Secret. Links are secrets: they are printed to the operator of the CLI only, and never
//! written to status, events or logs.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::api::{ReceptionSession, ReceptionSessionStatus};
use crate::build::join_tokens;
use crate::link_generations;

/// Errors building links.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read session {0}")]
    Session(String, #[source] kube::Error),
    #[error("session {0} has no join tokens (it is not provisioned yet, or it has completed)")]
    NoTokens(String),
    #[error("failed to read the join tokens of session {0}")]
    Tokens(String, #[source] kube::Error),
    #[error("session {0} has no worker yet and no entry (status.entryUrl); pass --base-url")]
    NoBaseUrl(String),
    #[error("failed to read the token keys of pool {0}")]
    SigningKey(String, #[source] kube::Error),
    #[error("pool {0} has no token keys yet")]
    NoSigningKey(String),
    #[error(transparent)]
    Token(#[from] crate::tokens::Error),
    #[error("point {point} is not in session {session} (see its status.points); only a point in the session has a link to rotate")]
    NotInSession { point: String, session: String },
    #[error("failed to ask for a new link for point {point} (annotation {annotation})")]
    Rotate {
        point: String,
        annotation: String,
        #[source]
        source: kube::Error,
    },
    #[error("the operator did not issue point {point}'s new link (generation {generation}) within {waited:?}; is it running? (kubectl describe receptionsession {session})")]
    NotIssued { point: String, session: String, generation: u32, waited: std::time::Duration },
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

/// Which origin a session's links name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkBase {
    /// The stable entry in the session's `status.entryUrl` (the operator's `--entry-url`) when
    /// it has one, else its worker.
    Default,
    /// The session's current worker (from its signaling URL): such a link dies with the worker.
    Worker,
    /// An explicit origin (`--base-url`).
    Given(String),
}

impl LinkBase {
    /// From the `links` flags: `--base-url` wins, then `--worker-links`.
    pub fn choose(base_url: Option<String>, worker_links: bool) -> Self {
        match (base_url, worker_links) {
            (Some(base), _) => Self::Given(base),
            (None, true) => Self::Worker,
            (None, false) => Self::Default,
        }
    }

    /// The origin for a session with this status; `None` when it names the worker and the
    /// session has none.
    pub fn resolve(&self, status: Option<&ReceptionSessionStatus>) -> Option<String> {
        let worker = || {
            status
                .and_then(|st| st.worker.as_ref())
                .and_then(|w| w.signaling_url.as_deref())
                .and_then(base_from_signaling)
        };
        match self {
            Self::Given(base) => Some(base.clone()),
            Self::Worker => worker(),
            Self::Default => status.and_then(|st| st.entry_url.clone()).or_else(worker),
        }
    }
}

/// `--entry-url`: an absolute https (or, behind a TLS-terminating proxy in a lab, http) origin
/// without a path, query or fragment, e.g. `https://tiepdan.hungyen.gov.vn`.
pub fn parse_entry_url(value: &str) -> Result<String, String> {
    let trimmed = value.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| format!("{value:?} must start with https:// (the entry's public origin)"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!("{value:?} must be an origin only, like https://tiepdan.hungyen.gov.vn (no path)"));
    }
    Ok(trimmed.to_owned())
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
pub async fn fetch(client: &kube::Client, namespace: &str, session: &str, base: &LinkBase) -> Result<Vec<Link>, Error> {
    let s = Api::<ReceptionSession>::namespaced(client.clone(), namespace)
        .get(session)
        .await
        .map_err(|e| Error::Session(session.to_owned(), e))?;
    let base = base.resolve(s.status.as_ref()).ok_or_else(|| Error::NoBaseUrl(session.to_owned()))?;
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

/// Rotates a point's link: asks the operator for the next link generation (the session's
/// `links.tiepdan.io/<point>` annotation), waits until the operator has issued the new link and
/// recorded it, and returns it. From then on the worker refuses the point's older links and has
/// closed their connections; every other point keeps its link.
pub async fn rotate(
    client: &kube::Client,
    namespace: &str,
    session: &str,
    point: &str,
    base: &LinkBase,
    wait: std::time::Duration,
) -> Result<Link, Error> {
    use kube::api::{Patch, PatchParams};
    use kube::ResourceExt;
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), namespace);
    let annotation = link_generations::annotation(point);
    let rotate_error = |source| Error::Rotate { point: point.to_owned(), annotation: annotation.clone(), source };
    // Optimistic concurrency: the resourceVersion in the patch makes a concurrent rotation (or any
    // other write) fail with 409 instead of both asking for the same generation.
    let wanted = loop {
        let s = sessions.get(session).await.map_err(|e| Error::Session(session.to_owned(), e))?;
        let held = s
            .status
            .as_ref()
            .and_then(|st| st.points.iter().find(|p| p.name == point && !p.removed))
            .map(|p| p.link_generation)
            .ok_or_else(|| Error::NotInSession { point: point.to_owned(), session: session.to_owned() })?;
        let asked = link_generations::requested(s.annotations()).0.get(point).copied().unwrap_or(0);
        let wanted = held.max(asked) + 1;
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": s.resource_version(),
            "annotations": {annotation.clone(): wanted.to_string()},
        }});
        match sessions.patch(session, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => break wanted,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(rotate_error(e)),
        }
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let s = sessions.get(session).await.map_err(|e| Error::Session(session.to_owned(), e))?;
        let recorded = s
            .status
            .as_ref()
            .and_then(|st| st.points.iter().find(|p| p.name == point))
            .is_some_and(|p| p.link_generation >= wanted);
        if recorded {
            let link = fetch(client, namespace, session, base).await?.into_iter().find(|l| l.point == point);
            if let Some(link) = link.filter(|l| link_generation_of(&l.url) >= Some(wanted)) {
                return Ok(link);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotIssued {
                point: point.to_owned(),
                session: session.to_owned(),
                generation: wanted,
                waited: wait,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The link generation a link's token carries, read without checking its signature (the link
/// came from the operator's own Secret; the worker is what checks it).
pub fn link_generation_of(url: &str) -> Option<u32> {
    use base64::Engine as _;
    let token = url.split_once("#token=")?.1;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<crate::tokens::JoinClaims>(&bytes).ok().map(|c| c.link_generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_the_entry_when_the_session_has_one() {
        use crate::api::WorkerStatus;
        let worker = WorkerStatus {
            pod: Some("w".into()),
            signaling_url: Some("wss://s-signaling.ns.svc/v1/ws".into()),
            ..Default::default()
        };
        let mut status = ReceptionSessionStatus { worker: Some(worker), ..Default::default() };
        assert_eq!(LinkBase::Default.resolve(Some(&status)).as_deref(), Some("https://s-signaling.ns.svc"));
        status.entry_url = Some("https://tiepdan.hungyen.gov.vn".into());
        assert_eq!(LinkBase::Default.resolve(Some(&status)).as_deref(), Some("https://tiepdan.hungyen.gov.vn"));
        assert_eq!(LinkBase::Worker.resolve(Some(&status)).as_deref(), Some("https://s-signaling.ns.svc"));
        assert_eq!(LinkBase::Given("https://x".into()).resolve(Some(&status)).as_deref(), Some("https://x"));
        status.worker = None;
        assert_eq!(LinkBase::Worker.resolve(Some(&status)), None);
        assert_eq!(LinkBase::Default.resolve(None), None);
        assert_eq!(LinkBase::choose(None, true), LinkBase::Worker);
        assert_eq!(LinkBase::choose(Some("https://x".into()), true), LinkBase::Given("https://x".into()));
    }

    #[test]
    fn an_entry_url_is_an_https_origin() {
        assert_eq!(parse_entry_url("https://tiepdan.hungyen.gov.vn/").as_deref(), Ok("https://tiepdan.hungyen.gov.vn"));
        assert_eq!(parse_entry_url("https://127.0.0.1:8443").as_deref(), Ok("https://127.0.0.1:8443"));
        for bad in ["tiepdan.hungyen.gov.vn", "https://", "https://x/join", "wss://x", "https://x#token=1"] {
            assert!(parse_entry_url(bad).is_err(), "{bad}");
        }
    }

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
    fn a_links_generation_is_read_from_its_token() {
        use crate::tokens::{join_claims, mint_join_token};
        let s = crate::tokens::tests::session();
        let keys = crate::tokens::SigningKeys::generate();
        let url = |g| {
            let token = mint_join_token(&keys, &join_claims("a/b", "t", &s, &s.participants[0], 0, g)).unwrap();
            format!("https://x/join#token={token}")
        };
        assert_eq!(link_generation_of(&url(0)), Some(0));
        assert_eq!(link_generation_of(&url(3)), Some(3));
        assert_eq!(link_generation_of("https://x/join"), None);
    }

    #[test]
    fn one_link_per_point() {
        let l = links("http://127.0.1.1:8080/", [("di-su".to_owned(), "T1".to_owned())]);
        assert_eq!(l, vec![Link { point: "di-su".into(), url: "http://127.0.1.1:8080/join#token=T1".into() }]);
    }
}
