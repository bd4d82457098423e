//! Counting the operator's requests to the API server, like client-go's
//! `rest_client_requests_total`. Every write costs the API server and etcd: at a thousand
//! sessions, re-applying unchanged children every poll was hundreds of writes a second. The
//! counts are a metric (`tiepdan_operator_api_requests_total{verb,resource}`) and what the
//! idle-writes test asserts on. Writes that [`crate::write_gate`] refused (this replica was not
//! leading) never reach the API server: they are counted apart, in
//! `tiepdan_operator_api_writes_refused_total{verb,resource}`.

use std::fmt;

use http::{Method, Request};
use kube::client::{Body, ClientBuilder};
use prometheus::{IntCounterVec, Opts};
use tower::util::MapRequestLayer;

use crate::request_timeout::RequestTimeout;

/// Errors building the counting client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to build a Kubernetes client")]
    Client(#[source] kube::Error),
}

/// The Kubernetes verbs that change something.
pub const WRITE_VERBS: [&str; 4] = ["create", "update", "patch", "delete"];

/// Requests by verb and resource, and writes refused before they were sent. Cheap to clone;
/// clones share counts.
#[derive(Clone)]
pub struct ApiRequests {
    sent: IntCounterVec,
    refused: IntCounterVec,
}

impl fmt::Debug for ApiRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiRequests(writes: {}, refused: {})", self.writes(), self.refused_writes())
    }
}

impl Default for ApiRequests {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiRequests {
    pub fn new() -> Self {
        // Fixed names and label sets: creating them cannot fail.
        let vec = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["verb", "resource"]).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        Self {
            sent: vec(
                "tiepdan_operator_api_requests_total",
                "Requests the operator sent to the API server, by Kubernetes verb and resource.",
            ),
            refused: vec(
                "tiepdan_operator_api_writes_refused_total",
                "Writes the operator refused to send because this replica did not hold the leader Lease, by Kubernetes \
                 verb and resource.",
            ),
        }
    }

    /// The collectors (requests sent, writes refused), for registering in a registry.
    pub fn collectors(&self) -> [IntCounterVec; 2] {
        [self.sent.clone(), self.refused.clone()]
    }

    /// Every (verb, resource) pair with its count so far, for a diff of two moments.
    pub fn snapshot(&self) -> std::collections::BTreeMap<(String, String), u64> {
        by_labels(&self.sent)
    }

    /// Like [`ApiRequests::snapshot`], for the writes refused.
    pub fn refused_snapshot(&self) -> std::collections::BTreeMap<(String, String), u64> {
        by_labels(&self.refused)
    }

    /// Every write refused so far.
    pub fn refused_writes(&self) -> u64 {
        self.refused_snapshot().values().sum()
    }

    /// Counts one write refused before it was sent.
    pub fn refuse(&self, verb: &str, resource: &str) {
        self.refused.with_label_values(&[verb, resource]).inc();
    }

    /// Requests so far whose verb and resource `select` accepts.
    fn sum(&self, select: impl Fn(&str, &str) -> bool) -> u64 {
        self.snapshot().into_iter().filter(|((verb, resource), _)| select(verb, resource)).map(|(_, n)| n).sum()
    }

    /// Every write so far.
    pub fn writes(&self) -> u64 {
        self.sum(|verb, _| WRITE_VERBS.contains(&verb))
    }

    /// Requests so far with `verb` on `resource`.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.sum(|v, r| v == verb && r == resource)
    }

    /// Counts one request.
    pub fn observe(&self, method: &Method, path: &str, query: Option<&str>) {
        let (resource, named) = resource(path);
        self.sent.with_label_values(&[verb(method, query, named), &resource]).inc();
    }

    /// A layer counting every request that passes through it here.
    pub fn layer(&self) -> MapRequestLayer<impl Fn(Request<Body>) -> Request<Body> + Clone + Send + Sync + 'static> {
        let counts = self.clone();
        MapRequestLayer::new(move |req: Request<Body>| {
            counts.observe(req.method(), req.uri().path(), req.uri().query());
            req
        })
    }

    /// A client for `config` whose requests are counted here and bounded by `timeout`.
    pub fn client(&self, config: kube::Config, timeout: RequestTimeout) -> Result<kube::Client, Error> {
        Ok(ClientBuilder::try_from(config)
            .map_err(Error::Client)?
            .with_layer(&timeout)
            .with_layer(&self.layer())
            .build())
    }
}

/// The counts of `vec` by (verb, resource).
fn by_labels(vec: &IntCounterVec) -> std::collections::BTreeMap<(String, String), u64> {
    use prometheus::core::Collector;
    let label = |m: &prometheus::proto::Metric, name: &str| {
        m.get_label().iter().find(|l| l.name() == name).map(|l| l.value().to_owned()).unwrap_or_default()
    };
    vec.collect()
        .iter()
        .flat_map(|mf| mf.get_metric())
        .map(|m| ((label(m, "verb"), label(m, "resource")), m.get_counter().get_value() as u64))
        .collect()
}

/// The Kubernetes verb of a request: `create`, `update`, `patch` and `delete` for the methods that
/// change something ([`WRITE_VERBS`]), `watch`, `get` (of one `named` object) or `list` for reads.
pub fn verb(method: &Method, query: Option<&str>, named: bool) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::GET if query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1")) => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        _ => "other",
    }
}

/// The resource (and subresource) a request path names, and whether it names one object:
/// `/api/v1/namespaces/n/pods/p/status` gives (`pods/status`, true). Bounded by the kinds the
/// operator touches.
pub fn resource(path: &str) -> (String, bool) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Skip the group/version prefix: `api/v1` or `apis/<group>/<version>`.
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..),
        Some(&"apis") => parts.get(3..),
        _ => None,
    }
    .unwrap_or(&[]);
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    match rest {
        [kind] => ((*kind).to_owned(), false),
        [kind, _] => ((*kind).to_owned(), true),
        [kind, _, sub, ..] => (format!("{kind}/{sub}"), true),
        [] => ("other".to_owned(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_resource() {
        let cases = [
            ("/api/v1/namespaces/n/pods/p", ("pods", true)),
            ("/api/v1/namespaces/n/pods", ("pods", false)),
            ("/apis/tiepdan.io/v1alpha1/namespaces/n/receptionsessions/s/status", ("receptionsessions/status", true)),
            ("/apis/events.k8s.io/v1/namespaces/n/events", ("events", false)),
            ("/api/v1/namespaces/n", ("namespaces", true)),
            ("/api/v1/pods", ("pods", false)),
            (
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/tiepdan",
                ("validatingwebhookconfigurations", true),
            ),
            ("/version", ("other", false)),
        ];
        for (path, (kind, named)) in cases {
            assert_eq!(resource(path), (kind.to_owned(), named), "{path}");
        }
    }

    #[test]
    fn verbs_and_writes_are_told_apart() {
        let r = ApiRequests::new();
        r.observe(&Method::GET, "/api/v1/namespaces/n/pods", None);
        r.observe(&Method::GET, "/api/v1/namespaces/n/pods", Some("labelSelector=a&watch=true"));
        r.observe(&Method::GET, "/api/v1/namespaces/n/pods/p", None);
        assert_eq!(r.writes(), 0);
        assert_eq!((r.count("list", "pods"), r.count("watch", "pods"), r.count("get", "pods")), (1, 1, 1));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            r.observe(&m, "/api/v1/namespaces/n/secrets/s", None);
        }
        assert_eq!(r.writes(), 4);
        assert_eq!(r.clone().count("patch", "secrets"), 1, "clones share counts");
    }
}
