//! Health and metrics HTTP server for vxtap, meant to sit behind an AWS NLB target-group health check.
//!
//! The server speaks HTTP/1.1 (hyper) on its own single-threaded tokio runtime in its own OS thread, so
//! callers built from plain threads never need to be async. It serves:
//!
//! | request | response |
//! |---|---|
//! | `GET /-/healthcheck` | `200` `OK\n` while running; `503` `draining\n` or `unhealthy: <reason>\n` |
//! | `GET /-/ping` | `200` `PONG` |
//! | `GET /metrics` | `200`, Prometheus text format produced by a caller-supplied renderer |
//!
//! `HEAD` works on all three; any other path is `404`; any other method on a known path is `405` with an
//! `Allow: GET, HEAD` header. The query string is ignored.
//!
//! Robustness: request headers must arrive within a few seconds of the connection going idle or the
//! connection is closed (slowloris; this also bounds idle keep-alive connections), at most 256 connections
//! are served at once (connections beyond that are closed as soon as they are accepted), every
//! connection is recycled after a couple of minutes, and a panicking metrics renderer yields a `500`
//! rather than taking the server down.
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::sync::Arc;
//! use vxtap_health::{HealthServer, HealthState};
//!
//! let state = HealthState::new();
//! let metrics = Arc::new(|| String::from("vxtap_packets_total 42\n"));
//! let server = HealthServer::start("127.0.0.1:0".parse().unwrap(), state.clone(), metrics)?;
//!
//! let get = |path: &str| {
//!     let mut conn = TcpStream::connect(server.local_addr()).unwrap();
//!     write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
//!     let mut reply = String::new();
//!     conn.read_to_string(&mut reply).unwrap();
//!     reply
//! };
//! assert!(get("/-/healthcheck").starts_with("HTTP/1.1 200 OK"));
//!
//! // On SIGTERM: tell the load balancer to stop sending traffic, then drain.
//! state.set_draining();
//! assert!(get("/-/healthcheck").starts_with("HTTP/1.1 503"));
//!
//! server.shutdown();
//! # Ok::<(), vxtap_health::HealthError>(())
//! ```
#![warn(missing_docs)]

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Renders the body of `GET /metrics` (Prometheus text exposition format, version 0.0.4).
///
/// It is called on the health server's thread once per `/metrics` request, so it should be quick.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Tunables of the server; `start` uses [`Limits::DEFAULT`], tests use smaller values.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Connections served at once; beyond it new connections are closed on accept.
    max_connections: u32,
    /// Time allowed for a full request head, counted from when the connection is ready for one.
    header_read_timeout: Duration,
    /// After this a connection is asked to close (after its current response).
    max_connection_age: Duration,
    /// How long in-flight responses get to finish on shutdown (and on reaching the age limit).
    shutdown_grace: Duration,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        max_connections: 256,
        header_read_timeout: Duration::from_secs(10),
        max_connection_age: Duration::from_secs(120),
        shutdown_grace: Duration::from_secs(2),
    };
}

/// Pause after a failed `accept` (for instance out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Read buffer ceiling per connection; bounds the size of a request head.
const MAX_BUF_SIZE: usize = 16 * 1024;

/// Shared, cheaply clonable handle on the health state reported by `GET /-/healthcheck`.
///
/// Two independent conditions make the health check fail: *draining* (set once on shutdown and never
/// cleared) and *unhealthy* (set and cleared by whoever watches intake). Draining takes precedence in the
/// response body. Every change is visible to the very next request. Reads and the draining flag are
/// lock-free; only the unhealthy reason text sits behind a mutex.
#[derive(Clone, Debug, Default)]
pub struct HealthState {
    inner: Arc<StateInner>,
}

#[derive(Debug, Default)]
struct StateInner {
    draining: AtomicBool,
    unhealthy: AtomicBool,
    reason: Mutex<String>,
}

impl HealthState {
    /// A new state: running and healthy.
    pub fn new() -> HealthState {
        HealthState::default()
    }

    /// Marks the process as draining: the health check answers `503` `draining` from now on, for good.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Marks intake as broken: the health check answers `503` `unhealthy: <reason>` until
    /// [`set_healthy`](Self::set_healthy). Calling it again replaces the reason.
    pub fn set_unhealthy(&self, reason: &str) {
        let mut guard = self.inner.reason.lock().unwrap_or_else(PoisonError::into_inner);
        guard.clear();
        guard.push_str(reason);
        self.inner.unhealthy.store(true, Ordering::SeqCst);
    }

    /// Clears the condition set by [`set_unhealthy`](Self::set_unhealthy). Draining is not undone.
    pub fn set_healthy(&self) {
        let _guard = self.inner.reason.lock().unwrap_or_else(PoisonError::into_inner);
        self.inner.unhealthy.store(false, Ordering::SeqCst);
    }

    /// Whether [`set_draining`](Self::set_draining) has been called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Whether the health check currently answers `200`: neither draining nor unhealthy.
    pub fn is_healthy(&self) -> bool {
        !self.is_draining() && !self.inner.unhealthy.load(Ordering::SeqCst)
    }

    /// The reason given to the last [`set_unhealthy`](Self::set_unhealthy), if intake is currently
    /// marked unhealthy.
    pub fn unhealthy_reason(&self) -> Option<String> {
        if !self.inner.unhealthy.load(Ordering::SeqCst) {
            return None;
        }
        let guard = self.inner.reason.lock().unwrap_or_else(PoisonError::into_inner);
        // Re-check under the lock: `set_healthy` may have run in between.
        self.inner.unhealthy.load(Ordering::SeqCst).then(|| guard.clone())
    }

    /// Status and body of the health check for the current state.
    fn check(&self) -> (StatusCode, String) {
        if self.is_draining() {
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned())
        } else if let Some(reason) = self.unhealthy_reason() {
            (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {reason}\n"))
        } else {
            (StatusCode::OK, "OK\n".to_owned())
        }
    }
}

/// Why the health server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// The listening socket could not be bound (address in use, not local, permission denied...).
    #[error("health server: cannot listen on {addr}: {error}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's error.
        error: io::Error,
    },
    /// The listener, runtime or thread could not be set up.
    #[error("health server on {addr}: {what}: {error}")]
    Setup {
        /// The address that was asked for.
        addr: SocketAddr,
        /// Which step failed.
        what: &'static str,
        /// The operating system's error.
        error: io::Error,
    },
}

/// A running health server. Stop it with [`shutdown`](Self::shutdown) or by dropping it.
#[derive(Debug)]
pub struct HealthServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    /// Binds `addr` and starts serving on a dedicated thread.
    ///
    /// Binding happens before this returns, so a taken or invalid address is reported here, as a
    /// [`HealthError::Bind`] naming `addr`. Port `0` picks a free port; see
    /// [`local_addr`](Self::local_addr). `metrics` renders the `/metrics` body on each request.
    pub fn start(
        addr: SocketAddr,
        state: HealthState,
        metrics: MetricsRenderer,
    ) -> Result<HealthServer, HealthError> {
        HealthServer::start_with(addr, state, metrics, Limits::DEFAULT)
    }

    fn start_with(
        addr: SocketAddr,
        state: HealthState,
        metrics: MetricsRenderer,
        limits: Limits,
    ) -> Result<HealthServer, HealthError> {
        let setup = |what| move |error| HealthError::Setup { addr, what, error };
        let listener =
            std::net::TcpListener::bind(addr).map_err(|error| HealthError::Bind { addr, error })?;
        let local_addr = listener.local_addr().map_err(setup("reading the bound address"))?;
        listener.set_nonblocking(true).map_err(setup("making the listener non-blocking"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(setup("building the tokio runtime"))?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener).map_err(setup("registering the listener"))?
        };

        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_BUF_SIZE)
            .keep_alive(true);
        let ctx = Arc::new(Ctx { state, metrics, http, limits });
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("vxtap-health".to_owned())
            .spawn(move || runtime.block_on(serve(listener, ctx, stop_rx)))
            .map_err(setup("spawning the server thread"))?;
        Ok(HealthServer { local_addr, stop, thread: Some(thread) })
    }

    /// The address actually listened on (useful when started on port `0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server gracefully and waits for its thread to end.
    ///
    /// New connections are refused at once, idle keep-alive connections are closed, and responses in
    /// flight get up to two seconds to finish before their connections are cut.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            // The server thread does not panic; if it somehow did, there is nothing left to clean up.
            let _ = thread.join();
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Everything a connection needs, shared by all of them.
struct Ctx {
    state: HealthState,
    metrics: MetricsRenderer,
    http: http1::Builder,
    limits: Limits,
}

/// Accept loop; returns once shutdown is requested and connections have finished (or the grace expired).
async fn serve(listener: TcpListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let max = ctx.limits.max_connections;
    let slots = Arc::new(Semaphore::new(max as usize));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = wait_stop(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(connection(stream, Arc::clone(&ctx), stop.clone(), permit));
                }
                // Over the limit: dropping the stream closes it right away.
                Err(_) => drop(stream),
            },
            Err(_) => {
                tokio::select! {
                    _ = wait_stop(&mut stop) => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    // Each connection holds a permit until it ends; having them all back means every one has closed.
    let _ = tokio::time::timeout(ctx.limits.shutdown_grace, slots.acquire_many(max)).await;
}

/// Resolves once shutdown is requested (or the `HealthServer` is gone).
async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Serves one connection until the client closes it, shutdown, or the connection's age limit.
async fn connection(
    stream: TcpStream,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let handler = Arc::clone(&ctx);
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&request, &handler);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = ctx.http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        // Errors here are the client's doing (bad request, reset, timeout): nothing to report.
        _ = conn.as_mut() => return,
        _ = wait_stop(&mut stop) => {}
        _ = tokio::time::sleep(ctx.limits.max_connection_age) => {}
    }
    // Close once idle (at once if idle now), after the response in flight if any.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(ctx.limits.shutdown_grace, conn).await;
}

/// The endpoints served.
#[derive(Clone, Copy)]
enum Route {
    Health,
    Ping,
    Metrics,
}

/// Builds the response to a request; never fails.
fn respond(request: &Request<Incoming>, ctx: &Ctx) -> Response<Full<Bytes>> {
    let route = match request.uri().path() {
        "/-/healthcheck" => Route::Health,
        "/-/ping" => Route::Ping,
        "/metrics" => Route::Metrics,
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // For HEAD hyper sends the headers (Content-Length included) and leaves the body out.
    match route {
        Route::Health => {
            let (status, body) = ctx.state.check();
            text(status, body)
        }
        Route::Ping => text(StatusCode::OK, "PONG"),
        Route::Metrics => match catch_unwind(AssertUnwindSafe(|| (ctx.metrics)())) {
            Ok(body) => {
                let mut response = text(StatusCode::OK, body);
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                response
            }
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics renderer failed\n"),
        },
    }
}

/// A plain-text, uncacheable response.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests;
