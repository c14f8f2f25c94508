//! Request body accumulation (limit, truncation) and an incremental chunked-transfer decoder.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Body bytes kept by all copies under way, against a ceiling: bounds memory whatever the number of
/// connections and HTTP/2 streams.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget { used: AtomicUsize::new(0), max })
    }

    /// Reserves up to `want` bytes; returns how many were granted.
    fn reserve(&self, want: usize) -> usize {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let grant = want.min(self.max.saturating_sub(used));
            if grant == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(used, used + grant, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return grant,
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The first `limit` decoded body bytes (as far as the shared [`Budget`] allows), and the full count.
/// The reservation is returned when the buffer is dropped, after its bytes were handed on.
#[derive(Debug)]
pub(crate) struct BodyBuf {
    pub kept: Vec<u8>,
    pub len: u64,
    limit: usize,
    budget: Arc<Budget>,
    reserved: usize,
    /// The budget, not `limit`, cut the body.
    pub starved: bool,
}

impl BodyBuf {
    /// A buffer keeping `limit` bytes; `expected` (a Content-Length) sizes the first allocation.
    pub fn new(limit: usize, expected: Option<u64>, budget: &Arc<Budget>) -> BodyBuf {
        let cap = expected.map_or(0, |e| e.min(limit as u64).min(1 << 20) as usize);
        let mut b =
            BodyBuf { kept: Vec::new(), len: 0, limit, budget: budget.clone(), reserved: 0, starved: false };
        let granted = b.budget.reserve(cap);
        b.reserved = granted;
        b.kept.reserve_exact(granted);
        b
    }

    pub fn push(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        let mut room = self.limit.saturating_sub(self.kept.len()).min(data.len());
        let free = self.reserved - self.kept.len().min(self.reserved);
        if room > free {
            let granted = self.budget.reserve(room - free);
            self.reserved += granted;
            if granted < room - free {
                self.starved = true;
                room = free + granted;
            }
        }
        self.kept.extend_from_slice(&data[..room]);
    }

    pub fn truncated(&self) -> bool {
        self.len > self.kept.len() as u64
    }
}

impl Drop for BodyBuf {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

/// Chunk framing error: the rest of the connection cannot be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size; `digits` seen so far.
    Size {
        digits: u8,
    },
    /// After the size: optional whitespace / `;extensions` up to LF.
    Ext,
    /// Chunk data left.
    Data(u64),
    /// CR LF after chunk data; `cr` whether the CR was seen.
    DataEnd {
        cr: bool,
    },
    /// Trailer section: `line` bytes of the current line so far.
    Trailer {
        line: usize,
    },
    Done,
}

/// Incremental decoder of a chunked body (RFC 9112 §7.1): sizes, extensions (ignored), data, the
/// trailer section (read and discarded). Line endings may be CRLF or bare LF.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    /// Bytes of the current size/extension line, and of the trailer section, bounded.
    line_bytes: usize,
    trailer_bytes: usize,
    max_line: usize,
    max_trailer: usize,
}

impl Chunked {
    pub fn new(max_trailer: usize) -> Chunked {
        Chunked {
            state: State::Size { digits: 0 },
            size: 0,
            line_bytes: 0,
            trailer_bytes: 0,
            max_line: 4096,
            max_trailer,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, pushing data to `body`; returns the bytes consumed. Stops right after
    /// the end of the trailer section (the next request's bytes are not consumed).
    pub fn decode(&mut self, input: &[u8], body: &mut BodyBuf) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Data(left) => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    body.push(&input[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataEnd { cr: false } } else { State::Data(left) };
                }
                State::Size { digits } => {
                    let b = input[i];
                    i += 1;
                    self.line(1)?;
                    match hex(b) {
                        Some(v) => {
                            if self.size > (u64::MAX >> 4) {
                                return Err(ChunkError);
                            }
                            self.size = (self.size << 4) | u64::from(v);
                            self.state = State::Size { digits: digits.saturating_add(1) };
                        }
                        None if digits == 0 => return Err(ChunkError),
                        None => match b {
                            b'\n' => self.end_size_line(),
                            b';' | b' ' | b'\t' | b'\r' => self.state = State::Ext,
                            _ => return Err(ChunkError),
                        },
                    }
                }
                State::Ext => {
                    // Extensions are skipped up to LF (a CR is only a line-ending byte here).
                    match memchr::memchr(b'\n', &input[i..]) {
                        Some(p) => {
                            self.line(p + 1)?;
                            i += p + 1;
                            self.end_size_line();
                        }
                        None => {
                            self.line(input.len() - i)?;
                            i = input.len();
                        }
                    }
                }
                State::DataEnd { cr } => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'\r' if !cr => self.state = State::DataEnd { cr: true },
                        b'\n' => self.state = State::Size { digits: 0 },
                        _ => return Err(ChunkError),
                    }
                }
                State::Trailer { line } => {
                    let b = input[i];
                    i += 1;
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > self.max_trailer {
                        return Err(ChunkError);
                    }
                    self.state = match b {
                        b'\n' if line == 0 => State::Done,
                        b'\n' => State::Trailer { line: 0 },
                        // A CR that starts a line does not make it non-empty.
                        b'\r' if line == 0 => State::Trailer { line: 0 },
                        _ => State::Trailer { line: line + 1 },
                    };
                }
            }
        }
        Ok(i)
    }

    fn line(&mut self, n: usize) -> Result<(), ChunkError> {
        self.line_bytes += n;
        if self.line_bytes > self.max_line { Err(ChunkError) } else { Ok(()) }
    }

    fn end_size_line(&mut self) {
        self.line_bytes = 0;
        self.state = if self.size == 0 { State::Trailer { line: 0 } } else { State::Data(self.size) };
        self.size = 0;
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(wire: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = Chunked::new(1024);
        let budget = Budget::new(usize::MAX);
        let mut body = BodyBuf::new(usize::MAX, None, &budget);
        let mut used = 0;
        for piece in wire.chunks(step.max(1)) {
            let n = d.decode(piece, &mut body)?;
            used += n;
            if d.is_done() {
                break;
            }
        }
        Ok((std::mem::take(&mut body.kept), used, d.is_done()))
    }

    #[test]
    fn chunked_in_any_pieces() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: a\r\n\r\nGET /next";
        for step in [1, 2, 3, 7, 100] {
            let (body, used, done) = decode_all(wire, step).unwrap();
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
            assert!(done);
            assert_eq!(&wire[used..], b"GET /next", "step {step}");
        }
        let (body, _, done) = decode_all(b"3\nabc\n0\n\n", 1).unwrap();
        assert_eq!((body.as_slice(), done), (&b"abc"[..], true));
        let (body, _, done) = decode_all(b"A\r\n0123456789\r\n0\r\n", 100).unwrap();
        assert_eq!((body.len(), done), (10, false));
    }

    #[test]
    fn chunked_errors() {
        for bad in [&b"x\r\n"[..], b"3\r\nabcX", b"fffffffffffffffff\r\n", b"-1\r\n", b"\r\n"] {
            assert!(decode_all(bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long_ext = [b"1;".as_slice(), &[b'a'; 5000]].concat();
        assert!(decode_all(&long_ext, 64).is_err());
        let long_trailer = [b"0\r\n".as_slice(), &[b'a'; 2000]].concat();
        assert!(decode_all(&long_trailer, 64).is_err());
    }

    #[test]
    fn body_limit_truncates() {
        let budget = Budget::new(1 << 20);
        let mut b = BodyBuf::new(4, Some(10), &budget);
        b.push(b"abc");
        b.push(b"defg");
        assert_eq!((b.kept.as_slice(), b.len, b.truncated(), b.starved), (&b"abcd"[..], 7, true, false));
        let mut b = BodyBuf::new(4, None, &budget);
        b.push(b"abcd");
        assert!(!b.truncated());
    }

    #[test]
    fn budget_bounds_all_bodies_together() {
        let budget = Budget::new(10);
        let mut a = BodyBuf::new(100, Some(6), &budget);
        let mut b = BodyBuf::new(100, None, &budget);
        a.push(b"123456");
        b.push(b"abcdefgh");
        assert_eq!((a.kept.len(), b.kept.len()), (6, 4));
        assert!(b.starved && b.truncated() && !a.starved);
        assert_eq!(budget.used.load(Ordering::Relaxed), 10);
        drop(a);
        let mut c = BodyBuf::new(100, None, &budget);
        c.push(b"xyz");
        assert_eq!(c.kept, b"xyz");
        drop((b, c));
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }
}
