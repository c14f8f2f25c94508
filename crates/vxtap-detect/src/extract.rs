//! Value extraction: finds the values of a request where applications read them (path, query
//! arguments, form, JSON, multipart, XML, cookies, headers) and names each one's location.
//!
//! All work is bounded by [`Limits`]: bytes of body looked at, number of values, JSON nesting depth and
//! bytes per value.

use std::borrow::Cow;

use memchr::{memchr, memmem};
use vxtap_http::{Request, is_scheme_char};

use crate::Limits;
use crate::normalize::char_floor;

/// Where a value came from; rules say which kinds they look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// The URL path, decoded (`path`).
    Path = 0,
    /// A query-string argument value (`args.NAME`).
    Arg,
    /// A query-string or form argument name (`args_names.NAME`).
    ArgName,
    /// An `application/x-www-form-urlencoded` body value (`form.NAME`).
    Form,
    /// A JSON string (or non-standard bare) value (`json.a.b[0]`).
    Json,
    /// A JSON object key (`json_keys.a.b`).
    JsonKey,
    /// The whole XML body (`xml`).
    Xml,
    /// XML text or attribute value (`xml.TAG`).
    XmlValue,
    /// A multipart part's content (`multipart.NAME`).
    Multipart,
    /// A multipart part's file name (`multipart.NAME.filename`).
    Filename,
    /// A cookie value (`cookies.NAME`).
    Cookie,
    /// A header attackers use (User-Agent, Referer, X-Forwarded-For, custom ones) (`headers.NAME`).
    Header,
    /// A standard, structured header (Accept, Content-Type, Authorization, …) (`headers.NAME`).
    StdHeader,
    /// A body not otherwise parsed (`body`).
    Body,
    /// The raw request-target as sent (`uri`); present only when it holds more than the path and query
    /// (absolute-form, a fragment).
    Uri,
    /// A header's name (`header_names.NAME`).
    HeaderName,
    /// The first bytes of a raw body or an uploaded file that is not text (`body`, `multipart.NAME`),
    /// as they are: for the checks of binary signatures. Its runs of text are inspected as `body` or
    /// `multipart` values.
    Binary,
}

/// Number of [`Kind`]s.
pub const KIND_COUNT: usize = 17;

impl Kind {
    /// The name used in the rules file's `targets`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Path => "path",
            Kind::Arg => "args",
            Kind::ArgName => "args_names",
            Kind::Form => "form",
            Kind::Json => "json",
            Kind::JsonKey => "json_keys",
            Kind::Xml => "xml",
            Kind::XmlValue => "xml_values",
            Kind::Multipart => "multipart",
            Kind::Filename => "filename",
            Kind::Cookie => "cookies",
            Kind::Header => "headers",
            Kind::StdHeader => "std_headers",
            Kind::Body => "body",
            Kind::Uri => "uri",
            Kind::HeaderName => "header_names",
            Kind::Binary => "binary",
        }
    }

    /// All kinds.
    pub const ALL: [Kind; KIND_COUNT] = [
        Kind::Path,
        Kind::Arg,
        Kind::ArgName,
        Kind::Form,
        Kind::Json,
        Kind::JsonKey,
        Kind::Xml,
        Kind::XmlValue,
        Kind::Multipart,
        Kind::Filename,
        Kind::Cookie,
        Kind::Header,
        Kind::StdHeader,
        Kind::Body,
        Kind::Uri,
        Kind::HeaderName,
        Kind::Binary,
    ];

    /// Bit of this kind in a target mask.
    pub fn bit(self) -> u32 {
        1 << (self as u8)
    }

    /// Whether `+` means a space in this kind of value.
    pub fn plus_is_space(self) -> bool {
        matches!(self, Kind::Arg | Kind::ArgName | Kind::Form)
    }
}

/// One value found in a request.
#[derive(Clone, Debug)]
pub struct Value<'a> {
    /// What it is.
    pub kind: Kind,
    /// Location prefix, e.g. `args`, `headers`, `json`.
    pub prefix: &'static str,
    /// Location name after the prefix (raw bytes: decoded and cleaned only by [`Value::loc`]).
    pub name: Cow<'a, [u8]>,
    /// How `name` is shown: URL-decoded (with `+` as space or not), or as is.
    name_decode: NameDecode,
    /// Bytes as found (for form and query values: still URL-encoded).
    pub raw: Cow<'a, [u8]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameDecode {
    AsIs,
    Lower,
    Url,
    UrlPlus,
}

impl Value<'_> {
    /// Location name as reported in findings, e.g. `args.q`, `headers.user-agent`, `json.a.b[0]`.
    pub fn loc(&self) -> String {
        let shown = match self.name_decode {
            NameDecode::AsIs => clean(&String::from_utf8_lossy(&self.name), 160),
            NameDecode::Lower => clean(&String::from_utf8_lossy(&self.name).to_ascii_lowercase(), 64),
            NameDecode::Url => display_name(&self.name, false),
            NameDecode::UrlPlus => display_name(&self.name, true),
        };
        if shown.is_empty() && self.name.is_empty() {
            self.prefix.to_string()
        } else {
            format!("{}.{shown}", self.prefix)
        }
    }

    /// True when this is a header value whose (case-insensitive) name is `name` (lower case).
    pub fn is_header(&self, name: &str) -> bool {
        matches!(self.kind, Kind::Header | Kind::StdHeader) && self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Headers whose values are structured and rarely carry a payload; only rules that target
/// `std_headers` (Log4Shell, Shellshock, CRLF, …) look at them.
const STD_HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "content-encoding",
    "content-disposition",
    "date",
    "dnt",
    "etag",
    "expect",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "pragma",
    "priority",
    "proxy-authorization",
    "range",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "upgrade-insecure-requests",
    "x-request-id",
    "x-amzn-trace-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-csrf-token",
    "x-xsrf-token",
    "x-requested-with",
];

/// Everyday non-structured headers: their values are inspected, their names are not worth a value.
const COMMON_HEADERS: &[&str] =
    &["host", "user-agent", "referer", "origin", "x-forwarded-for", "x-forwarded-proto", "x-real-ip"];

/// A readable location name: decoded, control characters dropped, at most 64 characters.
fn display_name(raw: &[u8], plus: bool) -> String {
    let mut buf = Vec::new();
    crate::normalize::url_decode_once(raw, plus, &mut buf);
    clean(&String::from_utf8_lossy(&buf), 64)
}

/// Collects the values of one request, respecting the limits.
pub(crate) struct Collector<'a> {
    pub(crate) values: Vec<Value<'a>>,
    limits: &'a Limits,
    budget: usize,
    /// Whether a limit on values or on their total bytes stopped the reading before the request's end.
    cut: bool,
}

impl<'a> Collector<'a> {
    fn new(limits: &'a Limits) -> Self {
        Collector { values: Vec::with_capacity(16), limits, budget: limits.max_total_bytes, cut: false }
    }

    /// Whether no value can be added.
    fn is_full(&self) -> bool {
        self.values.len() >= self.limits.max_values || self.budget == 0
    }

    /// Whether a reading loop stops here because no value can be added; the request counts as cut
    /// when what the loop had left, tested by `rest_holds_values` only then, holds a value.
    fn stop(&mut self, rest_holds_values: impl FnOnce() -> bool) -> bool {
        if !self.is_full() {
            return false;
        }
        self.cut |= rest_holds_values();
        true
    }

    fn push(
        &mut self,
        kind: Kind,
        prefix: &'static str,
        name: Cow<'a, [u8]>,
        nd: NameDecode,
        raw: Cow<'a, [u8]>,
    ) {
        if raw.is_empty() {
            return;
        }
        if self.is_full() {
            self.cut = true;
            return;
        }
        let cap = self.limits.max_value_bytes.min(self.budget);
        // a value longer than `max_value_bytes` is read that far by design; short of it, the total cut it
        self.cut |= raw.len() > cap && cap < self.limits.max_value_bytes;
        let raw = match raw {
            Cow::Borrowed(b) if b.len() > cap => Cow::Borrowed(&b[..cap]),
            Cow::Owned(mut v) if v.len() > cap => {
                v.truncate(cap);
                Cow::Owned(v)
            }
            r => r,
        };
        self.budget -= raw.len();
        self.values.push(Value { kind, prefix, name, name_decode: nd, raw });
    }

    fn push_pairs(&mut self, data: &'a [u8], sep: u8, kind: Kind, prefix: &'static str) {
        for pair in split(data, sep) {
            let (name, value) = match memchr(b'=', pair) {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            if name.is_empty() && value.is_empty() {
                continue;
            }
            if self.stop(|| true) {
                return;
            }
            let nd = if kind.plus_is_space() { NameDecode::UrlPlus } else { NameDecode::Url };
            if !name.is_empty() {
                self.push(Kind::ArgName, "args_names", Cow::Borrowed(name), nd, Cow::Borrowed(name));
            }
            self.push(kind, prefix, Cow::Borrowed(name), nd, Cow::Borrowed(value));
        }
    }
}

/// Content whose inspected part holds at least one control byte in this many is binary.
const BINARY_CONTROL_SHARE: usize = 32;
/// Shorter runs of text in binary content are not inspected. In random bytes (compressed or encrypted
/// data) runs of 8 or more come five times per 4 KiB and trip rules written for short values, runs of
/// 16 or more once per ~450 KiB; a line of code or a class name is longer.
const MIN_TEXT_RUN: usize = 16;

/// Whether a byte is an ASCII control character that text does not hold: NUL (UTF-16 text, NUL
/// evasions, removed by normalisation), tab, line breaks, vertical tab and form feed are text.
fn is_binary_control(b: u8) -> bool {
    b.is_ascii_control() && !matches!(b, 0 | b'\t'..=b'\r')
}

/// The runs of text in binary content: valid UTF-8 without binary control bytes, at least
/// [`MIN_TEXT_RUN`] bytes long.
fn text_runs(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.utf8_chunks()
        .flat_map(|chunk| chunk.valid().as_bytes().split(|&b| is_binary_control(b)))
        .filter(|run| run.len() >= MIN_TEXT_RUN)
}

impl<'a> Collector<'a> {
    /// Pushes a body's or a file's content: as one value when it is text; when it is binary (an
    /// image, compressed or encrypted data), as the runs of text in its first `max_value_bytes`,
    /// each its own value under the same location, then those bytes as a [`Kind::Binary`] value.
    /// Rules written for text find only noise in random bytes (one false alert per ~150 binary
    /// bodies of a few KiB when they were inspected whole), while code hidden in a file (a web shell
    /// in an image, class names in a serialised object) is a run of text.
    fn push_content(&mut self, kind: Kind, prefix: &'static str, name: Cow<'a, [u8]>, content: &'a [u8]) {
        let inspected = &content[..content.len().min(self.limits.max_value_bytes)];
        let controls = inspected.iter().filter(|&&b| is_binary_control(b)).count();
        if controls * BINARY_CONTROL_SHARE < inspected.len() || content.is_empty() {
            self.push(kind, prefix, name, NameDecode::AsIs, Cow::Borrowed(content));
            return;
        }
        for run in text_runs(inspected) {
            self.push(kind, prefix, name.clone(), NameDecode::AsIs, Cow::Borrowed(run));
        }
        // read only by checks of raw bytes, and at most `max_value_bytes`: not charged to the
        // request's byte budget, which bounds the text the rules scan
        if self.values.len() < self.limits.max_values {
            self.values.push(Value {
                kind: Kind::Binary,
                prefix,
                name,
                name_decode: NameDecode::AsIs,
                raw: Cow::Borrowed(inspected),
            });
        } else {
            self.cut = true;
        }
    }
}

/// `data.split(|&b| b == sep)`, with the separators found by `memchr` (a body's form data can be 64 KiB).
fn split(data: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        let (item, next) = match memchr(sep, r) {
            Some(p) => (&r[..p], Some(&r[p + 1..])),
            None => (r, None),
        };
        rest = next;
        Some(item)
    })
}

/// Splits a request-target into (path, query).
fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let mut t = target;
    // absolute-form: drop scheme://authority
    if let Some(p) = memmem::find(t, b"://")
        && t[..p].iter().all(|&b| is_scheme_char(b))
    {
        let after = &t[p + 3..];
        t = match after.iter().position(|&b| b == b'/' || b == b'?') {
            Some(s) => &after[s..],
            None => b"",
        };
    }
    let t = match memchr(b'#', t) {
        Some(h) => &t[..h],
        None => t,
    };
    match memchr(b'?', t) {
        Some(q) => (&t[..q], &t[q + 1..]),
        None => (t, b""),
    }
}

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r [u8]> {
    req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name.as_bytes())).map(|h| h.value.as_slice())
}

/// Every value of the request, in a fixed order: uri, path, query, headers and cookies, body; and
/// whether a limit on values or on their total bytes stopped the reading before the request's end.
pub(crate) fn collect<'a>(req: &'a Request, limits: &'a Limits) -> (Vec<Value<'a>>, bool) {
    let mut c = Collector::new(limits);
    let (path, query) = split_target(&req.target);
    // The raw target only adds something when it is more than path + query (absolute-form, fragment).
    if path.len() + query.len() + usize::from(!query.is_empty()) != req.target.len() {
        c.push(Kind::Uri, "uri", Cow::Borrowed(b""), NameDecode::AsIs, Cow::Borrowed(&req.target));
    }
    c.push(Kind::Path, "path", Cow::Borrowed(b""), NameDecode::AsIs, Cow::Borrowed(path));
    c.push_pairs(query, b'&', Kind::Arg, "args");
    // no early stop: a full collector refuses (and counts) each header value left
    for h in &req.headers {
        if h.name.eq_ignore_ascii_case(b"cookie") {
            for part in h.value.split(|&b| b == b';') {
                let part = trim(part);
                if part.is_empty() {
                    continue;
                }
                let (n, v) = match memchr(b'=', part) {
                    Some(eq) => (&part[..eq], &part[eq + 1..]),
                    None => (&b""[..], part),
                };
                let n = trim(n);
                c.push(Kind::Cookie, "cookies", Cow::Borrowed(n), NameDecode::Url, Cow::Borrowed(v));
                if !n.is_empty() {
                    c.push(
                        Kind::ArgName,
                        "cookies_names",
                        Cow::Borrowed(n),
                        NameDecode::Url,
                        Cow::Borrowed(n),
                    );
                }
            }
            continue;
        }
        let std =
            STD_HEADERS.iter().any(|s| s.len() == h.name.len() && h.name.eq_ignore_ascii_case(s.as_bytes()));
        let kind = if std { Kind::StdHeader } else { Kind::Header };
        let name = Cow::Borrowed(h.name.as_slice());
        if kind == Kind::Header && !COMMON_HEADERS.iter().any(|s| h.name.eq_ignore_ascii_case(s.as_bytes())) {
            c.push(Kind::HeaderName, "header_names", name.clone(), NameDecode::Lower, name.clone());
        }
        c.push(kind, "headers", name, NameDecode::Lower, Cow::Borrowed(&h.value));
    }
    collect_body(req, &mut c);
    (c.values, c.cut)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [f, rest @ ..] = s {
        if !f.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., l] = s {
        if !l.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

fn collect_body<'a>(req: &'a Request, c: &mut Collector<'a>) {
    if req.body.is_empty() {
        return;
    }
    let body = &req.body[..req.body.len().min(c.limits.max_body_bytes)];
    let ct = header(req, "content-type").map(|v| v.to_ascii_lowercase()).unwrap_or_default();
    let start = trim(body).first().copied().unwrap_or(0);
    let is = |s: &str| memmem::find(&ct, s.as_bytes()).is_some();
    if is("multipart/") {
        if let Some(boundary) = boundary(&ct, header(req, "content-type").unwrap_or_default()) {
            multipart(body, &boundary, c);
            return;
        }
    }
    if is("json") || (ct.is_empty() && (start == b'{' || start == b'[')) {
        if json(body, c) {
            return;
        }
    } else if is("xml") || ((ct.is_empty() || is("text/plain")) && start == b'<') {
        c.push(Kind::Xml, "xml", Cow::Borrowed(b""), NameDecode::AsIs, Cow::Borrowed(body));
        xml(body, c);
        return;
    } else if is("x-www-form-urlencoded")
        || (ct.is_empty() && memchr(b'=', body).is_some() && !body.iter().any(|&b| b == b'\n' || b == b' '))
    {
        c.push_pairs(body, b'&', Kind::Form, "form");
        return;
    }
    c.push_content(Kind::Body, "body", Cow::Borrowed(b""), body);
}

/// The multipart boundary parameter (case kept from the original header).
fn boundary(ct_lower: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
    let p = memmem::find(ct_lower, b"boundary=")? + 9;
    let rest = &ct[p..];
    let b = if rest.first() == Some(&b'"') {
        let end = memchr(b'"', &rest[1..])?;
        &rest[1..1 + end]
    } else {
        let end = rest.iter().position(|&b| b == b';' || b == b' ' || b == b',').unwrap_or(rest.len());
        &rest[..end]
    };
    (!b.is_empty()).then(|| b.to_vec())
}

fn disposition_param<'b>(headers: &'b [u8], lower: &[u8], key: &[u8]) -> Option<&'b [u8]> {
    let mut from = 0;
    while let Some(p) = memmem::find(&lower[from..], key) {
        let at = from + p;
        from = at + key.len();
        // must start a parameter: preceded by ';', ' ' or '\t'
        if at > 0 && !matches!(lower[at - 1], b';' | b' ' | b'\t') {
            continue;
        }
        let rest = &headers[at + key.len()..];
        return Some(if rest.first() == Some(&b'"') {
            let end = memchr(b'"', &rest[1..]).unwrap_or(rest.len() - 1);
            &rest[1..1 + end]
        } else {
            let end = rest.iter().position(|&b| b == b';' || b == b'\r' || b == b'\n').unwrap_or(rest.len());
            trim(&rest[..end])
        });
    }
    None
}

fn multipart<'a>(body: &'a [u8], boundary: &[u8], c: &mut Collector<'a>) {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delim);
    let mut positions = finder.find_iter(body).take(c.limits.max_values + 1).peekable();
    while let Some(start) = positions.next() {
        let part_start = start + delim.len();
        let part_end = positions.peek().copied().unwrap_or(body.len());
        let part = &body[part_start..part_end];
        if part.starts_with(b"--") || c.stop(|| true) {
            return;
        }
        let (head, content) = match memmem::find(part, b"\r\n\r\n") {
            Some(p) => (&part[..p], &part[p + 4..]),
            None => match memmem::find(part, b"\n\n") {
                Some(p) => (&part[..p], &part[p + 2..]),
                None => (part, &b""[..]),
            },
        };
        let content =
            content.strip_suffix(b"\r\n").or_else(|| content.strip_suffix(b"\n")).unwrap_or(content);
        let lower = head.to_ascii_lowercase();
        let name = disposition_param(head, &lower, b"name=").unwrap_or_default();
        let nm = Cow::Borrowed(name);
        if !name.is_empty() {
            c.push(Kind::ArgName, "multipart_names", nm.clone(), NameDecode::AsIs, nm.clone());
        }
        let filename = disposition_param(head, &lower, b"filename=")
            .or_else(|| disposition_param(head, &lower, b"filename*="));
        if let Some(f) = filename {
            let mut fname = name.to_vec();
            fname.extend_from_slice(b".filename");
            c.push(Kind::Filename, "multipart", Cow::Owned(fname), NameDecode::AsIs, Cow::Borrowed(f));
            c.push_content(Kind::Multipart, "multipart", nm, content);
        } else {
            // a form field: the application reads it as text
            c.push(Kind::Multipart, "multipart", nm, NameDecode::AsIs, Cow::Borrowed(content));
        }
    }
}

/// A small tolerant JSON walker: string values and keys with their paths; bare tokens that are not
/// numbers or literals are reported as values too. Returns false when the body does not start like JSON.
fn json<'a>(body: &'a [u8], c: &mut Collector<'a>) -> bool {
    enum Frame {
        Obj { key: String, expect_key: bool },
        Arr { idx: usize },
    }
    let max_depth = c.limits.max_json_depth;
    let mut stack: Vec<Frame> = Vec::new();
    let mut depth = 0usize; // real depth, may exceed the stack
    let mut i = 0;
    let start = trim(body);
    if !matches!(start.first(), Some(b'{' | b'[' | b'"')) {
        return false;
    }
    let path = |stack: &[Frame], last_key: Option<&str>| -> Vec<u8> {
        let mut p = String::new();
        for f in stack {
            match f {
                Frame::Obj { key, .. } => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(key);
                }
                Frame::Arr { idx } => {
                    p.push('[');
                    p.push_str(&idx.to_string());
                    p.push(']');
                }
            }
        }
        if let Some(k) = last_key {
            if !p.is_empty() {
                p.push('.');
            }
            p.push_str(k);
        }
        p.truncate(char_floor(&p, 160));
        p.into_bytes()
    };
    while i < body.len() {
        if c.stop(|| json_holds_values(&body[i..])) {
            break;
        }
        let b = body[i];
        match b {
            b'{' | b'[' => {
                depth += 1;
                if depth <= max_depth {
                    stack.push(if b == b'{' {
                        Frame::Obj { key: String::new(), expect_key: true }
                    } else {
                        Frame::Arr { idx: 0 }
                    });
                }
                i += 1;
            }
            b'}' | b']' => {
                if depth <= max_depth {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b',' => {
                if depth <= max_depth {
                    match stack.last_mut() {
                        Some(Frame::Obj { expect_key, .. }) => *expect_key = true,
                        Some(Frame::Arr { idx }) => *idx += 1,
                        None => {}
                    }
                }
                i += 1;
            }
            b':' => i += 1,
            b'"' => {
                let (s, len) = json_string(&body[i..]);
                i += len;
                let in_range = depth <= max_depth;
                let is_key = in_range && matches!(stack.last(), Some(Frame::Obj { expect_key: true, .. }));
                if is_key {
                    let key: String = String::from_utf8_lossy(&s).chars().take(48).collect();
                    let loc = path(&stack[..stack.len() - 1], Some(&key));
                    c.push(Kind::JsonKey, "json_keys", Cow::Owned(loc), NameDecode::AsIs, s);
                    if let Some(Frame::Obj { key: k, expect_key }) = stack.last_mut() {
                        *k = key;
                        *expect_key = false;
                    }
                } else {
                    let loc = if in_range { path(&stack, None) } else { path(&stack, Some("…")) };
                    c.push(Kind::Json, "json", Cow::Owned(loc), NameDecode::AsIs, s);
                }
            }
            _ if b.is_ascii_whitespace() => i += 1,
            _ => {
                let end = body[i..]
                    .iter()
                    .position(|&b| matches!(b, b',' | b'}' | b']' | b'\n'))
                    .map_or(body.len(), |p| i + p);
                let tok = trim(&body[i..end]);
                let plain = matches!(tok, b"true" | b"false" | b"null")
                    || tok
                        .iter()
                        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
                if !plain {
                    let loc = path(&stack, None);
                    c.push(Kind::Json, "json", Cow::Owned(loc), NameDecode::AsIs, Cow::Borrowed(tok));
                }
                i = end.max(i + 1);
            }
        }
    }
    true
}

/// Whether the rest of a JSON body holds more than brackets, separators and whitespace.
fn json_holds_values(rest: &[u8]) -> bool {
    rest.iter().any(|&b| !matches!(b, b'{' | b'}' | b'[' | b']' | b',' | b':') && !b.is_ascii_whitespace())
}

/// Whether the rest of an XML body holds more than closing tags, comments, declarations and
/// whitespace.
fn xml_holds_values(mut rest: &[u8]) -> bool {
    loop {
        rest = trim(rest);
        let closer = [(&b"</"[..], &b">"[..]), (b"<!--", b"-->"), (b"<?", b"?>")]
            .into_iter()
            .find(|(open, _)| rest.starts_with(open));
        let Some((open, close)) = closer else { return !rest.is_empty() };
        match memmem::find(&rest[open.len()..], close) {
            Some(end) => rest = &rest[open.len() + end + close.len()..],
            None => return false,
        }
    }
}

/// Decodes a JSON string starting at its opening quote; returns the decoded bytes and the length
/// consumed (up to and including the closing quote, or the end of input).
fn json_string(s: &[u8]) -> (Cow<'_, [u8]>, usize) {
    // fast path: no escapes
    let mut i = memchr::memchr2(b'"', b'\\', &s[1..]).map_or(s.len(), |p| p + 1);
    if i >= s.len() || s[i] == b'"' {
        return (Cow::Borrowed(&s[1..i.min(s.len())]), (i + 1).min(s.len()));
    }
    let mut out = s[1..i].to_vec();
    while i < s.len() {
        match s[i] {
            b'"' => return (Cow::Owned(out), i + 1),
            b'\\' => {
                let Some(&e) = s.get(i + 1) else { break };
                i += 2;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'u' => {
                        let hex = |h: Option<&[u8]>| {
                            h.and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                        };
                        if let Some(mut cp) = hex(s.get(i..i + 4)) {
                            i += 4;
                            if (0xd800..0xdc00).contains(&cp)
                                && s.get(i..i + 2) == Some(b"\\u")
                                && let Some(lo) = hex(s.get(i + 2..i + 6))
                                && (0xdc00..0xe000).contains(&lo)
                            {
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                i += 6;
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        } else {
                            out.extend_from_slice(b"\\u");
                        }
                    }
                    other => out.push(other),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    (Cow::Owned(out), s.len())
}

/// XML text nodes, CDATA and attribute values, located by their element name.
fn xml<'a>(body: &'a [u8], c: &mut Collector<'a>) {
    let mut i = 0;
    let mut tag: &[u8] = b"";
    while i < body.len() {
        if c.stop(|| xml_holds_values(&body[i..])) {
            break;
        }
        if body[i] == b'<' {
            if body[i..].starts_with(b"<![CDATA[") {
                let start = i + 9;
                let end = memmem::find(&body[start..], b"]]>").map_or(body.len(), |e| start + e);
                c.push(
                    Kind::XmlValue,
                    "xml",
                    Cow::Borrowed(tag),
                    NameDecode::AsIs,
                    Cow::Borrowed(trim(&body[start..end])),
                );
                i = end + 3;
                continue;
            }
            let end = memchr(b'>', &body[i..]).map_or(body.len(), |e| i + e);
            let inner = &body[i + 1..end];
            if !matches!(inner.first(), Some(b'/' | b'!' | b'?')) {
                let name_end =
                    inner.iter().position(|b| b.is_ascii_whitespace() || *b == b'/').unwrap_or(inner.len());
                tag = &inner[..name_end.min(64)];
                // attribute values
                let mut rest = &inner[name_end..];
                while let Some(q) = rest.iter().position(|&b| b == b'"' || b == b'\'') {
                    let quote = rest[q];
                    let Some(close) = memchr(quote, &rest[q + 1..]) else { break };
                    let eq = rest[..q].iter().rposition(|&b| b == b'=');
                    let attr = eq.map_or(&b""[..], |e| {
                        let a = trim(&rest[..e]);
                        let s = a.iter().rposition(|b| b.is_ascii_whitespace()).map_or(0, |p| p + 1);
                        &a[s..]
                    });
                    let mut loc = tag.to_vec();
                    loc.push(b'.');
                    loc.extend_from_slice(attr);
                    c.push(
                        Kind::XmlValue,
                        "xml",
                        Cow::Owned(loc),
                        NameDecode::AsIs,
                        Cow::Borrowed(&rest[q + 1..q + 1 + close]),
                    );
                    rest = &rest[q + 2 + close..];
                }
            }
            i = end + 1;
        } else {
            let end = memchr(b'<', &body[i..]).map_or(body.len(), |e| i + e);
            let text = trim(&body[i..end]);
            if !text.is_empty() {
                c.push(Kind::XmlValue, "xml", Cow::Borrowed(tag), NameDecode::AsIs, Cow::Borrowed(text));
            }
            i = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vxtap_http::Header;

    fn req(target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        Request {
            method: b"POST".to_vec(),
            target: target.as_bytes().to_vec(),
            protocol: b"HTTP/1.1".to_vec(),
            headers: headers
                .iter()
                .map(|(n, v)| Header { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() })
                .collect(),
            body: body.to_vec(),
            body_len: body.len() as u64,
            ..Request::default()
        }
    }

    fn locs(r: &Request) -> Vec<(Kind, String, String)> {
        let limits = Limits::default();
        collect(r, &limits)
            .0
            .into_iter()
            .map(|v| (v.kind, v.loc(), String::from_utf8_lossy(&v.raw).into_owned()))
            .collect()
    }

    #[test]
    fn path_query_headers_cookies() {
        let r = req(
            "http://h.example/a/b?q=1+2&x&n%61me=v#frag",
            &[("User-Agent", "ua"), ("Accept", "*/*"), ("Cookie", "sid=abc; theme=dark")],
            b"",
        );
        let l = locs(&r);
        assert!(l.contains(&(Kind::Path, "path".into(), "/a/b".into())));
        assert!(l.contains(&(Kind::Arg, "args.q".into(), "1+2".into())));
        assert!(l.contains(&(Kind::ArgName, "args_names.x".into(), "x".into())));
        assert!(l.contains(&(Kind::Arg, "args.name".into(), "v".into())));
        assert!(l.contains(&(Kind::Header, "headers.user-agent".into(), "ua".into())));
        assert!(l.contains(&(Kind::StdHeader, "headers.accept".into(), "*/*".into())));
        assert!(l.contains(&(Kind::Cookie, "cookies.theme".into(), "dark".into())));
    }

    #[test]
    fn json_nested() {
        let r = req(
            "/api",
            &[("Content-Type", "application/json")],
            br#"{"user":{"name":"a\u0027b","tags":["x",{"k":"v"}],"n":1,"$where":"1"},"bad": 1 or 1}"#,
        );
        let l = locs(&r);
        assert!(l.contains(&(Kind::Json, "json.user.name".into(), "a'b".into())), "{l:?}");
        assert!(l.contains(&(Kind::Json, "json.user.tags[0]".into(), "x".into())));
        assert!(l.contains(&(Kind::Json, "json.user.tags[1].k".into(), "v".into())));
        assert!(l.contains(&(Kind::JsonKey, "json_keys.user.$where".into(), "$where".into())));
        assert!(l.contains(&(Kind::Json, "json.bad".into(), "1 or 1".into())));
    }

    #[test]
    fn json_depth_bounded() {
        let mut body = "[".repeat(10_000);
        body.push_str("\"deep\"");
        let r = req("/", &[("Content-Type", "application/json")], body.as_bytes());
        let l = locs(&r);
        assert!(l.iter().any(|(k, _, v)| *k == Kind::Json && v == "deep"));
    }

    #[test]
    fn multipart_parts_and_filenames() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"../../a.php\"\r\nContent-Type: text/plain\r\n\r\n\
<?php echo 1; ?>\r\n--XyZ--\r\n";
        let r = req("/up", &[("Content-Type", "multipart/form-data; boundary=XyZ")], body);
        let l = locs(&r);
        assert!(l.contains(&(Kind::Multipart, "multipart.title".into(), "hello".into())), "{l:?}");
        assert!(l.contains(&(Kind::Filename, "multipart.file.filename".into(), "../../a.php".into())));
        assert!(l.contains(&(Kind::Multipart, "multipart.file".into(), "<?php echo 1; ?>".into())));
    }

    #[test]
    fn binary_content_is_its_first_bytes_and_its_runs_of_text() {
        let run = "GIF89a <?php eval($_POST[1]); ?>";
        let mut body = b"\x01\x02\x03 short \xff\xfe\x04".repeat(20);
        body.extend_from_slice(run.as_bytes());
        body.extend_from_slice(b"\x05\x06\xc3(fifteen bytes\x07");
        let l = locs(&req("/b", &[], &body));
        let binary = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(
            l,
            [
                (Kind::Path, "path".into(), "/b".into()),
                (Kind::Body, "body".into(), run.into()),
                (Kind::Binary, "body".into(), binary)
            ]
        );
        // text: NUL (UTF-16), tabs, line breaks and bytes that are not UTF-8 do not make it binary,
        // nor does one control byte in 33
        for text in
            [&b"u\0n\0i\0o\0n\0"[..], b"a\tb\r\nc\x0b\x0c\xc0\xaf", &[&[1u8][..], &[b'a'; 32]].concat()]
        {
            let l = locs(&req("/t", &[], text));
            assert_eq!(l[1], (Kind::Body, "body".into(), String::from_utf8_lossy(text).into_owned()));
        }
        // one control byte in 32 (a DEL here) makes it binary; a byte that is not UTF-8 ends a run,
        // so two runs of 15 around one are not inspected
        let kinds =
            |body: &[u8]| locs(&req("/t", &[], body))[1..].iter().map(|(k, _, _)| *k).collect::<Vec<_>>();
        assert_eq!(kinds(&[&[0x7f][..], &[b'a'; 31]].concat()), [Kind::Body, Kind::Binary]);
        assert_eq!(kinds(&[&[1u8][..], &[b'a'; 15], b"\xff", &[b'b'; 15]].concat()), [Kind::Binary]);
        let l = locs(&req("/t", &[], &[&[1u8][..], &[b'a'; 31]].concat()));
        assert_eq!(
            l[1..],
            [
                (Kind::Body, "body".into(), "a".repeat(31)),
                (Kind::Binary, "body".into(), format!("\u{1}{}", "a".repeat(31)))
            ]
        );
        // a binary value's runs of text are found within its first bytes only
        let mut late = vec![1u8; Limits::default().max_value_bytes];
        late.extend_from_slice(run.as_bytes());
        assert!(!locs(&req("/l", &[], &late)).iter().any(|(k, _, _)| *k == Kind::Body));
    }

    #[test]
    fn xml_values() {
        let body = br#"<?xml version="1.0"?><a><b id="7">text</b><c><![CDATA[raw <x>]]></c></a>"#;
        let r = req("/x", &[("Content-Type", "application/xml")], body);
        let l = locs(&r);
        assert!(l.iter().any(|(k, _, _)| *k == Kind::Xml));
        assert!(l.contains(&(Kind::XmlValue, "xml.b".into(), "text".into())), "{l:?}");
        assert!(l.contains(&(Kind::XmlValue, "xml.b.id".into(), "7".into())));
        assert!(l.contains(&(Kind::XmlValue, "xml.c".into(), "raw <x>".into())));
    }

    #[test]
    fn split_matches_slice_split() {
        for d in [&b""[..], b"&", b"a", b"a=1&b=2", b"&&a&", b"x=%26&&"] {
            assert!(split(d, b'&').eq(d.split(|&b| b == b'&')), "{d:?}");
        }
    }

    #[test]
    fn form_body_and_limits() {
        let r = req("/f", &[("Content-Type", "application/x-www-form-urlencoded")], b"a=1&b=%27x");
        let l = locs(&r);
        assert!(l.contains(&(Kind::Form, "form.b".into(), "%27x".into())));
        let many: String = (0..5000).map(|i| format!("p{i}=v&")).collect();
        let r = req(&format!("/?{many}"), &[], b"");
        assert!(locs(&r).len() <= Limits::default().max_values);
    }
}
