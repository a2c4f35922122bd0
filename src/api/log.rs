//! One log line per request (method, route template, status and latency), a line for each store or
//! internal failure an answer hides the detail of (see [`Failure`]), and a 500 in the JSON envelope
//! instead of a dropped connection when a handler panics.
//!
//! Panics are caught by [`CatchPanic`] around the whole router, at each poll of a request's future,
//! rather than by tower-http's `CatchPanicLayer`, which boxes every response body to be generic
//! over it: that layer was a tenth of a GET's time. (The Lambda is built with `panic = "abort"`:
//! there a panic ends the process, and the next invocation starts a fresh one.)
//!
//! The log layer is on each route (see below), which costs every request a clone of the route's
//! boxed service; the router (`router.rs`) leaves it out when the `info` level is off for it.
//!
//! A plain tower layer rather than `middleware::from_fn`, which boxes the rest of the stack and its
//! future on every request: that, and a second middleware that only carried the route out to it,
//! were a fifth of a GET's cost. `Router::layer` wraps each route after routing, so the matched
//! route is already on the request here. With the `info` level off, requests pass straight through.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::error::AppError;

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
        if let Ok(response) = &out {
            log_failure(response);
        }
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

/// Whether the layer would log anything: failures at the `error` level, request lines at `info`.
pub fn wanted() -> bool {
    tracing::enabled!(tracing::Level::ERROR)
}

/// The detail of a store or internal failure, which the answer leaves out (it says only "internal
/// error" or "could not reach its store"): `api/error.rs` puts it on the response for the log.
#[derive(Debug, Clone)]
pub enum Failure {
    Store(String),
    Internal(String),
}

fn log_failure(response: &Response) {
    match response.extensions().get::<Failure>() {
        Some(Failure::Store(detail)) => tracing::error!(error = %detail, "store failure"),
        Some(Failure::Internal(detail)) => tracing::error!(error = %detail, "internal failure"),
        None => {}
    }
}

/// The 500 of a handler's panic, logged here: [`CatchPanic`] sits outside the log layer.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let response = AppError::Internal(format!("handler panicked: {detail}")).into_response();
    log_failure(&response);
    response
}

/// Answers a handler's panic with a 500 in the envelope (see the module's comment).
#[derive(Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> CatchPanic<S> {
    pub fn new(inner: S) -> Self {
        CatchPanic { inner }
    }
}

impl<S> Service<Request> for CatchPanic<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        CatchPanicFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct CatchPanicFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        // A panicked future is never polled again: this one answers now.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Ok(panic_response(panic))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_envelope_and_the_panic_is_logged() {
        let log = logged(tracing::Level::ERROR, async {
            let panics = tower::service_fn(|_: Request| async move {
                if true {
                    panic!("boom");
                }
                Ok::<Response, std::convert::Infallible>(Response::new(Body::empty()))
            });
            let response = CatchPanic::new(panics)
                .oneshot(Request::new(Body::empty()))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["success"], false, "{json}");
            assert_eq!(json["code"], "internal", "{json}");
        })
        .await;
        assert!(
            log.contains("internal failure") && log.contains("handler panicked: boom"),
            "{log}"
        );
    }

    /// What a subscriber at `level` writes while `f` runs on this thread.
    async fn logged<F: Future<Output = ()>>(level: tracing::Level, f: F) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await;
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    /// The detail of a store failure is in the log, not in the answer, even with `info` off.
    #[tokio::test]
    async fn a_store_failure_is_logged_by_the_layer_and_kept_out_of_the_answer() {
        for level in [tracing::Level::INFO, tracing::Level::ERROR] {
            let log = logged(level, async {
                assert!(wanted(), "the layer is kept at {level}");
                let fails = tower::service_fn(|_: Request| async move {
                    Ok::<Response, std::convert::Infallible>(
                        AppError::Store("table T: throttled".into()).into_response(),
                    )
                });
                let response = LogLayer
                    .layer(fails)
                    .oneshot(Request::new(Body::empty()))
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                    .await
                    .unwrap();
                let body = String::from_utf8_lossy(&body);
                assert!(!body.contains("throttled"), "{body}");
            })
            .await;
            let failure = log.lines().find(|l| l.contains("store failure"));
            assert!(
                failure.is_some_and(|l| l.contains("ERROR") && l.contains("table T: throttled")),
                "{level}: {log}"
            );
            // The request line is info: there at info, not at error.
            let request_line = log
                .lines()
                .any(|l| l.contains("request") && l.contains("status=503"));
            assert_eq!(
                request_line,
                level == tracing::Level::INFO,
                "{level}: {log}"
            );
        }
    }
}
