//! Runtime, accept loop, TLS, protocol sniffing, and handing copies to the sink.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::addr;
use crate::stats::Counters;
use crate::{MirrorConfig, MirrorError, MirrorSink, MirroredRequest, h1, h2};

/// Pause after a failed `accept` (for instance out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// The HTTP/2 connection preface.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every connection task shares.
pub(crate) struct Shared {
    pub cfg: MirrorConfig,
    pub sink: Arc<dyn MirrorSink>,
    pub stats: Arc<Counters>,
    /// Body bytes kept by copies under way, all connections together.
    pub budget: Arc<crate::body::Budget>,
    /// `Some(grace)` once shutdown has begun.
    pub shutdown: watch::Receiver<Option<Duration>>,
}

/// One accepted connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub allowed: bool,
    pub tls: bool,
}

/// A connection's byte stream; plain TCP can wait for readability without a buffer, so that idle
/// connections hold no read buffer.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready when a read would not block (or, for streams that cannot tell, at once).
    fn poll_readable(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Acknowledges what was received at once instead of delaying the ACK. Called while waiting for
    /// the rest of a body: a proxy that writes head and body separately without `TCP_NODELAY` (nginx
    /// to a keep-alive upstream) holds the body back until the head is acknowledged (Nagle), and a
    /// delayed ACK then costs every copy 40 ms.
    fn quickack(&self) {}
}

impl Io for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A peek, not `poll_read_ready`: tokio assumes accepted sockets readable at first, and only
        // a read that would block clears that guess.
        let mut one = [0u8; 1];
        self.poll_peek(cx, &mut ReadBuf::new(&mut one)).map_ok(|_| ())
    }

    fn quickack(&self) {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia", target_os = "cygwin"))]
        let _ = self.set_quickack(true);
    }
}

impl Io for tokio_rustls::server::TlsStream<TcpStream> {
    fn quickack(&self) {
        Io::quickack(self.get_ref().0);
    }
}

/// Replays bytes already read (while sniffing the protocol) before reading from `inner`.
pub(crate) struct Prefixed<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Vec<u8>, inner: T) -> Prefixed<T> {
        Prefixed { prefix, pos: 0, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// µs since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Resolves addresses and host, counts, and offers the copy to the sink.
pub(crate) fn deliver(shared: &Shared, conn: &ConnInfo, request: vxtap_http::Request) {
    let stats = &shared.stats;
    let resolved = addr::resolve(conn.peer, conn.local, &request.headers, &shared.cfg.trusted_proxies);
    let hostname = addr::mirror_hostname(&request.headers, &request.target);
    let request_id = addr::find_all(&request.headers, b"x-request-id").next().map(<[u8]>::to_vec);
    Counters::inc(match request.protocol.as_slice() {
        b"HTTP/1.0" => &stats.copies_http10,
        b"HTTP/2" => &stats.copies_http2,
        _ => &stats.copies_http11,
    });
    if request.body_truncated {
        Counters::inc(&stats.truncated);
    }
    Counters::add(&stats.body_bytes, request.body_len);
    let copy = MirroredRequest {
        request,
        client: resolved.client,
        server: resolved.server,
        peer: SocketAddr::new(conn.peer.ip().to_canonical(), conn.peer.port()),
        hostname,
        request_id,
        addresses_trusted: resolved.trusted,
        tls: conn.tls,
    };
    match shared.sink.offer(copy) {
        Ok(()) => Counters::inc(&stats.delivered),
        Err(_) => Counters::inc(&stats.sink_full),
    }
}

/// Binds, loads TLS, and starts the runtime thread.
pub(crate) fn spawn(
    cfg: MirrorConfig,
    sink: Arc<dyn MirrorSink>,
    stats: Arc<Counters>,
    shutdown: watch::Receiver<Option<Duration>>,
) -> Result<(SocketAddr, JoinHandle<()>), MirrorError> {
    let tls = cfg.tls.as_ref().map(load_tls).transpose()?;
    let rt = if cfg.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .thread_name("vxtap-mirror")
            .enable_all()
            .build()
    }
    .map_err(MirrorError::Setup)?;
    let addr = cfg.listen;
    let listener = rt.block_on(async { bind(addr) }).map_err(|error| MirrorError::Bind { addr, error })?;
    let local_addr = listener.local_addr().map_err(|error| MirrorError::Bind { addr, error })?;
    let budget = crate::body::Budget::new(cfg.max_buffered_body_bytes);
    let shared = Arc::new(Shared { cfg, sink, stats, budget, shutdown });
    let thread = std::thread::Builder::new()
        .name("vxtap-mirror".into())
        .spawn(move || {
            rt.block_on(serve(listener, tls, shared));
            rt.shutdown_timeout(Duration::from_millis(100));
        })
        .map_err(MirrorError::Setup)?;
    Ok((local_addr, thread))
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // nginx up to 1.29.6 opens a connection per copy: a deep backlog absorbs bursts.
    socket.listen(4096)
}

fn load_tls(files: &crate::TlsFiles) -> Result<TlsAcceptor, MirrorError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| MirrorError::Tls(format!("certificate {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(MirrorError::Tls(format!("certificate {}: no certificate found", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| MirrorError::Tls(format!("key {}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MirrorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| MirrorError::Tls(format!("{} / {}: {e}", files.cert.display(), files.key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let limit = Arc::new(Semaphore::new(shared.cfg.max_connections));
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(Option::is_some) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        Counters::inc(&shared.stats.connections_accepted);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            Counters::inc(&shared.stats.connections_rejected);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(listener_addr(&listener));
        let allowed = shared.cfg.allow.is_empty() || addr::any_contains(&shared.cfg.allow, peer.ip());
        let info = ConnInfo { peer, local, allowed, tls: tls.is_some() };
        tokio::spawn(connection(stream, info, tls.clone(), shared.clone(), permit));
    }
    drop(listener);
    // Drain: connections see the signal themselves; wait for them within the grace period.
    let grace = shared.shutdown.borrow().unwrap_or_default();
    let max = shared.cfg.max_connections;
    let _ = tokio::time::timeout(grace, async {
        while limit.available_permits() < max {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn listener_addr(l: &TcpListener) -> SocketAddr {
    l.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Decrements the open-connections gauge when the connection task ends, however it ends.
struct OpenGuard(Arc<Counters>, #[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    stream: TcpStream,
    info: ConnInfo,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) {
    Counters::inc(&shared.stats.connections_open);
    let _guard = OpenGuard(shared.stats.clone(), permit);
    let shared = &shared;
    match tls {
        None => sniff(stream, info, shared).await,
        // Boxed: the handshake state is large and only TLS connections need it.
        Some(acceptor) => Box::pin(tls_connection(stream, acceptor, info, shared)).await,
    }
}

async fn tls_connection(stream: TcpStream, acceptor: TlsAcceptor, info: ConnInfo, shared: &Arc<Shared>) {
    // Wait for the ClientHello without holding TLS state, then allow header_timeout for it.
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        r = tokio::time::timeout(shared.cfg.idle_timeout, std::future::poll_fn(|cx| stream.poll_readable(cx))) => {
            if !matches!(r, Ok(Ok(()))) {
                return;
            }
        }
        _ = shutdown.wait_for(Option::is_some) => return,
    }
    let accepted = tokio::time::timeout(shared.cfg.header_timeout, acceptor.accept(stream)).await;
    let Ok(Ok(stream)) = accepted else {
        Counters::inc(&shared.stats.tls_handshake_errors);
        return;
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        Box::pin(h2::serve(stream, info, shared)).await;
    } else {
        Box::pin(sniff(stream, info, shared)).await;
    }
}

/// HTTP/2 prior knowledge or HTTP/1: looks at the first bytes (waiting for at most `idle_timeout`
/// for the first, `header_timeout` for the rest of the preface).
async fn sniff<T: Io>(mut io: T, info: ConnInfo, shared: &Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    // Idle until the first byte, without a buffer.
    tokio::select! {
        r = tokio::time::timeout(shared.cfg.idle_timeout, std::future::poll_fn(|cx| io.poll_readable(cx))) => {
            if !matches!(r, Ok(Ok(()))) {
                return;
            }
        }
        _ = shutdown.wait_for(Option::is_some) => return,
    }
    let mut buf = Vec::with_capacity(8192);
    // Until the first byte (TLS streams cannot wait without reading): idle; then the head's time.
    let mut deadline = tokio::time::Instant::now() + shared.cfg.idle_timeout;
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)) => r,
            _ = shutdown.wait_for(Option::is_some), if buf.is_empty() => return,
        };
        match read {
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    Counters::inc(&shared.stats.parse_errors);
                }
                return;
            }
            Ok(Ok(n)) if n == buf.len() => {
                deadline = tokio::time::Instant::now() + shared.cfg.header_timeout;
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                if !buf.is_empty() {
                    Counters::inc(&shared.stats.header_timeouts);
                }
                return;
            }
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Box::pin(h1::serve(io, buf, info, shared)).await;
        }
        if n == H2_PREFACE.len() {
            // Boxed: an idle connection's task stays small.
            return Box::pin(h2::serve(Prefixed::new(buf, io), info, shared)).await;
        }
    }
}
