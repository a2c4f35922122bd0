//! One log line per request: method, route template, status and latency.
//!
//! A plain tower layer rather than `middleware::from_fn`, which boxes the rest of the stack and its
//! future on every request: that, and a second middleware that only carried the route out to it,
//! were a fifth of a GET's cost. `Router::layer` wraps each route after routing, so the matched
//! route is already on the request here. With the `info` level off, requests pass straight through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use tower::{Layer, Service};

#[derive(Clone, Copy, Default)]
pub struct LogLayer;

impl<S> Layer<S> for LogLayer {
    type Service = Log<S>;

    fn layer(&self, inner: S) -> Log<S> {
        Log { inner }
    }
}

#[derive(Clone)]
pub struct Log<S> {
    inner: S,
}

impl<S> Service<Request> for Log<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = LogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let line = tracing::enabled!(tracing::Level::INFO).then(|| Line {
            method: req.method().clone(),
            route: req.extensions().get::<MatchedPath>().cloned(),
            started: Instant::now(),
        });
        LogFuture {
            inner: self.inner.call(req),
            line,
        }
    }
}

struct Line {
    method: Method,
    route: Option<MatchedPath>,
    started: Instant,
}

pin_project_lite::pin_project! {
    pub struct LogFuture<F> {
        #[pin]
        inner: F,
        line: Option<Line>,
    }
}

impl<F, E> Future for LogFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let (Some(line), Ok(response)) = (this.line.take(), &out) {
            tracing::info!(
                method = %line.method,
                route = line.route.as_ref().map_or("unmatched", MatchedPath::as_str),
                status = response.status().as_u16(),
                latency_ms = line.started.elapsed().as_micros() as f64 / 1000.0,
                "request"
            );
        }
        Poll::Ready(out)
    }
}
