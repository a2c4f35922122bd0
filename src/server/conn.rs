//! The local server's accept loop: hyper's HTTP/1.1 on each socket, with the bounds `axum::serve`
//! does not have (issue 18). Without them, sockets that send half a request head, or nothing after
//! an answer, stay open for ever; past the open-files limit `accept` fails and every new client,
//! `/healthz` included, times out.
//!
//! - A request head (its first byte to its last) must arrive within the header timeout, and a
//!   connection waiting for its next request is closed after the idle timeout. Hyper's own header
//!   timeout is off: it also runs while a connection sits idle, so it could not be longer than the
//!   idle timeout; a watchdog per connection applies both.
//! - Handling a request (its body included) ends within the request timeout: past it the answer is
//!   a 503 `request_timeout` with `Retry-After`. Bodies have their own, shorter, timeout and a
//!   budget of bytes across all requests (`api::body::BodyLimits`).
//! - At most `max_connections` connections are open. At the cap, a new connection closes the
//!   connection that has waited longest without a request in flight (idle, or still sending its
//!   head), as nginx reuses idle keep-alive connections; when every connection has a request in
//!   flight, the new one waits (in the kernel's backlog) until one ends. A slow or idle client can
//!   therefore hold no slot that a working client needs, and the cap sits well under the
//!   open-files limit, so `accept` does not fail; if it does (`EMFILE`), the loop closes an idle
//!   connection, pauses and goes on.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::api::body::BodyLimits;
use crate::error::AppError;

/// Largest request head (request line, headers and the blank line) a connection reads; a larger
/// one is answered 431. Hyper's default (about 400 KiB) times the connection cap would not fit a
/// 256 MiB pod; 128 KiB still takes the page's longest filter URLs.
/// How long past the request timeout a stop waits for the answers in flight.
const STOP_MARGIN: Duration = Duration::from_secs(5);

pub const MAX_HEAD_BYTES: usize = 128 * 1024;

/// Open files kept for everything but client connections (the store, logs, DNS), beside one per
/// probe that may be in flight: the connection cap is lowered to fit under the open-files limit
/// less these.
pub const RESERVED_FDS: u64 = 64;

/// How long the accept loop pauses after `accept` fails for want of resources (`EMFILE`, ...).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The bounds on connections, from the settings (`config::ConnArgs`).
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// Open files the rest of the process may hold: the cap is lowered to fit beside them.
    pub reserved_fds: u64,
    pub body: BodyLimits,
}

/// No head byte has arrived since the connection became idle.
const NO_HEAD: u64 = u64::MAX;

/// What the watchdog and the eviction need to know about one connection.
struct Conn {
    /// Requests being handled: hyper's HTTP/1.1 handles one at a time, so 0 or 1.
    in_flight: AtomicUsize,
    /// When (ms after `Shared::epoch`) the connection last became idle: accepted, or its last
    /// answer handed to hyper whole.
    idle_since: AtomicU64,
    /// When the first byte of the next request's head arrived, or [`NO_HEAD`].
    head_since: AtomicU64,
    /// Chosen to make room for a new connection.
    evicted: AtomicBool,
    evict: Notify,
    /// A head began: the watchdog's deadline moves closer.
    head_began: Notify,
}

impl Conn {
    /// When it may be closed if nothing changes, in ms after the epoch; `None` while busy.
    fn deadline_ms(&self, limits: &Limits) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::Acquire);
        Some(if head != NO_HEAD {
            head.saturating_add(limits.header_timeout.as_millis() as u64)
        } else {
            self.idle_since
                .load(Ordering::Acquire)
                .saturating_add(limits.idle_timeout.as_millis() as u64)
        })
    }

    /// Since when it has waited without a request in flight (for the eviction's choice).
    fn waiting_since(&self) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.evicted.load(Ordering::Acquire) {
            return None;
        }
        Some(
            self.head_since
                .load(Ordering::Acquire)
                .min(self.idle_since.load(Ordering::Acquire)),
        )
    }
}

struct Shared {
    epoch: Instant,
    limits: Limits,
    slots: Arc<Semaphore>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// A connection finished a request, so it may now be evicted.
    became_idle: Notify,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Tells the connection that has waited longest without a request in flight to close; false
    /// when every connection is busy.
    fn evict_one(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        // Ids count up: among equal times, the lower id has waited longer.
        let oldest = conns
            .iter()
            .filter_map(|(id, c)| Some(((c.waiting_since()?, *id), c)))
            .min_by_key(|(key, _)| *key);
        match oldest {
            Some((_, conn)) => {
                conn.evicted.store(true, Ordering::Release);
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then lets requests in
/// flight finish (for at most the request timeout) and returns.
pub async fn run<S>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        limits,
        conns: Mutex::new(HashMap::new()),
        became_idle: Notify::new(),
    });
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // No `header_read_timeout`: the watchdog below applies it (see the module's comment).
    // The read buffer has room for a largest head and a little more, so that the head's own
    // size, not where a read happened to end, decides.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES + 8 * 1024);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_id: u64 = 0;
    let mut last_accept_error: Option<Instant> = None;
    let mut last_cap_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Most likely out of file descriptors: close an idle connection to get one back,
                // and keep serving the connections already open.
                if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::error!(error = %e, "accept failed; closing an idle connection and retrying");
                    last_accept_error = Some(Instant::now());
                }
                shared.evict_one();
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let permit = match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if last_cap_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = shared.limits.max_connections,
                        "connection cap reached: closing the longest-idle connection, or waiting for one to end"
                    );
                    last_cap_warning = Some(Instant::now());
                }
                match wait_for_slot(&shared, shutdown.as_mut()).await {
                    Some(permit) => permit,
                    None => break,
                }
            }
        };
        let id = next_id;
        next_id += 1;
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(shared.now_ms()),
            head_since: AtomicU64::new(NO_HEAD),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            head_began: Notify::new(),
        });
        shared
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, conn.clone());
        let io = TokioIo::new(Watched {
            stream,
            conn: conn.clone(),
            epoch: shared.epoch,
        });
        let service = {
            let (app, shared, conn) = (app.clone(), shared.clone(), conn.clone());
            hyper::service::service_fn(move |req| {
                // Busy from the moment hyper hands the request over, before the handler's first
                // poll: an eviction in between would drop a request that had arrived whole.
                conn.in_flight.fetch_add(1, Ordering::AcqRel);
                let busy = Busy {
                    conn: conn.clone(),
                    shared: shared.clone(),
                };
                handle(app.clone(), busy, peer, req)
            })
        };
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(watch(shared.clone(), id, conn, connection, permit));
    }
    drop(listener);
    // A request in flight ends by its request timeout at the latest; the margin lets its answer
    // be written even on a loaded machine (1 s was not always enough under load).
    let grace = shared.limits.request_timeout + STOP_MARGIN;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after the stop signal; stopping anyway",
            grace.as_secs()
        );
    }
    Ok(())
}

/// At the cap: makes room by evicting a waiting connection, or waits until one ends or becomes
/// evictable. `None` when the server is stopping.
async fn wait_for_slot(
    shared: &Shared,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(permit) = shared.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        // Registered before looking, so that a connection turning idle meanwhile is not missed.
        let became_idle = shared.became_idle.notified();
        let mut became_idle = std::pin::pin!(became_idle);
        became_idle.as_mut().enable();
        // An evicted connection gives its slot back as it ends.
        shared.evict_one();
        tokio::select! {
            permit = shared.slots.clone().acquire_owned() => return permit.ok(),
            () = became_idle => {}
            // A connection chosen just as its next request arrived stays; look again.
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.as_mut() => return None,
        }
    }
}

/// Runs one connection until it ends, is cut by its timeouts, or is evicted.
async fn watch<C>(
    shared: Arc<Shared>,
    id: u64,
    conn: Arc<Conn>,
    connection: C,
    slot: OwnedSemaphorePermit,
) where
    C: Future<Output = hyper::Result<()>>,
{
    // Boxed, so that it can be dropped (closing the socket) before the slot is given back.
    let mut connection = Box::pin(connection);
    let limits = &shared.limits;
    loop {
        // While busy, the request timeout bounds the request; look again later.
        let at = conn
            .deadline_ms(limits)
            .unwrap_or_else(|| shared.now_ms() + limits.header_timeout.as_millis() as u64);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep_until(shared.epoch + Duration::from_millis(at)) => {
                if conn.deadline_ms(limits).is_some_and(|at| at <= shared.now_ms()) {
                    let what = if conn.head_since.load(Ordering::Acquire) == NO_HEAD {
                        "idle timeout"
                    } else {
                        "header timeout"
                    };
                    tracing::debug!(reason = what, "connection closed");
                    break;
                }
            }
            () = conn.head_began.notified() => {}
            () = conn.evict.notified() => {
                if conn.in_flight.load(Ordering::Acquire) == 0 {
                    tracing::debug!("idle connection closed to make room for a new one");
                    break;
                }
                // A request arrived meanwhile: it is served, and the connection may be chosen
                // again later.
                conn.evicted.store(false, Ordering::Release);
            }
        }
    }
    shared
        .conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    // Dropping the connection (before the slot) closes the socket.
    drop(connection);
    drop(slot);
}

/// One request, its connection marked `busy` until its answer is handed over whole: gives the
/// body its limits and bounds the handling by the request timeout.
async fn handle<S>(
    app: S,
    busy: Busy,
    peer: std::net::SocketAddr,
    mut req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Tracked>, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    req.extensions_mut().insert(busy.shared.limits.body.clone());
    // The socket's peer, as axum's `ConnectInfo` (read by `access::rate_limit::client_addr`).
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let timeout = busy.shared.limits.request_timeout;
    let response = match tokio::time::timeout(timeout, app.oneshot(req.map(Body::new))).await {
        Ok(Ok(response)) => response,
        Err(_) => {
            tracing::warn!(
                timeout_secs = timeout.as_secs(),
                "request cut at the request timeout"
            );
            AppError::RequestTimeout(timeout.as_secs()).into_response()
        }
    };
    // Not boxed again into a `Body`: hyper takes any body type.
    Ok(response.map(|body| Tracked {
        inner: body,
        _busy: busy,
    }))
}

/// Marks its connection idle again when dropped: when hyper has read the whole answer's body (or
/// the connection ended).
struct Busy {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.shared.now_ms();
        self.conn.idle_since.store(now, Ordering::Release);
        self.conn.head_since.store(NO_HEAD, Ordering::Release);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shared.became_idle.notify_waiters();
    }
}

pin_project_lite::pin_project! {
    /// An answer's body that keeps its connection marked busy while hyper sends it.
    struct Tracked {
        #[pin]
        inner: Body,
        _busy: Busy,
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when the first byte of a request head arrives on an idle connection.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.in_flight.load(Ordering::Acquire) == 0
            && self.conn.head_since.load(Ordering::Acquire) == NO_HEAD
        {
            let now = self.epoch.elapsed().as_millis() as u64;
            self.conn.head_since.store(now, Ordering::Release);
            self.conn.head_began.notify_one();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Errors of one connection that `accept` reports, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Raises the open-files soft limit to the hard limit (each connection is a file) and returns the
/// soft limit in force, with the value it had before when it was raised.
pub fn raise_open_files_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return (limit.maximum, limit.current);
        }
    }
    (limit.current, None)
}

/// The connection cap in force: the setting, lowered to fit under `open_files` less what the rest
/// of the process may hold (`reserved`).
pub fn effective_cap(setting: usize, open_files: Option<u64>, reserved: u64) -> usize {
    match open_files {
        Some(limit) => setting.min(limit.saturating_sub(reserved).max(1) as usize),
        None => setting,
    }
    .max(1)
}
