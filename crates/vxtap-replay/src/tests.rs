//! Unit tests of the header policy (what goes on the wire for a job).

use vxtap_http::{Header, Request};

use crate::encode::{Invalid, Policy, RequestIds, encode_head};
use crate::{AddedHeaders, ObservedResponse, ReplayJob};

fn req(method: &[u8], target: &[u8], headers: &[(&[u8], &[u8])], body: &[u8]) -> Request {
    Request {
        method: method.to_vec(),
        target: target.to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        headers: headers.iter().map(|(n, v)| Header { name: n.to_vec(), value: v.to_vec() }).collect(),
        body: body.to_vec(),
        body_len: body.len() as u64,
        ..Request::default()
    }
}

fn job(r: Request) -> ReplayJob {
    ReplayJob::new(r, "10.0.0.7:51234".parse().unwrap(), "10.0.1.20:80".parse().unwrap(), 0)
}

fn encode_with(j: &ReplayJob, headers: AddedHeaders, response_headers: bool) -> Result<String, Invalid> {
    let mut out = Vec::new();
    encode_head(j, &Policy { headers, response_headers }, &RequestIds::new(), &mut out)?;
    // Replace the generated id so that expectations are fixed.
    let s = String::from_utf8_lossy(&out).into_owned();
    Ok(match s.find("X-Request-ID: ") {
        Some(i) if s[i + 14..].starts_with(|c: char| c.is_ascii_hexdigit()) && s.len() >= i + 46 => {
            format!("{}X-Request-ID: ID{}", &s[..i], &s[i + 46..])
        }
        _ => s,
    })
}

fn encode(j: &ReplayJob) -> String {
    encode_with(j, AddedHeaders::default(), false).unwrap()
}

const ADDED: &str = "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Port: 51234\r\nX-Forwarded-Proto: http\r\n\
    X-Scheme: http\r\nX-Server-Addr: 10.0.1.20\r\nX-Server-Port: 80\r\nX-Request-ID: ID\r\n\r\n";

#[test]
fn simple_get() {
    let j = job(req(b"GET", b"/a?b=c", &[(b"Host", b"shop.example"), (b"User-Agent", b"curl/8")], b""));
    assert_eq!(
        encode(&j),
        format!("GET /a?b=c HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8\r\n{ADDED}")
    );
}

#[test]
fn headers_off() {
    let j = job(req(b"GET", b"/", &[(b"host", b"h"), (b"X-Forwarded-For", b"1.1.1.1")], b""));
    assert_eq!(
        encode_with(&j, AddedHeaders::none(), false).unwrap(),
        "GET / HTTP/1.1\r\nhost: h\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n"
    );
    let only_xff = AddedHeaders { forwarded_for: true, ..AddedHeaders::none() };
    assert_eq!(
        encode_with(&j, only_xff, false).unwrap(),
        "GET / HTTP/1.1\r\nhost: h\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\r\n\r\n"
    );
}

#[test]
fn hop_by_hop_and_chunked_framing() {
    let j = job(req(
        b"POST",
        b"/up",
        &[
            (b"Host", b"h"),
            (b"Connection", b"keep-alive, X-Hop"),
            (b"Keep-Alive", b"timeout=5"),
            (b"X-Hop", b"secret"),
            (b"Transfer-Encoding", b"chunked"),
            (b"TE", b"trailers"),
            (b"Trailer", b"X-T"),
            (b"Upgrade", b"websocket"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"x-a", b"1"),
            (b"X-B", b"2"),
            (b"x-a", b"3"),
        ],
        b"hello world",
    ));
    assert_eq!(
        encode(&j),
        format!(
            "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nx-a: 1\r\nX-B: 2\r\nx-a: 3\r\n{ADDED}"
        )
    );
}

#[test]
fn content_length_redone_in_place() {
    let j = job(req(
        b"PUT",
        b"/",
        &[(b"content-length", b"5"), (b"Host", b"h"), (b"Content-Length", b"5")],
        b"abcde",
    ));
    assert_eq!(encode(&j), format!("PUT / HTTP/1.1\r\ncontent-length: 5\r\nHost: h\r\n{ADDED}"));
    // Framing header with an empty body keeps a zero length; no framing, no body: no length.
    let j = job(req(b"POST", b"/", &[(b"Host", b"h"), (b"Content-Length", b"0")], b""));
    assert!(encode(&j).contains("\r\nContent-Length: 0\r\n"));
    let j = job(req(b"POST", b"/", &[(b"Host", b"h")], b""));
    assert!(!encode(&j).contains("Content-Length"));
}

#[test]
fn absolute_form_and_missing_host() {
    let j = job(req(b"GET", b"http://user@Example.com:8080?q=1", &[], b""));
    assert_eq!(encode(&j), format!("GET /?q=1 HTTP/1.1\r\nHost: Example.com:8080\r\n{ADDED}"));
    let j = job(req(b"GET", b"HTTP://h/x/y", &[(b"Host", b"other")], b""));
    assert!(encode(&j).starts_with("GET /x/y HTTP/1.1\r\nHost: other\r\n"));
    // HTTP/1.0 without Host: the original server address, port only when not 80.
    let mut r = req(b"GET", b"/old", &[(b"Accept", b"*/*")], b"");
    r.protocol = b"HTTP/1.0".to_vec();
    let mut j = job(r);
    assert!(encode(&j).starts_with("GET /old HTTP/1.1\r\nHost: 10.0.1.20\r\nAccept: */*\r\n"));
    j.server = "[2001:db8::1]:8080".parse().unwrap();
    assert!(encode(&j).starts_with("GET /old HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n"));
    assert!(encode(&j).contains("X-Server-Addr: 2001:db8::1\r\nX-Server-Port: 8080\r\n"));
    // Asterisk-form and a path that merely contains "://" stay as they are.
    let j = job(req(b"OPTIONS", b"*", &[(b"Host", b"h")], b""));
    assert!(encode(&j).starts_with("OPTIONS * HTTP/1.1\r\n"));
    let j = job(req(b"GET", b"/r?u=http://x/", &[(b"Host", b"h")], b""));
    assert!(encode(&j).starts_with("GET /r?u=http://x/ HTTP/1.1\r\n"));
}

#[test]
fn raw_bytes_survive_and_unsendable_bytes_are_escaped() {
    let j = job(req(b"GET", b"/caf\xe9\xff?q=\x80", &[(b"Host", b"h"), (b"X-Raw", b"\xff\xfe obs")], b""));
    let mut out = Vec::new();
    let policy = Policy { headers: AddedHeaders::none(), response_headers: false };
    encode_head(&j, &policy, &RequestIds::new(), &mut out).unwrap();
    assert_eq!(out, b"GET /caf\xe9\xff?q=\x80 HTTP/1.1\r\nHost: h\r\nX-Raw: \xff\xfe obs\r\n\r\n");
    let j = job(req(b"GET", b"/a b\x01\x7f", &[(b"Host", b"h")], b""));
    assert!(encode(&j).starts_with("GET /a%20b%01%7F HTTP/1.1\r\n"));
}

#[test]
fn invalid_requests() {
    let bad = [
        req(b"GE T", b"/", &[], b""),
        req(b"", b"/", &[], b""),
        req(b"GET", b"", &[], b""),
        req(b"GET", b"/", &[(b"Bad Name", b"v")], b""),
        req(b"GET", b"/", &[(b"", b"v")], b""),
        req(b"GET", b"/", &[(b"X", b"a\rb")], b""),
        req(b"GET", b"/", &[(b"X", b"a\0b")], b""),
    ];
    for r in bad {
        assert!(encode_with(&job(r.clone()), AddedHeaders::default(), false).is_err(), "{r:?}");
    }
    // Odd but valid methods pass.
    for m in [&b"PURGE"[..], b"M-SEARCH", b"get", b"PROPFIND"] {
        assert!(
            encode(&job(req(m, b"/", &[(b"Host", b"h")], b""))).starts_with(std::str::from_utf8(m).unwrap())
        );
    }
}

#[test]
fn forwarding_headers_append_replace_keep() {
    let j = job(req(
        b"GET",
        b"/",
        &[
            (b"Host", b"h"),
            (b"x-forwarded-for", b"203.0.113.9"),
            (b"X-Forwarded-Proto", b"https"),
            (b"X-Server-Addr", b"6.6.6.6"),
            (b"X-Forwarded-For", b"198.51.100.1 "),
            (b"X-Request-Id", b"abc-123"),
            (b"X-Scheme", b"ftp"),
        ],
        b"",
    ));
    assert_eq!(
        encode(&j),
        "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 203.0.113.9, 198.51.100.1, 10.0.0.7\r\n\
         X-Forwarded-Proto: https\r\nX-Server-Addr: 10.0.1.20\r\nX-Request-Id: abc-123\r\nX-Scheme: http\r\n\
         X-Forwarded-Port: 51234\r\nX-Server-Port: 80\r\n\r\n"
    );
    // Resolved forwarding (HTTP mirror input): X-Forwarded-For is set, not appended to.
    let mut j = j;
    j.forwarded_resolved = true;
    j.client = "[::ffff:192.0.2.1]:1000".parse().unwrap();
    let s = encode(&j);
    assert!(s.contains("\r\nx-forwarded-for: 192.0.2.1\r\n"), "{s}");
    assert!(s.contains("\r\nX-Forwarded-Port: 1000\r\n"), "{s}");
    // An empty X-Request-ID is replaced by a generated one; Connection can remove captured ones.
    let j = job(req(b"GET", b"/", &[(b"Host", b"h"), (b"X-Request-ID", b"")], b""));
    assert_eq!(encode(&j).matches("X-Request-ID").count(), 1);
    assert!(encode(&j).contains("X-Request-ID: ID\r\n"));
    let j = job(req(
        b"GET",
        b"/",
        &[(b"Host", b"h"), (b"Connection", b"X-Forwarded-For"), (b"X-Forwarded-For", b"1.2.3.4")],
        b"",
    ));
    assert!(encode(&j).contains("X-Forwarded-For: 10.0.0.7\r\n"));
    assert!(!encode(&j).contains("1.2.3.4"));
    // IPv6 client.
    let mut j = job(req(b"GET", b"/", &[(b"Host", b"h")], b""));
    j.client = "[2001:db8::7]:4444".parse().unwrap();
    assert!(encode(&j).contains("X-Forwarded-For: 2001:db8::7\r\nX-Forwarded-Port: 4444\r\n"));
}

#[test]
fn response_headers() {
    let mut j = job(req(b"GET", b"/", &[(b"Host", b"h"), (b"X-Vxtap-Response-Status", b"999")], b""));
    assert!(encode_with(&j, AddedHeaders::none(), true).unwrap() == "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    j.response = Some(ObservedResponse { status: 404, body_len: 12, duration_us: 3456 });
    assert_eq!(
        encode_with(&j, AddedHeaders::none(), true).unwrap(),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Vxtap-Response-Status: 404\r\nX-Vxtap-Response-Length: 12\r\n\
         X-Vxtap-Response-Time-Us: 3456\r\n\r\n"
    );
    // Off: captured ones pass untouched and nothing is added.
    assert!(
        encode_with(&j, AddedHeaders::none(), false)
            .unwrap()
            .contains("X-Vxtap-Response-Status: 999\r\n\r\n")
    );
}

#[test]
fn request_ids_unique() {
    let ids = RequestIds::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100_000 {
        let id = ids.next();
        assert!(id.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(seen.insert(id));
    }
    assert_ne!(RequestIds::new().next(), RequestIds::new().next());
}
