//! Turning a captured request into the bytes sent to the target: the header policy.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use vxtap_http::{is_scheme_char, is_token};

use crate::config::AddedHeaders;
use crate::job::ReplayJob;

/// Headers that belong to one connection (RFC 9110 section 7.6.1), besides those named in `Connection`.
/// `Transfer-Encoding` is handled with the framing.
const HOP_BY_HOP: [&[u8]; 6] =
    [b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade"];

/// The response headers added by [`ReplayConfig::add_response_headers`](crate::ReplayConfig).
pub(crate) const RESPONSE_STATUS: &str = "X-Vxtap-Response-Status";
pub(crate) const RESPONSE_LENGTH: &str = "X-Vxtap-Response-Length";
pub(crate) const RESPONSE_TIME: &str = "X-Vxtap-Response-Time-Us";

/// Why a captured request cannot be put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    Method,
    Target,
    HeaderName,
    HeaderValue,
}

/// What the encoder needs from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub(crate) headers: AddedHeaders,
    pub(crate) response_headers: bool,
}

/// Unique request ids: 32 lowercase hex digits (as nginx's `$request_id`). The first half is random
/// per process, the second a bijective mix of a counter, so ids never repeat within a process and
/// collide across processes only by chance (2^-64).
#[derive(Debug)]
pub(crate) struct RequestIds {
    prefix: u64,
    key: u64,
    counter: AtomicU64,
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        h.write_u32(std::process::id());
        let a = h.finish();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        let b = h.finish();
        RequestIds { prefix: mix(a), key: mix(b), counter: AtomicU64::new(0) }
    }

    pub(crate) fn next(&self) -> [u8; 32] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; 32];
        hex16(self.prefix, &mut out[..16]);
        hex16(mix(n ^ self.key), &mut out[16..]);
        out
    }
}

/// SplitMix64's finaliser: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex16(v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Splits an absolute-form target (`scheme://authority/path?query`) into authority and the rest.
fn split_absolute(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *target.first()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let colon = target.iter().position(|&b| !is_scheme_char(b))?;
    let rest = target[colon..].strip_prefix(b"://")?;
    let end = rest.iter().position(|&b| b == b'/' || b == b'?' || b == b'#').unwrap_or(rest.len());
    Some((&rest[..end], &rest[end..]))
}

/// Writes the request-target: origin-form for an absolute-form target, bytes that cannot stand in a
/// request line (controls, space, DEL) percent-encoded, every other byte (non-UTF-8 too) as captured.
/// Returns the authority of an absolute-form target.
fn write_target<'a>(target: &'a [u8], out: &mut Vec<u8>) -> Result<Option<&'a [u8]>, Invalid> {
    if target.is_empty() {
        return Err(Invalid::Target);
    }
    let (authority, path) = match split_absolute(target) {
        Some((a, p)) => (Some(a), p),
        None => (None, target),
    };
    if authority.is_some() && !path.starts_with(b"/") {
        out.push(b'/');
    }
    for &b in path {
        if b <= b' ' || b == 0x7f {
            write!(out, "%{b:02X}").map_err(|_| Invalid::Target)?;
        } else {
            out.push(b);
        }
    }
    // Host for an absolute-form target without a Host header: the authority without user information.
    Ok(authority.map(|a| match a.iter().rposition(|&b| b == b'@') {
        Some(i) => &a[i + 1..],
        None => a,
    }))
}

fn write_ip(ip: IpAddr, out: &mut Vec<u8>) {
    let _ = write!(out, "{}", ip.to_canonical());
}

fn write_host_of(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => {
            let _ = write!(out, "{v4}");
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "[{v6}]");
        }
    }
    if addr.port() != 80 {
        let _ = write!(out, ":{}", addr.port());
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The headers the policy sets, replacing captured ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Set {
    ForwardedFor,
    ForwardedPort,
    Scheme,
    ServerAddr,
    ServerPort,
}

const SET_NAMES: [(&[u8], Set, &str); 5] = [
    (b"x-forwarded-for", Set::ForwardedFor, "X-Forwarded-For"),
    (b"x-forwarded-port", Set::ForwardedPort, "X-Forwarded-Port"),
    (b"x-scheme", Set::Scheme, "X-Scheme"),
    (b"x-server-addr", Set::ServerAddr, "X-Server-Addr"),
    (b"x-server-port", Set::ServerPort, "X-Server-Port"),
];

fn set_enabled(s: Set, h: &AddedHeaders) -> bool {
    match s {
        Set::ForwardedFor => h.forwarded_for,
        Set::ForwardedPort => h.forwarded_port,
        Set::Scheme => h.scheme,
        Set::ServerAddr => h.server_addr,
        Set::ServerPort => h.server_port,
    }
}

fn set_value(s: Set, job: &ReplayJob, captured_xff: bool, out: &mut Vec<u8>) {
    match s {
        Set::ForwardedFor => {
            if captured_xff {
                for h in &job.request.headers {
                    if h.name.eq_ignore_ascii_case(b"x-forwarded-for") {
                        let v = trim(&h.value);
                        if !v.is_empty() {
                            out.extend_from_slice(v);
                            out.extend_from_slice(b", ");
                        }
                    }
                }
            }
            write_ip(job.client.ip(), out);
        }
        Set::ForwardedPort => {
            let _ = write!(out, "{}", job.client.port());
        }
        Set::Scheme => out.extend_from_slice(b"http"),
        Set::ServerAddr => write_ip(job.server.ip(), out),
        Set::ServerPort => {
            let _ = write!(out, "{}", job.server.port());
        }
    }
}

fn write_set(s: Set, name: &[u8], job: &ReplayJob, captured_xff: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    set_value(s, job, captured_xff, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the request line and header section (ending with the empty line) for `job` into `out`.
/// The body, `job.request.body`, follows it unchanged; the head announces it with `Content-Length`.
pub(crate) fn encode_head(
    job: &ReplayJob,
    policy: &Policy,
    ids: &RequestIds,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    let req = &job.request;
    if !is_token(&req.method) {
        return Err(Invalid::Method);
    }
    out.extend_from_slice(&req.method);
    out.push(b' ');
    let authority = write_target(&req.target, out)?;
    out.extend_from_slice(b" HTTP/1.1\r\n");

    // One pass to learn what the captured headers hold.
    let mut connection_tokens: Vec<&[u8]> = Vec::new();
    let mut has_host = false;
    let mut has_proto = false;
    let mut has_request_id = false;
    let mut framed = false;
    for h in &req.headers {
        if h.name.is_empty() || h.name.iter().any(|&b| b <= b' ' || b == b':' || b == 0x7f) {
            return Err(Invalid::HeaderName);
        }
        if h.value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(Invalid::HeaderValue);
        }
        let n = h.name.as_slice();
        if n.eq_ignore_ascii_case(b"connection") {
            connection_tokens.extend(h.value.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty()));
        } else if n.eq_ignore_ascii_case(b"host") {
            has_host = true;
        } else if n.eq_ignore_ascii_case(b"x-forwarded-proto") {
            has_proto = true;
        } else if n.eq_ignore_ascii_case(b"x-request-id") {
            has_request_id |= !h.value.is_empty();
        } else if n.eq_ignore_ascii_case(b"content-length") || n.eq_ignore_ascii_case(b"transfer-encoding") {
            framed = true;
        }
    }
    let hdrs = &policy.headers;
    let is_hop = |n: &[u8]| {
        HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h))
            || (!n.eq_ignore_ascii_case(b"host")
                && connection_tokens.iter().any(|t| n.eq_ignore_ascii_case(t)))
    };
    // Headers removed by the hop-by-hop rules do not count as present.
    if is_hop(b"x-forwarded-proto") {
        has_proto = false;
    }
    if is_hop(b"x-request-id") {
        has_request_id = false;
    }
    // Captured X-Forwarded-For values are kept (and the client appended) unless the job's forwarding
    // headers were already resolved or `Connection` named the header.
    let captured_xff = !job.forwarded_resolved && !is_hop(b"x-forwarded-for");

    if !has_host {
        out.extend_from_slice(b"Host: ");
        match authority {
            Some(a) if !a.is_empty() => out.extend_from_slice(a),
            _ => write_host_of(job.server, out),
        }
        out.extend_from_slice(b"\r\n");
    }

    let body_len = req.body.len();
    let needs_length = framed || body_len > 0;
    let mut length_written = false;
    let mut set_written = [false; 5];
    for h in &req.headers {
        let n = h.name.as_slice();
        if n.eq_ignore_ascii_case(b"content-length") || n.eq_ignore_ascii_case(b"transfer-encoding") {
            if !length_written {
                let name: &[u8] =
                    if n.eq_ignore_ascii_case(b"content-length") { n } else { b"Content-Length" };
                out.extend_from_slice(name);
                let _ = write!(out, ": {body_len}\r\n");
                length_written = true;
            }
            continue;
        }
        if is_hop(n) {
            continue;
        }
        if let Some(i) =
            SET_NAMES.iter().position(|(lower, s, _)| set_enabled(*s, hdrs) && n.eq_ignore_ascii_case(lower))
        {
            if !set_written[i] {
                write_set(SET_NAMES[i].1, n, job, captured_xff, out);
                set_written[i] = true;
            }
            continue;
        }
        if hdrs.request_id && n.eq_ignore_ascii_case(b"x-request-id") && h.value.is_empty() {
            continue;
        }
        if policy.response_headers
            && [RESPONSE_STATUS, RESPONSE_LENGTH, RESPONSE_TIME]
                .iter()
                .any(|r| n.eq_ignore_ascii_case(r.as_bytes()))
        {
            continue;
        }
        header(out, n, &h.value);
    }
    if needs_length && !length_written {
        let _ = write!(out, "Content-Length: {body_len}\r\n");
    }
    for (i, (_, s, name)) in SET_NAMES.iter().enumerate() {
        if *s == Set::Scheme {
            // Order of added headers: X-Forwarded-For, -Port, -Proto, X-Scheme, X-Server-*, X-Request-ID.
            if hdrs.forwarded_proto && !has_proto {
                header(out, b"X-Forwarded-Proto", b"http");
            }
        }
        if set_enabled(*s, hdrs) && !set_written[i] {
            write_set(*s, name.as_bytes(), job, captured_xff, out);
        }
    }
    if hdrs.request_id && !has_request_id {
        header(out, b"X-Request-ID", &ids.next());
    }
    if let (true, Some(r)) = (policy.response_headers, &job.response) {
        let _ = write!(
            out,
            "{RESPONSE_STATUS}: {}\r\n{RESPONSE_LENGTH}: {}\r\n{RESPONSE_TIME}: {}\r\n",
            r.status, r.body_len, r.duration_us
        );
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}
