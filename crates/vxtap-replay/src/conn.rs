//! Connections to the target: connect (TCP, TLS), the idle pool, one request/response exchange.
//!
//! The request bytes are written exactly as [`crate::encode`] made them (a general-purpose HTTP client
//! would lower-case header names, regroup repeated headers and refuse non-UTF-8 request-targets); the
//! response is read with `httparse` and its body discarded, only its framing matters.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::Target;
use crate::stats::FailKind;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;
const BUF_INITIAL: usize = 8 * 1024;

/// A plain or TLS connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens connections to the configured target, and only to it.
pub(crate) struct Connector {
    host: String,
    port: u16,
    /// The target's address when the URL names an IP: no resolution needed.
    addr: Option<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(
        target: &Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Self, crate::ReplayError> {
        let addr = target.host.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, target.port));
        let tls = match tls {
            None => None,
            Some(cfg) => {
                let name =
                    ServerName::try_from(target.host.clone()).map_err(|e| crate::ReplayError::Target {
                        url: target.host.clone(),
                        reason: format!("not a valid TLS server name: {e}"),
                    })?;
                Some((TlsConnector::from(cfg), name))
            }
        };
        Ok(Connector { host: target.host.clone(), port: target.port, addr, tls, timeout })
    }

    /// A new connection; any failure (resolution, refused, unreachable, connect timeout, TLS) is
    /// `Connect`.
    pub(crate) async fn connect(&self) -> Result<Conn, FailKind> {
        let open = async {
            let tcp = match self.addr {
                Some(a) => TcpStream::connect(a).await?,
                None => TcpStream::connect((self.host.as_str(), self.port)).await?,
            };
            tcp.set_nodelay(true)?;
            let stream = match &self.tls {
                None => Stream::Plain(tcp),
                Some((connector, name)) => Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?)),
            };
            io::Result::Ok(stream)
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(Ok(stream)) => Ok(Conn::new(stream)),
            _ => Err(FailKind::Connect),
        }
    }
}

/// Idle keep-alive connections, most recently used first.
pub(crate) struct Pool {
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Pool { idle: Mutex::new(Vec::new()), max_idle, idle_timeout }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection that has not expired and that the target has not closed.
    pub(crate) fn take(&self) -> Option<Conn> {
        loop {
            let mut conn = self.lock().pop()?;
            if conn.idle_since.elapsed() < self.idle_timeout && conn.is_open() {
                return Some(conn);
            }
        }
    }

    /// Returns a connection for reuse (or closes it when the pool is full).
    pub(crate) fn put(&self, mut conn: Conn) {
        conn.idle_since = Instant::now();
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// Closes expired idle connections.
    pub(crate) fn reap(&self) {
        let expired: Vec<Conn> = {
            let mut idle = self.lock();
            let (keep, expired) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|c| c.idle_since.elapsed() < self.idle_timeout);
            *idle = keep;
            expired
        };
        drop(expired);
    }
}

/// How one exchange failed. `before_response`: no byte of a response came (the request may not have
/// reached the target at all), so a request on a reused connection may be retried once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExchangeError {
    pub(crate) kind: FailKind,
    pub(crate) before_response: bool,
}

/// The result of one exchange.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) reusable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// One connection with its read buffer.
pub(crate) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    idle_since: Instant,
}

fn io_err(before_response: bool) -> ExchangeError {
    ExchangeError { kind: FailKind::Io, before_response }
}

const HTTP_ERR: ExchangeError = ExchangeError { kind: FailKind::Http, before_response: false };

impl Conn {
    fn new(stream: Stream) -> Self {
        Conn { stream, buf: vec![0; BUF_INITIAL], pos: 0, end: 0, idle_since: Instant::now() }
    }

    /// False when the target closed the connection (or sent something unasked) while it was idle.
    fn is_open(&mut self) -> bool {
        if self.pos != self.end {
            return false;
        }
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(Pin::new(&mut self.stream).poll_read(&mut cx, &mut rb), Poll::Pending)
    }

    /// Reads more bytes into the buffer; returns how many (0 at end of stream).
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// `fill`, with end of stream as an error.
    async fn more(&mut self) -> Result<(), ExchangeError> {
        match self.fill().await {
            Ok(0) | Err(_) => Err(io_err(false)),
            Ok(_) => Ok(()),
        }
    }

    /// Sends `head` then `body` and reads the whole response.
    pub(crate) async fn exchange(
        &mut self,
        head: &[u8],
        body: &[u8],
        is_head: bool,
        is_connect: bool,
    ) -> Result<Outcome, ExchangeError> {
        self.stream.write_all(head).await.map_err(|_| io_err(true))?;
        if !body.is_empty() {
            self.stream.write_all(body).await.map_err(|_| io_err(true))?;
        }
        self.stream.flush().await.map_err(|_| io_err(true))?;

        let mut first = true;
        loop {
            let (status, framing, keep_alive) = self.read_head(first, is_head, is_connect).await?;
            first = false;
            if (100..200).contains(&status) && status != 101 {
                continue; // interim response (100 Continue, 103 Early Hints)
            }
            let reusable = keep_alive
                && framing != Framing::UntilClose
                && status != 101
                && !(is_connect && (200..300).contains(&status));
            match framing {
                Framing::None => {}
                Framing::Length(n) => self.skip(n).await?,
                Framing::Chunked => self.skip_chunked().await?,
                Framing::UntilClose => loop {
                    self.pos = self.end;
                    match self.fill().await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(_) => return Err(io_err(false)),
                    }
                },
            }
            return Ok(Outcome { status, reusable: reusable && self.pos == self.end });
        }
    }

    /// Reads and consumes one response head: (status, body framing, connection may be kept).
    async fn read_head(
        &mut self,
        first: bool,
        is_head: bool,
        is_connect: bool,
    ) -> Result<(u16, Framing, bool), ExchangeError> {
        loop {
            if self.pos < self.end {
                let mut headers = [httparse::EMPTY_HEADER; 128];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.pos..self.end]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = resp.code.unwrap_or(0);
                        let http11 = resp.version == Some(1);
                        let mut close = false;
                        let mut keep_alive = false;
                        let mut te: Option<bool> = None; // Some(last coding is chunked)
                        let mut length: Option<u64> = None;
                        for h in resp.headers.iter() {
                            if h.name.eq_ignore_ascii_case("connection") {
                                for t in h.value.split(|&b| b == b',') {
                                    let t = t.trim_ascii();
                                    close |= t.eq_ignore_ascii_case(b"close");
                                    keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                                }
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                let last = h
                                    .value
                                    .rsplit(|&b| b == b',')
                                    .map(|t| t.trim_ascii())
                                    .find(|t| !t.is_empty());
                                te = Some(last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")));
                            } else if h.name.eq_ignore_ascii_case("content-length") {
                                for item in h.value.split(|&b| b == b',') {
                                    let n = std::str::from_utf8(item.trim_ascii())
                                        .ok()
                                        .and_then(|s| s.parse::<u64>().ok())
                                        .ok_or(HTTP_ERR)?;
                                    if length.is_some_and(|l| l != n) {
                                        return Err(HTTP_ERR);
                                    }
                                    length = Some(n);
                                }
                            }
                        }
                        self.pos += len;
                        let no_body = is_head
                            || (100..200).contains(&status)
                            || status == 204
                            || status == 304
                            || (is_connect && (200..300).contains(&status));
                        let framing = if no_body {
                            Framing::None
                        } else if let Some(chunked) = te {
                            if chunked { Framing::Chunked } else { Framing::UntilClose }
                        } else if let Some(n) = length {
                            Framing::Length(n)
                        } else {
                            Framing::UntilClose
                        };
                        return Ok((status, framing, !close && (http11 || keep_alive)));
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.pos >= MAX_HEAD {
                            return Err(HTTP_ERR);
                        }
                    }
                    Err(_) => return Err(HTTP_ERR),
                }
            }
            let nothing_yet = first && self.pos == self.end;
            match self.fill().await {
                Ok(0) | Err(_) => return Err(io_err(nothing_yet)),
                Ok(_) => {}
            }
        }
    }

    /// Consumes `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> Result<(), ExchangeError> {
        while n > 0 {
            if self.pos == self.end {
                self.more().await?;
            }
            let take = ((self.end - self.pos) as u64).min(n);
            self.pos += take as usize;
            n -= take;
        }
        Ok(())
    }

    /// Consumes a chunked body and its trailer section.
    async fn skip_chunked(&mut self) -> Result<(), ExchangeError> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.pos..self.end]) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.pos += len;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.pos > MAX_LINE {
                            return Err(HTTP_ERR);
                        }
                        self.more().await?;
                    }
                    Err(_) => return Err(HTTP_ERR),
                }
            };
            if size == 0 {
                break;
            }
            self.skip(size).await?;
            // CRLF (or a bare LF) after the chunk data.
            while self.end - self.pos < 2 && !(self.pos < self.end && self.buf[self.pos] == b'\n') {
                self.more().await?;
            }
            match &self.buf[self.pos..self.end] {
                [b'\n', ..] => self.pos += 1,
                [b'\r', b'\n', ..] => self.pos += 2,
                _ => return Err(HTTP_ERR),
            }
        }
        // Trailer section: lines up to an empty one.
        loop {
            match self.buf[self.pos..self.end].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let empty = i == 0 || (i == 1 && self.buf[self.pos] == b'\r');
                    self.pos += i + 1;
                    if empty {
                        return Ok(());
                    }
                }
                None => {
                    if self.end - self.pos > MAX_LINE {
                        return Err(HTTP_ERR);
                    }
                    self.more().await?;
                }
            }
        }
    }
}
