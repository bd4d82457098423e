//! Every write the controllers make is fenced on leadership. The Lease itself is fenced on its
//! resourceVersion ([`crate::leader`]), but a deposed leader's in-flight reconciles would still
//! patch children, status, finalizers and events next to the new leader's. So the controllers'
//! client refuses every request that changes something (POST, PUT, PATCH, DELETE) unless this
//! replica leads right now; reads pass, so a standby's caches stay warm.
//!
//! ```text
//!  controllers ──▶ WriteGate ──▶ counting ──▶ RequestTimeout ──▶ kube's stack ──▶ API server
//!                      ▲ leading (leader::run_with: false from the renew deadline on)
//!  elector, webhook ──────────▶ counting ──▶ RequestTimeout ──▶ kube's stack ──▶ API server
//!  registration (ungated: the Lease is fenced on its resourceVersion; every replica serves the
//!  webhook and registers the same configuration)
//! ```
//!
//! The gate closes when `leading` turns false: at the leader's renew deadline, two thirds of the
//! Lease's duration after its last good renewal began, while a candidate may take the Lease only a
//! full duration after it last saw it change. So a refused write is one the old leader would have
//! made while another replica might already lead. A refusal is a typed [`Error::NotLeading`] (inside
//! `kube::Error::Service`, found with [`refusal`]), counted in
//! `tiepdan_operator_api_writes_refused_total`, and logged once per step-down, not per write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Method, Request};
use kube::client::ClientBuilder;
use tokio::sync::watch;
use tower::{BoxError, Layer, Service};

use crate::api_requests::{self, ApiRequests};
use crate::request_timeout::RequestTimeout;

/// Errors of the write gate: building its client, and the refusal itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("refused to {verb} {resource}: this replica does not hold the leader lease")]
    NotLeading { verb: &'static str, resource: String },
    #[error("failed to build a Kubernetes client")]
    Client(#[source] kube::Error),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NotLeading { .. } => "not_leading",
            Error::Client(_) => "client",
        }
    }
}

/// The gate's refusal, if one is in `err` or its chain of sources (a refused request surfaces as
/// `kube::Error::Service`, wrapped again by the caller's own error).
pub fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found @ Error::NotLeading { .. }) = e.downcast_ref::<Error>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Whether `method` changes something on the API server.
fn mutating(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// The layer: lets writes through only while `leading` holds `true`. Clones share the log-once
/// state.
#[derive(Clone)]
pub struct WriteGate {
    leading: watch::Receiver<bool>,
    requests: ApiRequests,
    /// Whether the current spell of not leading has been logged.
    logged: Arc<AtomicBool>,
}

impl WriteGate {
    /// A gate open while `leading` holds `true`, counting refusals in `requests`.
    pub fn new(leading: watch::Receiver<bool>, requests: ApiRequests) -> Self {
        Self { leading, requests, logged: Arc::new(AtomicBool::new(false)) }
    }

    /// Whether a request with `method` to `path` may go; counts and (once per step-down) logs a
    /// refusal.
    fn check(&self, method: &Method, path: &str) -> Result<(), Error> {
        if *self.leading.borrow() {
            // Leading again (or still): the next step-down is logged afresh.
            self.logged.store(false, Ordering::Relaxed);
            return Ok(());
        }
        if !mutating(method) {
            return Ok(());
        }
        let (resource, named) = api_requests::resource(path);
        let verb = api_requests::verb(method, None, named);
        self.requests.refuse(verb, &resource);
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(verb, resource, "not leading: refusing every API write until this replica leads again");
        }
        Err(Error::NotLeading { verb, resource })
    }
}

impl<S> Layer<S> for WriteGate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated { inner, gate: self.clone() }
    }
}

/// A service behind a [`WriteGate`].
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: WriteGate,
}

impl<S, B> Service<Request<B>> for Gated<S>
where
    S: Service<Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Decided when the request is made, not when its future is first polled.
        if let Err(e) = self.gate.check(req.method(), req.uri().path()) {
            return Box::pin(std::future::ready(Err(e.into())));
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// A client for `config` whose writes pass only while `gate` is open, whose requests (sent or
/// refused) are counted in `requests`, and whose answers are awaited for `timeout` at most.
pub fn client(
    config: kube::Config,
    requests: &ApiRequests,
    gate: WriteGate,
    timeout: RequestTimeout,
) -> Result<kube::Client, Error> {
    // The gate outermost: a refused write is never sent, so it is not counted as a request.
    Ok(ClientBuilder::try_from(config)
        .map_err(Error::Client)?
        .with_layer(&timeout)
        .with_layer(&requests.layer())
        .with_layer(&gate)
        .build())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use http::Response;
    use kube::client::Body;
    use tower::ServiceExt;

    use super::*;

    /// A stand-in for the API server: answers 200 to everything and records what reached it.
    fn server(
        seen: Arc<Mutex<Vec<(Method, String)>>>,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl std::future::Future<Output = Result<Response<Body>, BoxError>> + Send,
    > + Clone {
        tower::service_fn(move |req: Request<Body>| {
            seen.lock().unwrap().push((req.method().clone(), req.uri().path().to_owned()));
            async { Ok::<_, BoxError>(Response::new(Body::from(br#"{"kind":"Status","code":200}"#.to_vec()))) }
        })
    }

    fn request(method: Method, path: &str) -> Request<Body> {
        Request::builder().method(method).uri(path).body(Body::empty()).unwrap()
    }

    /// Counts the gate's warnings.
    struct Warnings(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[tokio::test]
    async fn writes_pass_only_while_leading_and_refusals_are_typed_counted_and_logged_once_per_step_down() {
        use tracing_subscriber::layer::SubscriberExt;

        let warnings = Arc::new(AtomicUsize::new(0));
        let _log = tracing::subscriber::set_default(tracing_subscriber::registry().with(Warnings(warnings.clone())));
        let seen = Arc::new(Mutex::new(vec![]));
        let requests = ApiRequests::new();
        let (leading, rx) = watch::channel(false);
        let svc = WriteGate::new(rx, requests.clone()).layer(server(seen.clone()));
        let pods = "/api/v1/namespaces/n/pods";
        let status = "/apis/tiepdan.io/v1alpha1/namespaces/n/receptionsessions/s/status";
        let methods = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
        // (leading, method, path, passes)
        let mut steps = vec![];
        for leads in [false, true, false, true] {
            for m in &methods {
                steps.push((
                    leads,
                    m.clone(),
                    if *m == Method::PATCH { status } else { pods },
                    leads || *m == Method::GET,
                ));
            }
        }
        for (i, (leads, method, path, passes)) in steps.into_iter().enumerate() {
            leading.send_replace(leads);
            let before = seen.lock().unwrap().len();
            let got = svc.clone().oneshot(request(method.clone(), path)).await;
            let reached = seen.lock().unwrap().len() > before;
            assert_eq!(reached, passes, "step {i}: {method} {path} while leading={leads}");
            match got {
                Ok(_) => assert!(passes, "step {i}: {method} passed"),
                Err(e) => {
                    let refused = e.downcast_ref::<Error>();
                    assert!(matches!(refused, Some(Error::NotLeading { .. })), "step {i}: {e}");
                    assert_eq!(refused.map(Error::category), Some("not_leading"));
                }
            }
        }
        // Two spells of not leading, four writes refused in each.
        assert_eq!(requests.refused_writes(), 8);
        let refused = requests.refused_snapshot();
        assert_eq!(refused.get(&("patch".into(), "receptionsessions/status".into())), Some(&2), "{refused:?}");
        assert_eq!(refused.get(&("create".into(), "pods".into())), Some(&2), "{refused:?}");
        assert_eq!(warnings.load(Ordering::SeqCst), 2, "one warning per step-down, not one per refused write");
        assert_eq!(requests.writes(), 0, "the gate alone counts no request as sent");
    }

    #[tokio::test]
    async fn a_kube_client_behind_a_closed_gate_returns_the_typed_refusal_and_sends_nothing() {
        let seen = Arc::new(Mutex::new(vec![]));
        let requests = ApiRequests::new();
        let (leading, rx) = watch::channel(true);
        let gated = tower::ServiceBuilder::new()
            .layer(WriteGate::new(rx, requests.clone()))
            .layer(requests.layer())
            .service(server(seen.clone()));
        let client = kube::Client::new(gated, "n");
        let api = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, "n");
        let cm = serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}})).unwrap();
        let pp = kube::api::PostParams::default();
        // Leading: the create reaches the server (which answers a Status, not a ConfigMap).
        let _ = api.create(&pp, &cm).await;
        assert_eq!((seen.lock().unwrap().len(), requests.writes()), (1, 1));

        leading.send_replace(false);
        let err = api.create(&pp, &cm).await.unwrap_err();
        assert!(matches!(err, kube::Error::Service(_)), "{err:?}");
        let found = refusal(&err).expect("the refusal in the error's sources");
        assert!(matches!(found, Error::NotLeading { verb: "create", resource } if resource == "configmaps"), "{found}");
        // Wrapped again, as a reconcile's error wraps it.
        let wrapped = crate::apply::Error::Apply { kind: "ConfigMap".into(), name: "c".into(), source: err };
        assert!(refusal(&wrapped).is_some());
        assert_eq!((seen.lock().unwrap().len(), requests.writes(), requests.refused_writes()), (1, 1, 1));
        // Reads still pass.
        let _ = api.get_opt("c").await;
        assert_eq!(seen.lock().unwrap().len(), 2);
        // Another error is no refusal.
        let other = kube::Error::Api(Box::new(kube::core::Status { code: 409, ..Default::default() }));
        assert!(refusal(&other).is_none());
    }

    /// The client `main` builds for the controllers, against an API server that takes requests in
    /// and never answers (as a 1.20 one does while etcd is away): the request fails once the
    /// bound has passed, instead of holding its reconcile for the API server's own minute.
    #[tokio::test]
    async fn the_controllers_client_gives_up_on_an_api_server_that_does_not_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: http::Uri = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let holder = held.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                holder.lock().unwrap().push(conn);
            }
        });
        let requests = ApiRequests::new();
        let (_leading, rx) = watch::channel(true);
        let gate = WriteGate::new(rx, requests.clone());
        let timeout = RequestTimeout::new(std::time::Duration::from_millis(300));
        let client = client(kube::Config::new(url), &requests, gate, timeout).unwrap();
        let api = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, "n");
        let deadline = std::time::Duration::from_secs(10);
        let answer = tokio::time::timeout(deadline, api.get_opt("c")).await.expect("an answer before the deadline");
        let err = answer.unwrap_err();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        let mut timed_out = false;
        while let Some(e) = source {
            timed_out |= e.downcast_ref::<crate::request_timeout::Error>().is_some();
            source = e.source();
        }
        assert!(timed_out, "{err:?}");
        assert_eq!(held.lock().unwrap().len(), 1, "the request reached the silent server");
        accepting.abort();
    }
}
