//! ALB replay: send every reconstructed request, once, to one HTTP(S) target.
//!
//! A [`ReplayClient`] owns a small tokio runtime on its own thread(s). The engine's plain worker threads
//! hand it [`ReplayJob`]s through a [`ReplaySender`] (cheap to clone, `Send`), whose
//! [`submit`](ReplaySender::submit) never blocks: the queue between them is bounded by count and by
//! bytes, and a job that does not fit is dropped and counted. Replay tasks take jobs off the queue
//! (paced, for offline input, by [`Pacing`]), at most [`ReplayConfig::concurrency`] at a time, and send
//! them over pooled keep-alive HTTP/1.1 connections (rustls for `https://`). A slow or dead target
//! therefore costs bounded memory and shows in the counters ([`ReplayStats`], also as Prometheus text),
//! never as a stalled capture; [`ReplayClient::finish`] waits for what is queued and in flight, but
//! never longer than its timeout.
//!
//! ```
//! use std::time::Duration;
//! use vxtap_http::{Header, Request};
//! use vxtap_replay::{ReplayClient, ReplayConfig, ReplayJob};
//!
//! let mut cfg = ReplayConfig::new("http://127.0.0.1:9"); // an internal ALB, say
//! cfg.timeout = Duration::from_secs(1);
//! let client = ReplayClient::start(cfg)?;
//! let sender = client.sender(); // give a clone to each worker thread
//!
//! let request = Request {
//!     method: b"POST".to_vec(),
//!     target: b"/login?next=%2F".to_vec(),
//!     protocol: b"HTTP/1.1".to_vec(),
//!     headers: vec![
//!         Header { name: b"Host".to_vec(), value: b"shop.example".to_vec() },
//!         Header { name: b"Content-Length".to_vec(), value: b"3".to_vec() },
//!     ],
//!     body: b"a=1".to_vec(),
//!     body_len: 3,
//!     ..Request::default()
//! };
//! let job = ReplayJob::new(request, "10.0.0.7:51234".parse()?, "10.0.1.20:80".parse()?, 0);
//! sender.submit(job)?; // never blocks; Err when dropped (queue full) or skipped (incomplete)
//!
//! let stats = client.finish(Duration::from_secs(2)); // returns within ~2 s, target alive or not
//! assert_eq!(stats.accepted, 1);
//! assert_eq!(stats.sent + stats.failed.total() + stats.abandoned, 1);
//! assert!(stats.render_prometheus().contains("vxtap_replay_sent_total"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The replayed request
//!
//! The target is only ever [`ReplayConfig::target`]; nothing in a captured request chooses where it
//! goes. What is sent, always as `HTTP/1.1`:
//! - The method and request-target as captured; an absolute-form target (`http://host/path`) becomes
//!   origin-form (`/path`). Bytes that cannot stand in a request line (controls, space, DEL) are
//!   percent-encoded (`%20`); every other byte, non-UTF-8 ones included, is sent as captured.
//! - The captured headers in wire order, with their original name case, duplicates kept in place, except
//!   the hop-by-hop ones (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
//!   `Transfer-Encoding`, `Upgrade`, and any header that `Connection` names, `Host` excepted).
//! - The decoded body (an originally chunked body is de-chunked) announced by `Content-Length`, written
//!   where the captured `Content-Length` / `Transfer-Encoding` header stood; no `Content-Length` is
//!   added to a request that had neither framing header nor body.
//! - `Host` as captured. A request without one (HTTP/1.0) gets the authority of an absolute-form target,
//!   else the original server address (`10.0.1.20`, `10.0.1.20:8080`, `[2001:db8::1]:8080`), as the
//!   first header.
//! - The headers that the nginx `mirror` configuration in front of a filtering node sets, each one
//!   switchable off in [`AddedHeaders`]: `X-Forwarded-For` (the captured value, if any, then `", "`
//!   and the original client IP), `X-Forwarded-Port` (client port), `X-Forwarded-Proto` (kept if
//!   captured, else `http`), `X-Scheme: http`, `X-Server-Addr` / `X-Server-Port` (original server),
//!   `X-Request-ID`. A captured header of the same name is replaced in place (the first occurrence;
//!   further ones are removed), except `X-Forwarded-Proto` and a non-empty `X-Request-ID`, which are kept
//!   as captured: the request already carries an id, and keeping it lets the filtering node's findings
//!   be matched to the original request; otherwise a new id unique within the process (32 hex digits,
//!   like nginx's `$request_id`) is generated for each request. Headers that were absent are appended
//!   in the order listed.
//! - Optionally ([`ReplayConfig::add_response_headers`]) the observed response as
//!   `X-Vxtap-Response-Status`, `X-Vxtap-Response-Length`, `X-Vxtap-Response-Time-Us`.
//!
//! A request with a `gap` or a truncated body is never replayed: it is counted as skipped. A request
//! that cannot be written at all (a method that is not a token, a header name with a space or control
//! byte, a header value with CR, LF or NUL) is counted as failed, kind `invalid`.
//!
//! # Delivery
//!
//! Jobs are started in queue order; up to [`ReplayConfig::concurrency`] are in flight at once, so they
//! may complete out of order. Each accepted job is sent once. The one exception is a request written to a reused keep-alive
//! connection that turns out to have been closed by the target, with no byte of a response: it is sent
//! again, once, on a new connection (counted in `retries`), as browsers and HTTP client libraries do;
//! idle connections are also checked and expired (after [`ReplayConfig::pool_idle_timeout`]) before
//! reuse, so this is rare. Responses are read to their end and discarded; any status counts as sent.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod conn;
mod encode;
mod error;
mod job;
mod queue;
mod stats;
mod tls;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use config::{AddedHeaders, Pacing, ReplayConfig};
pub use error::{Rejected, ReplayError};
pub use job::{ObservedResponse, ReplayJob};
pub use stats::{FailureCounts, LATENCY_BUCKETS, LatencyHistogram, ReplayStats, StatusClasses};

use conn::{Connector, Pool};
use encode::{Policy, RequestIds};
use queue::{PushError, Queue};
use stats::{FailKind, Metrics};

/// Bodies up to this size are copied behind the head so that one write sends the request.
const INLINE_BODY: usize = 16 * 1024;
/// Longest wait for the runtime's threads to stop once `finish` is done waiting.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(200);

/// State shared by senders, the client handle and the runtime's tasks.
struct Shared {
    queue: Queue,
    metrics: Metrics,
}

impl Shared {
    fn stats(&self) -> ReplayStats {
        let (depth, bytes) = self.queue.depth();
        self.metrics.snapshot(depth as u64, bytes as u64, self.queue.capacity() as u64)
    }
}

/// What the runtime's tasks need besides [`Shared`].
struct Engine {
    shared: Arc<Shared>,
    connector: Connector,
    pool: Pool,
    policy: Policy,
    ids: RequestIds,
    timeout: Duration,
    pacing: Pacing,
    concurrency: usize,
    permits: Arc<Semaphore>,
}

/// Set by the dispatcher when the queue is closed, empty, and nothing is in flight.
#[derive(Default)]
struct Done {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    fn set(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut done = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            done = self.cv.wait_timeout(done, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

/// The replay client: its runtime, queue and counters. Start it with [`ReplayClient::start`], hand
/// [`ReplaySender`]s to the threads that produce requests, end it with [`ReplayClient::finish`].
/// Dropping it without `finish` stops at once: whatever is queued or in flight is abandoned (counted).
pub struct ReplayClient {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    done: Arc<Done>,
}

impl std::fmt::Debug for ReplayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayClient").field("stats", &self.shared.stats()).finish_non_exhaustive()
    }
}

/// A handle that queues jobs for a [`ReplayClient`]; `Clone + Send + Sync`, one per worker thread (or
/// shared). It stays usable after the client is gone: jobs are then refused as [`Rejected::Closed`].
#[derive(Clone)]
pub struct ReplaySender {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ReplaySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaySender").finish_non_exhaustive()
    }
}

impl ReplayClient {
    /// Checks the configuration, reads the CA file, and starts the runtime (`cfg.threads` threads named
    /// `vxtap-replay`). No connection is opened until the first request.
    pub fn start(cfg: ReplayConfig) -> Result<ReplayClient, ReplayError> {
        let target = cfg.validate()?;
        let tls = if target.tls { Some(tls::client_config(cfg.ca_file.as_deref())?) } else { None };
        let connector = Connector::new(&target, tls, cfg.connect_timeout)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .max_blocking_threads(4)
            .thread_name("vxtap-replay")
            .enable_io()
            .enable_time()
            .build()?;
        let shared = Arc::new(Shared {
            queue: Queue::new(cfg.queue_capacity, cfg.queue_max_bytes),
            metrics: Metrics::default(),
        });
        let engine = Arc::new(Engine {
            shared: shared.clone(),
            connector,
            pool: Pool::new(cfg.pool_max_idle.unwrap_or(cfg.concurrency), cfg.pool_idle_timeout),
            policy: Policy { headers: cfg.headers, response_headers: cfg.add_response_headers },
            ids: RequestIds::new(),
            timeout: cfg.timeout,
            pacing: cfg.pacing,
            concurrency: cfg.concurrency,
            permits: Arc::new(Semaphore::new(cfg.concurrency)),
        });
        let done = Arc::new(Done::default());
        runtime.spawn(dispatch(engine.clone(), done.clone()));
        let reap_every =
            (cfg.pool_idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(reap_every);
            loop {
                tick.tick().await;
                engine.pool.reap();
            }
        });
        Ok(ReplayClient { shared, runtime: Some(runtime), done })
    }

    /// A new handle for queueing jobs.
    pub fn sender(&self) -> ReplaySender {
        ReplaySender { shared: self.shared.clone() }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ReplayStats {
        self.shared.stats()
    }

    /// The counters as Prometheus text; see [`ReplayStats::render_prometheus`].
    pub fn render_prometheus(&self) -> String {
        self.stats().render_prometheus()
    }

    /// Stops taking jobs (later ones are refused as [`Rejected::Closed`]), waits until every queued and
    /// in-flight request is done or `timeout` has passed, then stops the runtime; whatever was still
    /// queued or in flight then is counted as `abandoned`. Returns within `timeout` plus a short grace
    /// (at most 200 ms) for the runtime's threads to stop, even against a dead target. Call it from a
    /// plain thread, not from inside an async runtime.
    pub fn finish(mut self, timeout: Duration) -> ReplayStats {
        self.shared.queue.close();
        self.done.wait(timeout);
        self.stop(SHUTDOWN_GRACE);
        self.stats()
    }

    fn stop(&mut self, grace: Duration) {
        self.shared.queue.close();
        if let Some(rt) = self.runtime.take() {
            // Waiting for a runtime's threads is not allowed from inside another runtime (it panics).
            if grace.is_zero() || tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                // Dropping the tasks counts their jobs as abandoned (`InFlight`'s drop).
                rt.shutdown_timeout(grace);
            }
        }
        let left = self.shared.queue.clear();
        self.shared.metrics.abandoned.fetch_add(left as u64, Relaxed);
    }
}

impl Drop for ReplayClient {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

impl ReplaySender {
    fn check(&self, job: &ReplayJob) -> Result<(), Rejected> {
        let r = &job.request;
        let m = &self.shared.metrics;
        if r.gap {
            m.skipped_gap.fetch_add(1, Relaxed);
            return Err(Rejected::Gap);
        }
        if r.body_truncated || r.body_len > r.body.len() as u64 {
            m.skipped_truncated.fetch_add(1, Relaxed);
            return Err(Rejected::Truncated);
        }
        Ok(())
    }

    fn account(&self, result: Result<(), PushError>) -> Result<(), Rejected> {
        let m = &self.shared.metrics;
        match result {
            Ok(()) => {
                m.accepted.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(PushError::Full) => {
                m.dropped_queue_full.fetch_add(1, Relaxed);
                Err(Rejected::QueueFull)
            }
            Err(PushError::Closed) => {
                m.dropped_closed.fetch_add(1, Relaxed);
                Err(Rejected::Closed)
            }
        }
    }

    /// Queues `job` for replay without ever waiting: an incomplete request (`gap`, truncated body) is
    /// skipped, and a job that does not fit in the queue is dropped; both are counted and reported in
    /// the `Err`. This is what live capture uses.
    pub fn submit(&self, job: ReplayJob) -> Result<(), Rejected> {
        self.check(&job)?;
        // Only the queue's mutex is taken, for a push.
        self.account(self.shared.queue.try_push(job))
    }

    /// Like [`submit`](Self::submit), but when the queue is full waits up to `wait` for room before
    /// dropping the job. For offline input (`vxtap pcap --replay`), where the reader can go at replay's
    /// pace instead of losing requests; with a bounded `wait` a dead target still cannot hold the reader
    /// for long. Blocks the calling thread: do not call it from inside an async runtime.
    pub fn submit_wait(&self, job: ReplayJob, wait: Duration) -> Result<(), Rejected> {
        self.check(&job)?;
        self.account(self.shared.queue.push_wait(job, wait))
    }

    /// A snapshot of the client's counters (the same as [`ReplayClient::stats`]).
    pub fn stats(&self) -> ReplayStats {
        self.shared.stats()
    }

    /// The counters as Prometheus text (the same as [`ReplayClient::render_prometheus`]).
    pub fn render_prometheus(&self) -> String {
        self.stats().render_prometheus()
    }
}

/// Counts a job as in flight from the moment it leaves the queue; if it is dropped unfinished (the
/// runtime stopped), it is counted as abandoned.
struct InFlight {
    shared: Arc<Shared>,
    finished: bool,
}

impl InFlight {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.metrics.in_flight.fetch_add(1, Relaxed);
        InFlight { shared: shared.clone(), finished: false }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let m = &self.shared.metrics;
        if !self.finished {
            m.abandoned.fetch_add(1, Relaxed);
        }
        m.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Takes jobs off the queue, paces them, and starts one task per job within the concurrency limit.
async fn dispatch(engine: Arc<Engine>, done: Arc<Done>) {
    // (capture time of the first job, when it was dispatched)
    let mut origin: Option<(u64, tokio::time::Instant)> = None;
    while let Some(job) = engine.shared.queue.pop().await {
        let guard = InFlight::new(&engine.shared);
        if let Some(factor) = engine.pacing.factor() {
            match origin {
                None => origin = Some((job.capture_ts_us, tokio::time::Instant::now())),
                Some((t0, start)) => {
                    let us = job.capture_ts_us.saturating_sub(t0) as f64 / factor;
                    let delay = Duration::try_from_secs_f64(us / 1e6)
                        .unwrap_or(Duration::MAX)
                        .min(Duration::from_secs(365 * 86400));
                    tokio::time::sleep_until(start + delay).await;
                }
            }
        }
        let Ok(permit) = engine.permits.clone().acquire_owned().await else { break };
        tokio::spawn(run(engine.clone(), job, permit, guard));
    }
    // Queue closed and empty: wait for the requests in flight.
    let _ = engine.permits.acquire_many(engine.concurrency as u32).await;
    done.set();
}

/// One request, start to end, within the per-request timeout.
async fn run(engine: Arc<Engine>, job: ReplayJob, permit: OwnedSemaphorePermit, mut guard: InFlight) {
    let started = Instant::now();
    let m = &engine.shared.metrics;
    match tokio::time::timeout(engine.timeout, send(&engine, &job)).await {
        Ok(Ok(status)) => m.response(status, started.elapsed()),
        Ok(Err(kind)) => m.fail(kind),
        Err(_) => m.fail(FailKind::Timeout),
    }
    guard.finished = true;
    drop(job);
    drop(guard);
    drop(permit);
}

async fn send(engine: &Engine, job: &ReplayJob) -> Result<u16, FailKind> {
    let body = &job.request.body;
    let inline = body.len() <= INLINE_BODY;
    let mut wire = Vec::with_capacity(
        256 + job.request.target.len()
            + job.request.headers.iter().map(|h| h.name.len() + h.value.len() + 4).sum::<usize>()
            + if inline { body.len() } else { 0 },
    );
    encode::encode_head(job, &engine.policy, &engine.ids, &mut wire).map_err(|_| FailKind::Invalid)?;
    let tail: &[u8] = if inline {
        wire.extend_from_slice(body);
        &[]
    } else {
        body
    };
    let is_head = job.request.method == b"HEAD";
    let is_connect = job.request.method == b"CONNECT";
    let m = &engine.shared.metrics;
    let (mut conn, reused) = match engine.pool.take() {
        Some(c) => (c, true),
        None => {
            let c = engine.connector.connect().await?;
            m.connections_opened.fetch_add(1, Relaxed);
            (c, false)
        }
    };
    let outcome = match conn.exchange(&wire, tail, is_head, is_connect).await {
        Ok(o) => o,
        Err(e) if reused && e.before_response => {
            m.retries.fetch_add(1, Relaxed);
            conn = engine.connector.connect().await?;
            m.connections_opened.fetch_add(1, Relaxed);
            conn.exchange(&wire, tail, is_head, is_connect).await.map_err(|e| e.kind)?
        }
        Err(e) => return Err(e.kind),
    };
    if outcome.reusable {
        engine.pool.put(conn);
    }
    Ok(outcome.status)
}

#[cfg(test)]
mod tests;
