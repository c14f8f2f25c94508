//! Incremental accumulation of a message head, and lenient / strict parsing of start lines and headers.

use memchr::{memchr, memrchr2};

use crate::Header;

/// Bytes reserved when a head starts.
const HEAD_RESERVE: usize = 512;

/// What [`HeadReader::feed`] stopped on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadEvent {
    /// All input consumed, head not complete yet.
    NeedMore,
    /// The first (start) line just completed; the caller validates it before going on.
    FirstLine,
    /// The empty line ending the head was consumed.
    Done,
    /// The head would exceed the limit; the overflowing line was not consumed.
    TooLarge,
}

/// Result of an early, incremental check of a start line that is not complete yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefix {
    Pending,
    Ok,
    Bad,
}

/// Accumulates one head (start line, header lines, empty line) across chunks, copying each byte once
/// and scanning each byte once.
#[derive(Debug, Default)]
pub(crate) struct HeadReader {
    pub(crate) buf: Vec<u8>,
    /// Where the current, incomplete line starts in `buf`. Offsets are `u32` ([`MAX_HEAD`]): every
    /// connection has two readers, and `usize` offsets put every flow in a larger allocator size
    /// class (docs/performance.md, tenth pass).
    line_start: u32,
    /// Index just after the LF of the first line; 0 while the first line is incomplete.
    pub(crate) first_line_end: u32,
    /// Timestamp of the chunk that delivered the first byte.
    pub(crate) start_ts: u64,
    /// Early method check progress.
    checked: u32,
    method_done: bool,
}

/// A head is at most this long whatever the configured limit, so offsets into it fit a `u32`.
const MAX_HEAD: usize = u32::MAX as usize;

impl HeadReader {
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Memory held by the buffer.
    pub(crate) fn mem(&self) -> usize {
        self.buf.capacity()
    }

    /// Forgets the buffered head and releases its buffer. Releasing is also the faster choice: an
    /// idle keep-alive connection then holds no buffer, and the next head, of whichever flow, gets
    /// one that is still in cache from the allocator instead of its own cold one (docs/performance.md,
    /// tenth pass).
    pub(crate) fn clear(&mut self) {
        self.buf = Vec::new();
        self.line_start = 0;
        self.first_line_end = 0;
        self.checked = 0;
        self.method_done = false;
    }

    /// Drops the first `n` bytes of a head whose first line is complete (junk before a request line).
    pub(crate) fn drop_front(&mut self, n: usize) {
        let n = n.min(self.first_line_end as usize);
        self.buf.drain(..n);
        let n = n as u32;
        self.line_start -= n;
        self.first_line_end -= n;
        self.checked = self.checked.saturating_sub(n);
    }

    /// Takes the buffered bytes out, leaving the reader empty.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.buf);
        self.clear();
        buf
    }

    /// Consumes bytes of `data`; returns how many were consumed and why it stopped.
    /// Empty lines before the start line are skipped.
    pub(crate) fn feed(&mut self, data: &[u8], ts: u64, max: usize) -> (usize, HeadEvent) {
        let max = max.min(MAX_HEAD);
        let mut i = 0;
        if self.buf.is_empty() {
            while i < data.len() && (data[i] == b'\r' || data[i] == b'\n') {
                i += 1;
            }
            if i == data.len() {
                return (i, HeadEvent::NeedMore);
            }
            self.start_ts = ts;
            // Room for a typical head at once instead of growing by doublings line by line, each
            // copying the lines before (1.6% of a run); no more, since a connection waiting for
            // the rest of a head holds this buffer (a larger head grows from there).
            self.buf.reserve((data.len() - i).min(max).min(HEAD_RESERVE));
        }
        loop {
            let rest = &data[i..];
            match memchr(b'\n', rest) {
                None => {
                    if self.buf.len() + rest.len() > max {
                        return (i, HeadEvent::TooLarge);
                    }
                    self.buf.extend_from_slice(rest);
                    return (data.len(), HeadEvent::NeedMore);
                }
                Some(off) => {
                    if self.buf.len() + off + 1 > max {
                        return (i, HeadEvent::TooLarge);
                    }
                    let line_len = self.buf.len() - self.line_start as usize + off;
                    let empty = match line_len {
                        0 => true,
                        1 => {
                            let last =
                                if off > 0 { rest[off - 1] } else { self.buf.last().copied().unwrap_or(0) };
                            last == b'\r'
                        }
                        _ => false,
                    };
                    self.buf.extend_from_slice(&rest[..=off]);
                    i += off + 1;
                    // At most `max`, so within `MAX_HEAD`.
                    self.line_start = self.buf.len() as u32;
                    if self.first_line_end == 0 {
                        self.first_line_end = self.line_start;
                        return (i, HeadEvent::FirstLine);
                    }
                    if empty {
                        return (i, HeadEvent::Done);
                    }
                }
            }
        }
    }

    /// The first line without its line end (CR LF or LF); only valid once it is complete.
    pub(crate) fn first_line(&self) -> &[u8] {
        strip_cr(&self.buf[..(self.first_line_end as usize).saturating_sub(1)])
    }

    /// The header section (everything after the first line).
    pub(crate) fn header_section(&self) -> &[u8] {
        &self.buf[(self.first_line_end as usize).min(self.buf.len())..]
    }

    /// Incremental check that the start line begins with `token SP`; constant work per new byte.
    pub(crate) fn method_check(&mut self) -> Prefix {
        if self.method_done {
            return Prefix::Ok;
        }
        let end = if self.first_line_end == 0 { self.buf.len() } else { self.first_line_end as usize };
        while (self.checked as usize) < end {
            let b = self.buf[self.checked as usize];
            if b == b' ' {
                if self.checked == 0 {
                    return Prefix::Bad;
                }
                self.method_done = true;
                return Prefix::Ok;
            }
            if !is_tchar(b) {
                return Prefix::Bad;
            }
            self.checked += 1;
        }
        Prefix::Pending
    }

    /// Check that the start line begins like a status line (`HTTP/`, or `HTTP/1.` when strict).
    pub(crate) fn status_prefix_check(&self, strict: bool) -> Prefix {
        let pat: &[u8] = if strict { b"HTTP/1." } else { b"HTTP/" };
        let n = self.buf.len().min(pat.len());
        if self.buf[..n] != pat[..n] {
            Prefix::Bad
        } else if n == pat.len() {
            Prefix::Ok
        } else {
            Prefix::Pending
        }
    }
}

/// Whether `b` may be part of a token (RFC 9110 `tchar`): what methods and field names are made of.
pub fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// Whether `bytes` is a token (one or more [`is_tchar`] bytes), as a method must be.
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// Whether `b` may follow the first letter of a URI scheme (RFC 3986: letters, digits, `+-.`).
pub fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Whether `bytes` hold a control character ([`is_ctl`]), looked for eight bytes at a time:
/// request targets run to kilobytes, and the byte loop showed in profiles.
pub(crate) fn has_ctl(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let mut words = bytes.chunks_exact(8);
    let found = words.by_ref().any(|word| {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        // A byte below 0x20 (exact for bounds up to 0x80), or a byte equal to 0x7f.
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let del = w ^ (ONES * 0x7f);
        below_space | (del.wrapping_sub(ONES) & !del & HIGH) != 0
    });
    found || words.remainder().iter().any(|&b| is_ctl(b))
}

pub(crate) fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    trim_end(s)
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// `HTTP/d.d` → (major, minor).
fn parse_version(p: &[u8]) -> Option<(u8, u8)> {
    match p {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some((major - b'0', minor - b'0'))
        }
        _ => None,
    }
}

/// The parts of a request line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RequestLine<'a> {
    pub(crate) method: &'a [u8],
    pub(crate) target: &'a [u8],
    pub(crate) protocol: &'a [u8],
}

/// Lenient request line: `token SP+ target SP+ HTTP/1.x`; the target may contain spaces and bytes
/// 0x80-0xFF but no control bytes. `line` is without its LF (a trailing CR is ignored).
pub(crate) fn parse_request_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let line = trim_end(strip_cr(line));
    let m_end = line.iter().position(|&b| !is_tchar(b))?;
    if m_end == 0 || line[m_end] != b' ' {
        return None;
    }
    let rest = trim(&line[m_end..]);
    let p_start = memrchr2(b' ', b'\t', rest)? + 1;
    let protocol = &rest[p_start..];
    let target = trim_end(&rest[..p_start]);
    if target.is_empty() || has_ctl(target) {
        return None;
    }
    match parse_version(protocol) {
        Some((1, _)) => Some(RequestLine { method: &line[..m_end], target, protocol }),
        _ => None,
    }
}

/// Methods a request found by resynchronisation may have: the IANA registry plus common extensions.
/// Where the bytes before a lost head's end run into the next request line ("...CGET / HTTP/1.1"),
/// only a known method tells where the request starts.
const KNOWN_METHODS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"QUERY",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"MKACTIVITY",
    b"CHECKOUT",
    b"CHECKIN",
    b"UNCHECKOUT",
    b"MERGE",
    b"M-SEARCH",
    b"M-POST",
    b"NOTIFY",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PURGE",
    b"BAN",
    b"LINK",
    b"UNLINK",
    b"BIND",
    b"REBIND",
    b"UNBIND",
    b"ACL",
    b"MKCALENDAR",
    b"MKREDIRECTREF",
    b"UPDATEREDIRECTREF",
    b"VERSION-CONTROL",
    b"BASELINE-CONTROL",
    b"LABEL",
    b"UPDATE",
    b"MKWORKSPACE",
    b"ORDERPATCH",
    b"PRI",
];

/// Where a request line ends the line `line` (the bytes before it are the tail of a body whose length
/// was lost): `METHOD SP target SP HTTP/1.x` with a known method, which may follow other bytes
/// directly (`...}PUT /x HTTP/1.1`). Returns the offset of the method; `None` when there is no such
/// request line.
pub(crate) fn resync_start(line: &[u8]) -> Option<usize> {
    let line = strip_cr(line);
    let before = line.strip_suffix(b" HTTP/1.1").or_else(|| line.strip_suffix(b" HTTP/1.0"))?;
    let space = before.iter().rposition(|&b| b == b' ')?;
    let target = &before[space + 1..];
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let token_start = before[..space].iter().rposition(|&b| !is_tchar(b)).map_or(0, |p| p + 1);
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    if token_start > 0 && blank(&before[token_start - 1]) && !before[..token_start].iter().all(blank) {
        // `Name: GET / HTTP/1.1`: words in a header value or prose, not a glued request line; a
        // body's tail of blanks only (`… \n POST /x HTTP/1.1`) is no such word.
        return None;
    }
    let token = &before[token_start..space];
    (0..token.len()).find(|&at| KNOWN_METHODS.contains(&&token[at..])).map(|at| token_start + at)
}

/// The HTTP/2 connection preface line.
pub(crate) fn is_h2_preface(line: &[u8]) -> bool {
    strip_cr(line) == b"PRI * HTTP/2.0"
}

/// The parts of a status line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StatusLine<'a> {
    pub(crate) protocol: &'a [u8],
    pub(crate) status: u16,
    pub(crate) reason: &'a [u8],
}

/// Lenient status line: `HTTP/1.x SP+ 3DIGIT [SP reason]`.
pub(crate) fn parse_status_line(line: &[u8]) -> Option<StatusLine<'_>> {
    let line = trim_end(strip_cr(line));
    if line.len() < 8 {
        return None;
    }
    let protocol = &line[..8];
    if !matches!(parse_version(protocol), Some((1, _))) {
        return None;
    }
    let rest = &line[8..];
    if !rest.first().is_some_and(|&b| is_ws(b)) {
        return None;
    }
    let rest = trim(rest);
    let (code, reason) = match rest {
        [a, b, c] => ([*a, *b, *c], &rest[3..]),
        [a, b, c, sep, ..] if is_ws(*sep) => ([*a, *b, *c], trim(&rest[4..])),
        _ => return None,
    };
    if !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return None;
    }
    let status = code.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    Some(StatusLine { protocol, status, reason })
}

/// Strict status line used to find a response boundary again:
/// `HTTP/1.0|HTTP/1.1 SP 3DIGIT [SP reason]`.
pub(crate) fn is_strict_status_line(line: &[u8]) -> bool {
    let line = strip_cr(line);
    if line.len() < 12 || !matches!(&line[..9], b"HTTP/1.1 " | b"HTTP/1.0 ") {
        return false;
    }
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return false;
    }
    match &line[12..] {
        [] => true,
        [b' ', reason @ ..] => reason.iter().all(|&b| b == b'\t' || !is_ctl(b)),
        _ => false,
    }
}

/// Parses the header section (up to the empty line). Obsolete line folding is joined to the previous
/// value with one space. `None` when a line has no colon or an empty name.
pub(crate) fn parse_headers(section: &[u8]) -> Option<Vec<Header>> {
    let mut headers: Vec<Header> = Vec::with_capacity(memchr::memchr_iter(b'\n', section).count());
    let mut pos = 0;
    while pos < section.len() {
        let end = memchr(b'\n', &section[pos..]).map_or(section.len(), |o| pos + o);
        let line = strip_cr(&section[pos..end]);
        pos = end + 1;
        let Some(&first) = line.first() else { break };
        if is_ws(first) {
            // obs-fold; a continuation before any header is ignored (RFC 9112 section 2.2)
            if let Some(h) = headers.last_mut() {
                let v = trim(line);
                if !v.is_empty() {
                    if !h.value.is_empty() {
                        h.value.push(b' ');
                    }
                    h.value.extend_from_slice(v);
                }
            }
            continue;
        }
        let colon = memchr(b':', line)?;
        let name = trim_end(&line[..colon]);
        if name.is_empty() {
            return None;
        }
        headers.push(Header { name: name.to_vec(), value: trim(&line[colon + 1..]).to_vec() });
    }
    Some(headers)
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Comma-separated list items, trimmed, empty ones skipped.
fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
}

/// Body framing from the headers (RFC 9112 section 6.3). `Err` when the length cannot be determined
/// safely (conflicting or invalid Content-Length, or a request Transfer-Encoding not ending in chunked).
pub(crate) fn body_framing(headers: &[Header], request: bool) -> Result<BodyKind, ()> {
    let mut te_last: Option<&[u8]> = None;
    let mut te_only_identity = true;
    let mut cl: Option<u64> = None;
    let mut cl_bad = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case(b"transfer-encoding") {
            for item in list_items(&h.value) {
                if !item.eq_ignore_ascii_case(b"identity") {
                    te_only_identity = false;
                }
                te_last = Some(item);
            }
        } else if h.name.eq_ignore_ascii_case(b"content-length") {
            let mut any = false;
            for item in h.value.split(|&b| b == b',').map(trim) {
                any = true;
                match parse_decimal(item) {
                    Some(v) if cl.is_none_or(|c| c == v) => cl = Some(v),
                    _ => cl_bad = true,
                }
            }
            if !any {
                cl_bad = true;
            }
        }
    }
    if !te_only_identity {
        if te_last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")) {
            return Ok(BodyKind::Chunked);
        }
        return if request { Err(()) } else { Ok(BodyKind::UntilClose) };
    }
    if cl_bad {
        return Err(());
    }
    Ok(match cl {
        Some(0) => BodyKind::None,
        Some(n) => BodyKind::Length(n),
        None if request => BodyKind::None,
        None => BodyKind::UntilClose,
    })
}

/// True when the request asks for a protocol switch (`Upgrade` + `Connection: upgrade`).
pub(crate) fn wants_upgrade(headers: &[Header]) -> bool {
    let has_upgrade = headers.iter().any(|h| h.name.eq_ignore_ascii_case(b"upgrade"));
    has_upgrade
        && headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(b"connection")
                && list_items(&h.value).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let l = parse_request_line(b"GET /a?b=1 HTTP/1.1\r").unwrap();
        assert_eq!((l.method, l.target, l.protocol), (&b"GET"[..], &b"/a?b=1"[..], &b"HTTP/1.1"[..]));
        assert!(parse_request_line(b"m-search * HTTP/1.1").is_some());
        assert!(parse_request_line(b"GET http://x.example/ HTTP/1.0").is_some());
        assert_eq!(parse_request_line(b"GET /a b HTTP/1.1").unwrap().target, b"/a b");
        assert!(parse_request_line(b"GET /\xff\x80 HTTP/1.1").is_some());
        assert!(parse_request_line(b"GET /").is_none());
        assert!(parse_request_line(b"GET / HTTP/2.0").is_none());
        assert!(parse_request_line(b"GET /\x01 HTTP/1.1").is_none());
        assert!(parse_request_line(b" GET / HTTP/1.1").is_none());
        assert!(parse_request_line(b"HTTP/1.1 200 OK").is_none());
        assert_eq!(resync_start(b"PURGE /x HTTP/1.1\r"), Some(0));
        assert_eq!(resync_start(b"{\"a\":1}PUT /x HTTP/1.0"), Some(7));
        assert_eq!(resync_start(b"junkGET /x HTTP/1.1"), Some(4));
        assert_eq!(resync_start(b"get /x HTTP/1.0"), None, "methods are case-sensitive");
        assert_eq!(resync_start(b"GET  /x HTTP/1.1"), None);
        assert_eq!(resync_start(b"GET /x HTTP/1.2"), None);
        assert_eq!(resync_start(b"GET /x HTTP/1.1 "), None);
        assert_eq!(resync_start(b"Referer: GET /x HTTP/1.1"), None, "a header value is not a request");
        assert_eq!(resync_start(b"XYZZY /x HTTP/1.1"), None);
        assert_eq!(resync_start(b" POST /x HTTP/1.1\r"), Some(1), "a body's text ended in a blank");
        assert_eq!(resync_start(b" \t GET /x HTTP/1.0"), Some(3));
        assert_eq!(resync_start(b"lorem ipsum GET /x HTTP/1.1"), None, "prose is not a request");
    }

    #[test]
    fn status_lines() {
        let s = parse_status_line(b"HTTP/1.1 404 Not Found\r").unwrap();
        assert_eq!((s.status, s.reason), (404, &b"Not Found"[..]));
        assert_eq!(parse_status_line(b"HTTP/1.0 200").unwrap().reason, b"");
        assert_eq!(parse_status_line(b"HTTP/1.1 200 ").unwrap().status, 200);
        assert!(parse_status_line(b"HTTP/1.1 20").is_none());
        assert!(parse_status_line(b"HTTP/1.1 2000").is_none());
        assert!(parse_status_line(b"HTTP/1.1 099 x").is_none());
        assert!(is_strict_status_line(b"HTTP/1.1 200 OK\r"));
        assert!(is_strict_status_line(b"HTTP/1.0 204"));
        assert!(!is_strict_status_line(b"HTTP/1.1 200OK"));
    }

    #[test]
    fn framing() {
        let h = |pairs: &[(&str, &str)]| -> Vec<Header> {
            pairs
                .iter()
                .map(|(n, v)| Header { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() })
                .collect()
        };
        assert_eq!(body_framing(&h(&[("Content-Length", "5")]), true), Ok(BodyKind::Length(5)));
        assert_eq!(
            body_framing(&h(&[("content-length", "5, 5"), ("Content-Length", "5")]), true),
            Ok(BodyKind::Length(5))
        );
        assert_eq!(body_framing(&h(&[("Content-Length", "5"), ("Content-Length", "6")]), true), Err(()));
        assert_eq!(body_framing(&h(&[("Content-Length", "x")]), true), Err(()));
        assert_eq!(body_framing(&h(&[("Content-Length", "")]), true), Err(()));
        assert_eq!(
            body_framing(&h(&[("Transfer-Encoding", "gzip, CHUNKED"), ("Content-Length", "3")]), true),
            Ok(BodyKind::Chunked)
        );
        assert_eq!(body_framing(&h(&[("Transfer-Encoding", "chunked, gzip")]), true), Err(()));
        assert_eq!(body_framing(&h(&[("Transfer-Encoding", "gzip")]), false), Ok(BodyKind::UntilClose));
        assert_eq!(body_framing(&h(&[]), true), Ok(BodyKind::None));
        assert_eq!(body_framing(&h(&[]), false), Ok(BodyKind::UntilClose));
        assert_eq!(body_framing(&h(&[("Content-Length", "0")]), false), Ok(BodyKind::None));
    }

    #[test]
    fn headers_fold_and_errors() {
        let hs = parse_headers(b"A: 1\r\nB:2 \r\n  more\r\n\tstuff\r\nC : x\r\n\r\n").unwrap();
        assert_eq!(hs.len(), 3);
        assert_eq!(hs[1].value, b"2 more stuff");
        assert_eq!(hs[2].name, b"C");
        assert!(parse_headers(b"no colon\r\n\r\n").is_none());
        assert!(parse_headers(b": empty\r\n\r\n").is_none());
    }
}
