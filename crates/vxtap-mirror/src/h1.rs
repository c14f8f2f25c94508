//! HTTP/1.0 and HTTP/1.1 copies: a small dedicated server loop.
//!
//! Not hyper's HTTP/1 server: hyper keeps header names lowercased in a map that groups duplicates, and
//! its original-case and original-order records are private, while a copy must keep every header line
//! in wire order with its original case, as packet input does. The loop here only ever answers `204`
//! (or `400`/`403`/`431`), so it is short: heads are split at the first empty line, the request line
//! parsed by hand (the target is kept as raw bytes), header lines by `httparse`; bodies framed by
//! `Transfer-Encoding: chunked` or `Content-Length` (RFC 9112 §6.3); keep-alive, pipelining and
//! `Expect: 100-continue` as RFC 9112 has them.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use vxtap_http::{Header, Request, is_token};

use crate::body::{BodyBuf, Chunked};
use crate::server::{ConnInfo, Io, Shared, deliver, now_us};
use crate::stats::Counters;

const R204_KEEP: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
const R204_KEEP_10: &[u8] = b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n";
const R204_CLOSE: &[u8] = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
const R100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const R400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const R403: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const R431: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const R505: &[u8] =
    b"HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Read size while reading a head, and the most an idle connection keeps allocated.
const HEAD_READ: usize = 8 << 10;
/// Read size inside bodies.
const BODY_READ: usize = 64 << 10;
/// After an error answer, bytes still read and discarded (and for how long) so that closing does not
/// reset the connection under the answer.
const LINGER_BYTES: usize = 256 << 10;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Serves HTTP/1 copies on `io`; `buf` holds bytes already read.
pub(crate) async fn serve<T: Io>(io: T, buf: Vec<u8>, info: ConnInfo, shared: &Arc<Shared>) {
    let mut conn = Conn { io, buf, pos: 0, scanned: 0, info, shared };
    conn.run().await;
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

#[derive(Debug)]
struct Head {
    request: Request,
    framing: Framing,
    keep_alive: bool,
    http10: bool,
    expect_continue: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    Malformed,
    Version,
}

enum BodyEnd {
    Complete,
    Timeout,
    Broken,
    BadFraming,
}

enum Read {
    Data,
    Eof,
    Timeout,
    Error,
}

struct Conn<'s, T> {
    io: T,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// Bytes after `pos` already searched for the end of the head.
    scanned: usize,
    info: ConnInfo,
    shared: &'s Arc<Shared>,
}

impl<T: Io> Conn<'_, T> {
    async fn run(&mut self) {
        let cfg = &self.shared.cfg;
        loop {
            // Between requests: CR LF left by a previous request are skipped (RFC 9112 §2.2).
            while self.pos < self.buf.len() && matches!(self.buf[self.pos], b'\r' | b'\n') {
                self.pos += 1;
            }
            if self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
                self.scanned = 0;
                // An idle connection holds no buffer (plain TCP waits for data without one).
                self.buf = Vec::new();
                if !self.wait_idle().await {
                    return self.close().await;
                }
            }
            let start_ts = now_us();
            let head_deadline = Instant::now() + cfg.header_timeout;
            let head_len = loop {
                if let Some(len) = self.head_end() {
                    break len;
                }
                if self.buf.len() - self.pos > cfg.max_head_bytes {
                    Counters::inc(&self.shared.stats.head_too_large);
                    return self.fail(R431).await;
                }
                if self.buf.len() > self.pos {
                    // A head in pieces: acknowledge them at once (see `Io::quickack`).
                    self.io.quickack();
                }
                match self.read(head_deadline, HEAD_READ).await {
                    Read::Data => {}
                    Read::Timeout => {
                        Counters::inc(&self.shared.stats.header_timeouts);
                        return self.close().await;
                    }
                    Read::Eof => {
                        // A partial head and then the end: not a request.
                        let partial = self.buf[self.pos..].iter().any(|b| !b.is_ascii_whitespace());
                        if partial {
                            Counters::inc(&self.shared.stats.parse_errors);
                        }
                        return;
                    }
                    Read::Error => return,
                }
            };
            if head_len > cfg.max_head_bytes {
                Counters::inc(&self.shared.stats.head_too_large);
                return self.fail(R431).await;
            }
            let head = parse_head(&self.buf[self.pos..self.pos + head_len]);
            self.pos += head_len;
            self.scanned = 0;
            let head = match head {
                Ok(head) => head,
                Err(e) => {
                    Counters::inc(&self.shared.stats.parse_errors);
                    return self.fail(if e == HeadError::Version { R505 } else { R400 }).await;
                }
            };
            if !self.info.allowed {
                Counters::inc(&self.shared.stats.refused);
                return self.fail(R403).await;
            }
            let Head { mut request, framing, keep_alive, http10, expect_continue } = head;
            request.start_ts = start_ts;
            let wants_body = framing != Framing::Length(0) && self.pos == self.buf.len();
            if expect_continue && wants_body && self.write(R100).await.is_err() {
                return;
            }
            let expected = match framing {
                Framing::Length(n) => Some(n),
                Framing::Chunked => None,
            };
            let mut body = BodyBuf::new(cfg.body_limit, expected, &self.shared.budget);
            let end = self.read_body(&framing, &mut body).await;
            request.end_ts = now_us();
            request.body_truncated = body.truncated();
            request.body_len = body.len;
            request.body = std::mem::take(&mut body.kept);
            if body.starved {
                Counters::inc(&self.shared.stats.budget_truncated);
            }
            drop(body);
            let shutting_down = self.shared.shutdown.borrow().is_some();
            match end {
                BodyEnd::Complete => {
                    let keep = keep_alive && !shutting_down;
                    let answer = match (keep, http10) {
                        (true, false) => R204_KEEP,
                        (true, true) => R204_KEEP_10,
                        (false, _) => R204_CLOSE,
                    };
                    let sent = self.write(answer).await;
                    if sent.is_ok() {
                        Counters::inc(&self.shared.stats.answered);
                    }
                    deliver(self.shared, &self.info, request);
                    if sent.is_err() {
                        return;
                    }
                    if !keep {
                        return self.close().await;
                    }
                }
                BodyEnd::Timeout | BodyEnd::Broken | BodyEnd::BadFraming => {
                    request.gap = true;
                    let stats = &self.shared.stats;
                    let answer = match end {
                        BodyEnd::Timeout => {
                            Counters::inc(&stats.body_timeouts);
                            Some(R204_CLOSE)
                        }
                        BodyEnd::BadFraming => {
                            Counters::inc(&stats.parse_errors);
                            Some(R400)
                        }
                        _ => {
                            Counters::inc(&stats.body_incomplete);
                            None
                        }
                    };
                    let sent = match answer {
                        Some(a) => self.write(a).await.is_ok(),
                        None => false,
                    };
                    if sent && answer == Some(R204_CLOSE) {
                        Counters::inc(&stats.answered);
                    }
                    deliver(self.shared, &self.info, request);
                    if sent {
                        self.linger_close().await;
                    }
                    return;
                }
            }
        }
    }

    /// Waits for the next request's first byte: false when the connection should close (idle
    /// timeout, shutdown, end of stream, error).
    async fn wait_idle(&mut self) -> bool {
        let mut shutdown = self.shared.shutdown.clone();
        if shutdown.borrow().is_some() {
            return false;
        }
        let idle = self.shared.cfg.idle_timeout;
        let io = &self.io;
        let ready = tokio::select! {
            r = tokio::time::timeout(idle, std::future::poll_fn(|cx| io.poll_readable(cx))) => matches!(r, Ok(Ok(()))),
            _ = shutdown.wait_for(Option::is_some) => false,
        };
        if !ready {
            return false;
        }
        // Readable: the bytes may still be only a FIN. For streams that cannot tell readiness, this
        // read is where the idle wait happens.
        let deadline = Instant::now() + idle;
        tokio::select! {
            r = self.read(deadline, HEAD_READ) => matches!(r, Read::Data),
            _ = shutdown.wait_for(Option::is_some) => false,
        }
    }

    /// The length of the head at `pos` once its empty line has arrived.
    fn head_end(&mut self) -> Option<usize> {
        let data = &self.buf[self.pos..];
        let from = self.scanned.saturating_sub(2);
        for lf in memchr::memchr_iter(b'\n', &data[from..]).map(|i| i + from) {
            match data.get(lf + 1) {
                Some(b'\n') => return Some(lf + 2),
                Some(b'\r') => match data.get(lf + 2) {
                    Some(b'\n') => return Some(lf + 3),
                    Some(_) => {}
                    None => break,
                },
                Some(_) => {}
                None => break,
            }
        }
        self.scanned = data.len();
        None
    }

    async fn read_body(&mut self, framing: &Framing, body: &mut BodyBuf) -> BodyEnd {
        let cfg = &self.shared.cfg;
        let (start_timeout, idle_timeout) = (cfg.body_start_timeout, cfg.body_timeout);
        // Until the first body byte, `body_start_timeout`; then `body_timeout` between reads.
        let mut started = self.pos < self.buf.len();
        match framing {
            Framing::Length(total) => {
                let mut left = *total;
                loop {
                    let avail = (self.buf.len() - self.pos) as u64;
                    let n = avail.min(left) as usize;
                    body.push(&self.buf[self.pos..self.pos + n]);
                    self.pos += n;
                    left -= n as u64;
                    if left == 0 {
                        return BodyEnd::Complete;
                    }
                    self.compact();
                    let want = usize::try_from(left).unwrap_or(usize::MAX).clamp(HEAD_READ, BODY_READ);
                    let timeout = if started { idle_timeout } else { start_timeout };
                    self.io.quickack();
                    match self.read(Instant::now() + timeout, want).await {
                        Read::Data => started = true,
                        Read::Timeout => return BodyEnd::Timeout,
                        Read::Eof | Read::Error => return BodyEnd::Broken,
                    }
                }
            }
            Framing::Chunked => {
                let mut dec = Chunked::new(self.shared.cfg.max_head_bytes);
                loop {
                    match dec.decode(&self.buf[self.pos..], body) {
                        Ok(n) => self.pos += n,
                        Err(_) => return BodyEnd::BadFraming,
                    }
                    if dec.is_done() {
                        return BodyEnd::Complete;
                    }
                    self.compact();
                    let timeout = if started { idle_timeout } else { start_timeout };
                    self.io.quickack();
                    match self.read(Instant::now() + timeout, BODY_READ).await {
                        Read::Data => started = true,
                        Read::Timeout => return BodyEnd::Timeout,
                        Read::Eof | Read::Error => return BodyEnd::Broken,
                    }
                }
            }
        }
    }

    /// Drops consumed bytes once everything is consumed (cheap) or most of the buffer is.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// One read of at most `want` more bytes, until `deadline`.
    async fn read(&mut self, deadline: Instant, want: usize) -> Read {
        if self.buf.capacity() - self.buf.len() < want / 2 {
            self.buf.reserve(want);
        }
        match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) => Read::Eof,
            Ok(Ok(_)) => Read::Data,
            Ok(Err(_)) => Read::Error,
            Err(_) => Read::Timeout,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let timeout = self.shared.cfg.header_timeout;
        let io = &mut self.io;
        let r = tokio::time::timeout(timeout, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await;
        r.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Answers an error and closes without resetting the answer away.
    async fn fail(&mut self, answer: &[u8]) {
        if self.write(answer).await.is_ok() {
            self.linger_close().await;
        }
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.io.shutdown()).await;
    }

    async fn linger_close(&mut self) {
        self.close().await;
        let io = &mut self.io;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            let mut scratch = vec![0u8; 4096];
            let mut seen = 0;
            while seen < LINGER_BYTES {
                match io.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen += n,
                }
            }
        })
        .await;
    }
}

fn has_token(headers: &[Header], name: &[u8], token: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Parses one complete head (request line, header lines, empty line).
fn parse_head(head: &[u8]) -> Result<Head, HeadError> {
    let lf = memchr::memchr(b'\n', head).ok_or(HeadError::Malformed)?;
    let line = &head[..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let sp = memchr::memchr(b' ', line).ok_or(HeadError::Malformed)?;
    let method = &line[..sp];
    let rest = line[sp..].trim_ascii_start();
    let last_sp = memchr::memrchr(b' ', rest).ok_or(HeadError::Malformed)?;
    let target = rest[..last_sp].trim_ascii_end();
    let version = &rest[last_sp + 1..];
    if !is_token(method) {
        return Err(HeadError::Malformed);
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(HeadError::Malformed);
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major == b'1' {
                false
            } else {
                return Err(HeadError::Version);
            }
        }
        _ => return Err(HeadError::Malformed),
    };
    let fields = &head[lf + 1..];
    let lines = memchr::memchr_iter(b'\n', fields).count();
    let mut parsed = vec![httparse::EMPTY_HEADER; lines];
    let headers: Vec<Header> = match httparse::parse_headers(fields, &mut parsed) {
        Ok(httparse::Status::Complete((_, hs))) => hs
            .iter()
            .map(|h| Header { name: h.name.as_bytes().to_vec(), value: h.value.trim_ascii().to_vec() })
            .collect(),
        _ => return Err(HeadError::Malformed),
    };

    let mut keep_alive = if http10 {
        has_token(&headers, b"connection", b"keep-alive") && !has_token(&headers, b"connection", b"close")
    } else {
        !has_token(&headers, b"connection", b"close")
    };
    let te: Vec<&[u8]> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"transfer-encoding"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .collect();
    let has_te = headers.iter().any(|h| h.name.eq_ignore_ascii_case(b"transfer-encoding"));
    let framing = if has_te {
        // RFC 9112 §6.3: chunked last → chunked (Content-Length ignored); anything else cannot be
        // framed. Both headers, or Transfer-Encoding in HTTP/1.0: close after answering.
        if !te.last().is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")) {
            return Err(HeadError::Malformed);
        }
        if http10 || headers.iter().any(|h| h.name.eq_ignore_ascii_case(b"content-length")) {
            keep_alive = false;
        }
        Framing::Chunked
    } else {
        let mut length: Option<u64> = None;
        for v in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(b"content-length"))
            .flat_map(|h| h.value.split(|&b| b == b','))
        {
            let v = v.trim_ascii();
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Malformed);
            }
            let n: u64 =
                std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or(HeadError::Malformed)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed);
            }
            length = Some(n);
        }
        Framing::Length(length.unwrap_or(0))
    };
    let expect_continue = !http10
        && headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(b"expect") && h.value.eq_ignore_ascii_case(b"100-continue"));
    let request = Request {
        method: method.to_vec(),
        target: target.to_vec(),
        protocol: if http10 { b"HTTP/1.0".to_vec() } else { b"HTTP/1.1".to_vec() },
        headers,
        ..Request::default()
    };
    Ok(Head { request, framing, keep_alive, http10, expect_continue })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = parse_head(b"GET /a?b=%20 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a:  2 \r\n\r\n").unwrap();
        assert_eq!(h.request.method, b"GET");
        assert_eq!(h.request.target, b"/a?b=%20");
        assert_eq!(h.request.protocol, b"HTTP/1.1");
        let names: Vec<_> =
            h.request.headers.iter().map(|h| (h.name.as_slice(), h.value.as_slice())).collect();
        assert_eq!(names, [(&b"Host"[..], &b"x"[..]), (b"X-A", b"1"), (b"x-a", b"2")]);
        assert_eq!(h.framing, Framing::Length(0));
        assert!(h.keep_alive && !h.http10);

        let h = parse_head(b"POST /\xc3\xa9 HTTP/1.0\nContent-Length: 5\nConnection: close\n\n").unwrap();
        assert_eq!(h.request.target, "/é".as_bytes());
        assert_eq!(h.framing, Framing::Length(5));
        assert!(!h.keep_alive && h.http10);
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        let h = parse_head(b"PUT http://x.example/p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
        let h =
            parse_head(b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive);
        let h =
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 4, 4\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Length(4));
        assert!(h.expect_continue);
        let h = parse_head(b"OPTIONS * HTTP/1.2\r\n\r\n").unwrap();
        assert_eq!(h.request.protocol, b"HTTP/1.1");
    }

    #[test]
    fn bad_heads() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET  HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(bad).err(),
                Some(HeadError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_head(b"GET / HTTP/3.0\r\n\r\n").err(), Some(HeadError::Version));
    }
}
