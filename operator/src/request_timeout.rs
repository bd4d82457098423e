//! A bound on how long the operator waits for the API server to answer one request. kube's client
//! sets none (its read timeout is off so that watches live), and a 1.20 API server that took a
//! request in while etcd was away answers it only at its own `--request-timeout`, 60 s later. A
//! reconcile stuck on such a request holds its session (and its slot among
//! `--max-concurrent-reconciles`) for that minute, with no error to log or retry on: crash safety
//! once saw a session with a finalizer and nothing else 30 s after etcd came back. With the bound,
//! the request fails as [`Error::TimedOut`], the reconcile's error path logs it and requeues.
//!
//! Watches are exempt: they are meant to stay open, and their own timeout (`timeoutSeconds`) and
//! the watchers' backoff already cover a silent stream.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::Request;
use tower::{BoxError, Layer, Service};

use crate::api_requests;

/// A request the API server did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the API server did not answer {verb} {resource} within {after:?}")]
    TimedOut { verb: &'static str, resource: String, after: Duration },
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::TimedOut { .. } => "timed_out",
        }
    }
}

/// The layer: every request but a watch gets `after` to bring back the response's head.
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeout {
    after: Duration,
}

impl RequestTimeout {
    /// Well under the API server's own 60 s, and above what a healthy one takes for the
    /// operator's largest LIST (a thousand pods: under a second here).
    pub const DEFAULT: Duration = Duration::from_secs(15);

    pub fn new(after: Duration) -> Self {
        Self { after }
    }
}

impl Default for RequestTimeout {
    fn default() -> Self {
        Self::new(Self::DEFAULT)
    }
}

impl<S> Layer<S> for RequestTimeout {
    type Service = Bounded<S>;

    fn layer(&self, inner: S) -> Bounded<S> {
        Bounded { inner, after: self.after }
    }
}

/// A service behind a [`RequestTimeout`].
#[derive(Clone)]
pub struct Bounded<S> {
    inner: S,
    after: Duration,
}

impl<S, B> Service<Request<B>> for Bounded<S>
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
        let (resource, named) = api_requests::resource(req.uri().path());
        let verb = api_requests::verb(req.method(), req.uri().query(), named);
        let fut = self.inner.call(req);
        if verb == "watch" {
            return Box::pin(async move { fut.await.map_err(Into::into) });
        }
        let after = self.after;
        Box::pin(async move {
            match tokio::time::timeout(after, fut).await {
                Ok(answer) => answer.map_err(Into::into),
                Err(_) => Err(Error::TimedOut { verb, resource, after }.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, Response};
    use kube::client::Body;
    use tower::ServiceExt;

    use super::*;

    /// An API server that takes every request in and never answers.
    fn silent() -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl std::future::Future<Output = Result<Response<Body>, BoxError>> + Send,
    > + Clone {
        tower::service_fn(|_: Request<Body>| std::future::pending::<Result<Response<Body>, BoxError>>())
    }

    fn request(method: Method, uri: &str) -> Request<Body> {
        Request::builder().method(method).uri(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_left_unanswered_fails_after_the_bound_and_a_watch_does_not() {
        let bounded = RequestTimeout::new(Duration::from_secs(15)).layer(silent());
        let cases = [
            (Method::GET, "/api/v1/namespaces/n/pods/p", Some("get")),
            (Method::GET, "/api/v1/namespaces/n/pods?labelSelector=a%3Db", Some("list")),
            (Method::PATCH, "/apis/tiepdan.io/v1alpha1/namespaces/n/receptionsessions/s?fieldManager=f", Some("patch")),
            (Method::POST, "/api/v1/namespaces/n/pods", Some("create")),
            (Method::GET, "/api/v1/namespaces/n/pods?watch=true&resourceVersion=5", None),
        ];
        for (method, uri, times_out_as) in cases {
            let started = tokio::time::Instant::now();
            let answer =
                tokio::time::timeout(Duration::from_secs(300), bounded.clone().oneshot(request(method.clone(), uri)))
                    .await;
            match (answer, times_out_as) {
                (Ok(Err(e)), Some(verb)) => {
                    let e = e.downcast::<Error>().expect("a typed timeout");
                    assert!(matches!(*e, Error::TimedOut { verb: v, .. } if v == verb), "{uri}: {e}");
                    assert_eq!(started.elapsed(), Duration::from_secs(15), "{uri}");
                }
                (Err(_), None) => {}
                (other, _) => panic!("{method} {uri}: {:?}", other.map(|r| r.map(|_| ()))),
            }
        }
    }
}
