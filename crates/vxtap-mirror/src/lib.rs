//! HTTP mirror input for vxtap: the backend that web servers and proxies send copies of requests to
//! (nginx `mirror`, Envoy `request_mirror_policies`, Istio `mirror`, Traefik `mirroring`).
//!
//! A [`MirrorServer`] listens on one TCP address, on its own tokio runtime in its own OS thread(s), so
//! callers built from plain threads never need to be async. It accepts HTTP/1.0 (what nginx up to
//! 1.29.6 sends for every copy, with `Connection: close`), HTTP/1.1 with keep-alive and pipelining,
//! HTTP/2 over cleartext with prior knowledge (an Envoy cluster set to HTTP/2), and, with a
//! certificate and key, all of these over TLS (rustls; ALPN `h2` and `http/1.1`).
//!
//! Every copy becomes a [`MirroredRequest`] — the same [`vxtap_http::Request`] record packet input
//! produces, plus the resolved client and server — handed to a non-blocking [`MirrorSink`]. When the
//! sink is full the copy is dropped and counted; the answer never waits for analysis.
//!
//! # When the answer goes out
//! Each copy is answered `204 No Content` **as soon as its body has been read in full** (or a body
//! timeout ended it), then offered to the sink; the answer never waits for analysis. Not earlier, on
//! the head: a proxy that receives a complete response while it is still sending the body stops
//! sending it (nginx finalizes the mirror subrequest and closes the upstream connection; Envoy resets
//! the shadow stream), so the rest of a large body would be lost, and an HTTP/1.1 connection cannot
//! carry the next copy before the body is read anyway. Measured through nginx 1.22 with the reference
//! configuration (`scripts/mirror-lab/`, wrk, same binary, the two policies alternated): 16 KiB
//! bodies, keep-alive upstream: 1325 against 1342 requests/s (no difference); 1 MiB bodies: 213
//! against 142 requests/s with a connection per copy and 227 against 210 with keep-alive, answering
//! after the body being the faster, and answering on the head cut 5 of 1981 copies short. nginx holds
//! a client's next keep-alive request until the mirror subrequest ends, and by then it has sent the
//! whole body (it buffers it before mirroring), so reading it first costs the proxy nothing.
//!
//! While a head or body is incomplete the socket acknowledges at once (`TCP_QUICKACK`): nginx writes
//! a copy's head and body separately to a keep-alive upstream with Nagle on, and a delayed ACK then
//! cost every copy 40 ms (16 KiB bodies through nginx: 725 requests/s against 1391 for an nginx
//! `return 204` sink, which answers before the body; 1425 against 1417 with the quick ACK).
//!
//! # Addresses
//! From a peer inside [`MirrorConfig::trusted_proxies`] the forwarding headers are believed, as
//! nginx's `set_real_ip_from` with `real_ip_recursive on` does: the client IP is the rightmost
//! `X-Forwarded-For` address that is not itself trusted (all `X-Forwarded-For` lines, in order; if
//! every address is trusted, the leftmost). Only when a copy carries no usable `X-Forwarded-For`,
//! the same walk runs over RFC 7239 `Forwarded: for=`, then `X-Real-IP` is taken: every producer
//! named here sets `X-Forwarded-For`, and a `Forwarded` or `X-Real-IP` that a client sent may pass
//! through a proxy unchanged. The client port is `X-Forwarded-Port`, else a port written in the
//! chosen element (`[2001:db8::1]:4711`), else 0 (unknown). The server is `X-Server-Addr` /
//! `X-Server-Port`, each falling back to the local address of the accepted socket. From any other
//! peer the headers stay in `request.headers` but are never believed: the client is the TCP peer,
//! the server the local address. IPv4-mapped IPv6 addresses are reported as IPv4.
//!
//! # Producers (measured in `scripts/mirror-lab/`)
//! - **nginx** (`mirror`, the reference configuration): HTTP/1.0 with `Connection: close`, one
//!   connection per copy (up to 1.29.6); `X-Forwarded-Port $realip_remote_port` is the client's source
//!   port, so `client.port()` is real; bodies arrive with `Content-Length` even when the client sent
//!   them chunked. With `mirror_request_body off` nginx still forwards the client's `Content-Length`
//!   and sends no body: each such copy ends at [`MirrorConfig::body_start_timeout`] (counted in
//!   `body_timeouts`), and nginx holds that client's next keep-alive request until then (measured:
//!   1 s with the default); add `proxy_pass_request_body off; proxy_set_header Content-Length "";` to
//!   the mirror location.
//! - **Envoy / Istio** (`request_mirror_policies`): HTTP/1.1 keep-alive with lowercase names, or HTTP/2
//!   to a cluster with `http2_protocol_options`; `Host` gets `-shadow` before the port (dropped from
//!   `hostname`). With `use_remote_address: true` Envoy appends the client to `X-Forwarded-For`, then
//!   the shadow appends Envoy's own node address (the host's first non-loopback address): put the
//!   proxies' own addresses in `trusted_proxies`. A client's own `X-Forwarded-For` stays on the left and
//!   is skipped by the walk. Envoy sends no `X-Forwarded-Port` unless told: `append_x_forwarded_port`
//!   writes the port the client connected *to*; a `request_headers_to_add` of
//!   `X-Forwarded-Port: %DOWNSTREAM_REMOTE_PORT%` gives the client's port, and
//!   `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%` / `%DOWNSTREAM_LOCAL_PORT%` the server. Chunked bodies
//!   stream through chunked; a copy leaves with the request and is sent even when the client goes away
//!   (a copy whose stream Envoy resets arrives with `gap`, counted as `body_incomplete`).
//! - **Traefik** (`mirroring` service): HTTP/1.1 keep-alive, `Host` unchanged; `X-Forwarded-For` and
//!   `X-Real-Ip` are the client; its `X-Forwarded-Port` is the port written in the client's `Host`
//!   header, else 80/443 by scheme: neither the client's port nor the server's, so `client.port()`
//!   means nothing for Traefik copies; no server address header exists, so `server` is vxtap's
//!   listener. Traefik sends a copy only after the main response is complete, and none when the
//!   client went away first; Go adds `Accept-Encoding: gzip` when the client sent none.
//!
//! # Example
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//! use vxtap_mirror::{Cidr, MirrorConfig, MirrorServer};
//!
//! let mut cfg = MirrorConfig::new("127.0.0.1:0".parse().unwrap());
//! cfg.trusted_proxies = Cidr::parse_list("127.0.0.0/8")?;
//! let (server, copies) = MirrorServer::start_channel(cfg, 1024)?;
//!
//! // What nginx's `mirror` subrequest sends with the reference configuration.
//! let mut proxy = TcpStream::connect(server.local_addr())?;
//! proxy.write_all(
//!     b"POST /login?next=%2F HTTP/1.0\r\nX-SERVER-PORT: 443\r\nX-SERVER-ADDR: 10.0.1.20\r\n\
//!       HOST: shop.example-shadow:8443\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Port: 51234\r\n\
//!       X-Request-ID: 4f1c\r\nConnection: close\r\nContent-Length: 7\r\n\r\nuser=me",
//! )?;
//! let mut answer = String::new();
//! proxy.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.1 204 No Content\r\n"));
//!
//! let copy = copies.recv_timeout(Duration::from_secs(5)).unwrap();
//! assert_eq!(copy.request.method, b"POST");
//! assert_eq!(copy.request.target, b"/login?next=%2F");
//! assert_eq!(copy.request.body, b"user=me");
//! assert_eq!(copy.client.to_string(), "198.51.100.7:51234");
//! assert_eq!(copy.server.to_string(), "10.0.1.20:443");
//! assert_eq!(copy.hostname, b"shop.example");
//! assert_eq!(copy.request_id.as_deref(), Some(&b"4f1c"[..]));
//! assert!(copy.addresses_trusted);
//!
//! let stats = server.shutdown(Duration::from_secs(1));
//! assert_eq!((stats.copies, stats.answered), (1, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
mod body;
mod h1;
mod h2;
mod server;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use addr::{Cidr, CidrError, mirror_hostname};
pub use stats::{MirrorMetrics, MirrorStats};

/// Settings of the mirror listener. [`MirrorConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// Address to listen on (conventionally port 8445). `[::]` listens on IPv4 too.
    pub listen: SocketAddr,
    /// Serve TLS with this certificate chain and key instead of cleartext.
    pub tls: Option<TlsFiles>,
    /// Peers whose forwarding headers are believed (see the crate docs). Empty: none; client
    /// addresses are then the proxy's ([`MirrorConfig::warnings`] says so).
    pub trusted_proxies: Vec<Cidr>,
    /// When not empty, only peers inside these blocks are served; others get `403` (counted).
    pub allow: Vec<Cidr>,
    /// Decoded body bytes kept per copy; the rest is read, counted and flagged `body_truncated`.
    /// Default 1 MiB.
    pub body_limit: usize,
    /// Ceiling on the body bytes kept by all copies under way together (every connection and
    /// HTTP/2 stream); past it bodies are still read and counted but kept only as far as the ceiling
    /// allows (`body_truncated`, counted). Default 256 MiB.
    pub max_buffered_body_bytes: usize,
    /// Largest request head (request line and headers; for HTTP/2 the header list). Larger heads
    /// are answered `431` (counted). Default 128 KiB.
    pub max_head_bytes: usize,
    /// Time for a whole request head, from its first byte (and for a TLS handshake). Default 10 s.
    pub header_timeout: Duration,
    /// Longest wait from the end of a head that announces a body to the body's first byte; then the
    /// copy is delivered without its body (`gap: true`, counted in `body_timeouts`) and the connection
    /// closed. nginx with `mirror_request_body off` announces a body it never sends, and holds its
    /// client's next keep-alive request until this has passed; Envoy streams a body at its client's
    /// pace, so a client slower than this to start its body yields a copy with a gap. Default 1 s.
    pub body_start_timeout: Duration,
    /// Longest silence inside a body, once it has started; then the copy is delivered as it is
    /// (`gap: true`, counted in `body_timeouts`) and the connection closed. Default 5 s.
    pub body_timeout: Duration,
    /// An idle keep-alive connection (no request under way) is closed after this. Keep it above the
    /// proxies' own upstream idle timeouts (nginx `keepalive_timeout` 60 s) so that they close
    /// first. Default 120 s.
    pub idle_timeout: Duration,
    /// Connections served at once; beyond it new connections are closed on accept (counted).
    /// Default 10 000.
    pub max_connections: usize,
    /// HTTP/2: concurrent streams per connection. Default 256.
    pub h2_max_concurrent_streams: u32,
    /// Runtime worker threads. 1 (default) runs one single-threaded runtime.
    pub threads: usize,
}

/// PEM files for TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl MirrorConfig {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> MirrorConfig {
        MirrorConfig {
            listen,
            tls: None,
            trusted_proxies: Vec::new(),
            allow: Vec::new(),
            body_limit: 1 << 20,
            max_buffered_body_bytes: 256 << 20,
            max_head_bytes: 128 << 10,
            header_timeout: Duration::from_secs(10),
            body_start_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            h2_max_concurrent_streams: 256,
            threads: 1,
        }
    }

    /// Start-up warnings for the operator's log (one line each): today only that without trusted
    /// proxies every client address will be the proxy's.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.trusted_proxies.is_empty() {
            w.push(format!(
                "HTTP mirror on {}: no trusted proxies (--trusted-proxies), so forwarding headers are \
                 ignored and every client address will be the proxy's",
                self.listen
            ));
        }
        w
    }

    fn validate(&self) -> Result<(), MirrorError> {
        let bad = |what: &str| Err(MirrorError::Config(what.to_owned()));
        if self.max_head_bytes < 256 {
            return bad("max_head_bytes must be at least 256");
        }
        if self.max_connections == 0 || self.threads == 0 || self.h2_max_concurrent_streams == 0 {
            return bad("max_connections, threads and h2_max_concurrent_streams must be at least 1");
        }
        let timeouts = [self.header_timeout, self.body_start_timeout, self.body_timeout, self.idle_timeout];
        if timeouts.contains(&Duration::ZERO) {
            return bad("timeouts must be longer than zero");
        }
        Ok(())
    }
}

/// One mirrored request, as received, with its resolved addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredRequest {
    /// The request: `method`, `target` (the request-target exactly as sent; for HTTP/2 `:path`),
    /// `protocol` (`HTTP/1.0`, `HTTP/1.1` or `HTTP/2`), `headers` in the order received with their
    /// original case (HTTP/2: `:authority` first as `Host`, then the others with HTTP/1-style
    /// capitalisation, `Content-Type`, and split `cookie` fields joined), the decoded (de-chunked)
    /// body up to `body_limit`, `body_len`, `body_truncated`, `gap` (true only when the body timed
    /// out or the connection broke inside it), and `start_ts` / `end_ts` in µs since the Unix epoch
    /// (first head byte read, body complete).
    pub request: vxtap_http::Request,
    /// The original client (see the crate docs for how it is resolved).
    pub client: SocketAddr,
    /// The original server.
    pub server: SocketAddr,
    /// The TCP peer that sent the copy (the proxy).
    pub peer: SocketAddr,
    /// `Host` (or `:authority`) without its port and without the `-shadow` suffix.
    pub hostname: Vec<u8>,
    /// The `X-Request-ID` header, when present.
    pub request_id: Option<Vec<u8>>,
    /// Whether the peer is a trusted proxy, i.e. `client` and `server` come from its headers.
    pub addresses_trusted: bool,
    /// Whether the copy came over TLS.
    pub tls: bool,
}

/// The sink refused a copy: it is full (or closed). The copy is dropped and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mirror sink full")]
pub struct SinkFull;

/// Where copies go: called once per copy on a runtime thread. It must not block: return
/// [`SinkFull`] instead.
///
/// Implemented for closures `Fn(MirroredRequest) -> Result<(), SinkFull>` and for
/// `crossbeam_channel::Sender<MirroredRequest>` (`try_send`; a full or disconnected channel is
/// `SinkFull`).
pub trait MirrorSink: Send + Sync + 'static {
    /// Takes one copy, or refuses it at once.
    fn offer(&self, copy: MirroredRequest) -> Result<(), SinkFull>;
}

impl<F> MirrorSink for F
where
    F: Fn(MirroredRequest) -> Result<(), SinkFull> + Send + Sync + 'static,
{
    fn offer(&self, copy: MirroredRequest) -> Result<(), SinkFull> {
        self(copy)
    }
}

impl MirrorSink for crossbeam_channel::Sender<MirroredRequest> {
    fn offer(&self, copy: MirroredRequest) -> Result<(), SinkFull> {
        self.try_send(copy).map_err(|_| SinkFull)
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The listening socket could not be bound.
    #[error("HTTP mirror: cannot listen on {addr}: {error}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The certificate or key could not be read or used.
    #[error("HTTP mirror TLS: {0}")]
    Tls(String),
    /// A setting is out of range.
    #[error("HTTP mirror configuration: {0}")]
    Config(String),
    /// The runtime or its thread could not be created.
    #[error("HTTP mirror: cannot start: {0}")]
    Setup(std::io::Error),
}

/// A running mirror listener. Dropping it shuts it down without grace.
pub struct MirrorServer {
    local_addr: SocketAddr,
    metrics: MirrorMetrics,
    shutdown: tokio::sync::watch::Sender<Option<Duration>>,
    thread: Option<JoinHandle<()>>,
}

impl MirrorServer {
    /// Binds `cfg.listen` (and loads the TLS files) at once, then serves on background threads, each
    /// copy going to `sink`.
    pub fn start(cfg: MirrorConfig, sink: impl MirrorSink) -> Result<MirrorServer, MirrorError> {
        cfg.validate()?;
        let metrics = MirrorMetrics { counters: Arc::default() };
        let (tx, rx) = tokio::sync::watch::channel(None);
        let (local_addr, thread) = server::spawn(cfg, Arc::new(sink), metrics.counters.clone(), rx)?;
        Ok(MirrorServer { local_addr, metrics, shutdown: tx, thread: Some(thread) })
    }

    /// [`start`](Self::start) with a bounded crossbeam channel of `capacity` copies as the sink;
    /// returns its receiver.
    pub fn start_channel(
        cfg: MirrorConfig,
        capacity: usize,
    ) -> Result<(MirrorServer, crossbeam_channel::Receiver<MirroredRequest>), MirrorError> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Ok((MirrorServer::start(cfg, tx)?, rx))
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters now.
    pub fn stats(&self) -> MirrorStats {
        self.metrics.snapshot()
    }

    /// A clonable handle on the counters, e.g. for a `/metrics` renderer on another thread.
    pub fn metrics(&self) -> MirrorMetrics {
        self.metrics.clone()
    }

    /// Prometheus text of the counters now (`vxtap_mirror_*`).
    pub fn render_prometheus(&self) -> String {
        self.metrics.render_prometheus()
    }

    /// Stops accepting, lets copies under way finish (idle connections close at once, busy HTTP/1
    /// connections after their current copy, HTTP/2 connections with a GOAWAY) for at most
    /// `timeout`, then closes whatever is left and returns the final counters.
    pub fn shutdown(mut self, timeout: Duration) -> MirrorStats {
        self.stop(timeout);
        self.metrics.snapshot()
    }

    fn stop(&mut self, timeout: Duration) {
        let _ = self.shutdown.send(Some(timeout));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

impl std::fmt::Debug for MirrorServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}
