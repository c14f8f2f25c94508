//! End-to-end tests of the mirror listener over 127.0.0.0/8 sockets.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use vxtap_mirror::{Cidr, MirrorConfig, MirrorServer, MirroredRequest, SinkFull};

const WAIT: Duration = Duration::from_secs(10);

fn config() -> MirrorConfig {
    let mut cfg = MirrorConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.header_timeout = Duration::from_secs(3);
    cfg.body_timeout = Duration::from_secs(3);
    cfg
}

fn start(cfg: MirrorConfig) -> (MirrorServer, Receiver<MirroredRequest>) {
    MirrorServer::start_channel(cfg, 10_000).unwrap()
}

fn connect(server: &MirrorServer) -> TcpStream {
    let s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Connects from a chosen loopback address (127.0.0.2, …).
fn connect_from(server: &MirrorServer, from: &str) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let std = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
        sock.connect(server.local_addr()).await.unwrap().into_std().unwrap()
    });
    std.set_nonblocking(false).unwrap();
    std.set_read_timeout(Some(WAIT)).unwrap();
    std
}

/// Sends `req` on a new connection and reads the whole answer (the server closes).
fn exchange(server: &MirrorServer, req: &[u8]) -> String {
    let mut s = connect(server);
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response head (responses here never have a body).
fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => out.push(byte[0]),
            other => panic!("connection ended after {:?}: {other:?}", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8(out).unwrap()
}

fn recv(rx: &Receiver<MirroredRequest>) -> MirroredRequest {
    rx.recv_timeout(WAIT).expect("a copy")
}

fn header<'a>(copy: &'a MirroredRequest, name: &str) -> Option<&'a [u8]> {
    copy.request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.as_slice())
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn http10_connection_close_as_nginx_sends() {
    let (server, rx) = start(config());
    let answer = exchange(
        &server,
        b"POST /form?a=1&b=%41 HTTP/1.0\r\nX-SERVER-PORT: 80\r\nX-SERVER-ADDR: 10.1.1.1\r\nHOST: shop.example\r\n\
          X-Forwarded-For: 192.0.2.44\r\nX-Forwarded-Port: 40404\r\nX-Request-ID: abc123\r\n\
          Connection: close\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world",
    );
    assert_eq!(answer, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    let copy = recv(&rx);
    assert_eq!(copy.request.method, b"POST");
    assert_eq!(copy.request.target, b"/form?a=1&b=%41");
    assert_eq!(copy.request.protocol, b"HTTP/1.0");
    assert_eq!(copy.request.body, b"hello world");
    assert_eq!(copy.request.body_len, 11);
    assert!(!copy.request.gap && !copy.request.body_truncated);
    assert!(copy.request.start_ts > 0 && copy.request.end_ts >= copy.request.start_ts);
    let names: Vec<&[u8]> = copy.request.headers.iter().map(|h| h.name.as_slice()).collect();
    assert_eq!(
        names,
        [
            &b"X-SERVER-PORT"[..],
            b"X-SERVER-ADDR",
            b"HOST",
            b"X-Forwarded-For",
            b"X-Forwarded-Port",
            b"X-Request-ID",
            b"Connection",
            b"Content-Length",
            b"Content-Type"
        ]
    );
    // No trusted proxies: the headers are kept but not believed.
    assert!(!copy.addresses_trusted);
    assert_eq!(copy.client.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(copy.client, copy.peer);
    assert_eq!(copy.server, server.local_addr());
    assert_eq!(copy.hostname, b"shop.example");
    assert_eq!(copy.request_id.as_deref(), Some(&b"abc123"[..]));
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!((stats.copies, stats.copies_http10, stats.answered, stats.delivered), (1, 1, 1, 1));
}

#[test]
fn http11_keep_alive_and_pipelining() {
    let (server, rx) = start(config());
    let mut s = connect(&server);
    for i in 0..20 {
        let body = pattern(i * 100, i as u8);
        write!(s, "PUT /k/{i} HTTP/1.1\r\nHost: a.example\r\nx-dup: 1\r\nX-Other: z\r\nX-DUP: 2\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        s.write_all(&body).unwrap();
        assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
        let copy = recv(&rx);
        assert_eq!(copy.request.target, format!("/k/{i}").as_bytes());
        assert_eq!(copy.request.body, body);
        let hs: Vec<(&[u8], &[u8])> =
            copy.request.headers.iter().map(|h| (h.name.as_slice(), h.value.as_slice())).collect();
        assert_eq!(hs[1..4], [(&b"x-dup"[..], &b"1"[..]), (b"X-Other", b"z"), (b"X-DUP", b"2")]);
    }
    // Nine pipelined requests in one write, bodies and all, then a GET with Connection: close.
    let mut burst = Vec::new();
    for i in 0..9 {
        write!(burst, "POST /p/{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab{i}").unwrap();
    }
    burst.extend_from_slice(b"\r\nGET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    s.write_all(&burst).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert_eq!(rest.matches("HTTP/1.1 204 No Content\r\n").count(), 10);
    assert!(rest.ends_with("Connection: close\r\n\r\n"));
    for i in 0..9 {
        let copy = recv(&rx);
        assert_eq!(copy.request.target, format!("/p/{i}").as_bytes());
        assert_eq!(copy.request.body, format!("ab{i}").as_bytes());
    }
    assert_eq!(recv(&rx).request.target, b"/last");
    // HTTP/1.0 keep-alive is honoured too.
    let mut s = connect(&server);
    for _ in 0..2 {
        s.write_all(b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
    }
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!(stats.copies_http11, 30);
    assert_eq!(stats.copies_http10, 2);
    assert_eq!(stats.connections_accepted, 2);
}

#[test]
fn chunked_bodies_in_pieces() {
    let (server, rx) = start(config());
    let mut s = connect(&server);
    let pieces: [&[u8]; 7] = [
        b"POST /up HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5;name=v\r\nhel",
        b"lo\r\n",
        b"1",
        b"0\r\n, chunked w",
        b"orld!\r\n0\r\nX-Trailer: t\r\n",
        b"\r\n",
    ];
    for p in pieces {
        s.write_all(p).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
    let copy = recv(&rx);
    assert_eq!(copy.request.body, b"hello, chunked world!");
    assert_eq!(copy.request.body_len, 21);
    // A megabyte in 1000 chunks, one write.
    let body = pattern(1 << 20, 7);
    let mut wire = b"POST /big HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(1049) {
        write!(wire, "{:x}\r\n", c.len()).unwrap();
        wire.extend_from_slice(c);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&wire).unwrap();
    assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
    let copy = recv(&rx);
    assert_eq!(copy.request.body_len, body.len() as u64);
    assert!(copy.request.body == body);
    // Broken chunk framing: 400, counted, the copy still comes out with a gap.
    s.write_all(b"POST /bad HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").unwrap();
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.starts_with("HTTP/1.1 400 Bad Request"), "{rest}");
    assert!(recv(&rx).request.gap);
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!(stats.parse_errors, 1);
}

#[test]
fn large_bodies_from_bytes_to_megabytes() {
    let mut cfg = config();
    cfg.body_limit = 16 << 20;
    let (server, rx) = start(cfg);
    let mut s = connect(&server);
    for (i, len) in [0usize, 1, 1460, 65_535, 65_537, 1 << 20, 5_000_000, 12 << 20].into_iter().enumerate() {
        let body = pattern(len, i as u8);
        write!(s, "POST /b/{len} HTTP/1.1\r\nHost: l\r\nContent-Length: {len}\r\n\r\n").unwrap();
        s.write_all(&body).unwrap();
        assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
        let copy = recv(&rx);
        assert_eq!(copy.request.body_len, len as u64);
        assert!(copy.request.body == body, "body of {len} bytes differs");
        assert!(!copy.request.body_truncated);
    }
    drop(server);
}

#[test]
fn body_limit_truncates_and_counts() {
    let mut cfg = config();
    cfg.body_limit = 1000;
    let (server, rx) = start(cfg);
    let mut s = connect(&server);
    let body = pattern(300_000, 1);
    write!(s, "POST /t HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    s.write_all(&body).unwrap();
    assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
    let copy = recv(&rx);
    assert_eq!(copy.request.body, body[..1000]);
    assert_eq!(copy.request.body_len, 300_000);
    assert!(copy.request.body_truncated && !copy.request.gap);
    // The connection is still in step.
    s.write_all(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(recv(&rx).request.target, b"/after");
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!((stats.truncated, stats.body_bytes, stats.budget_truncated), (1, 300_000, 0));
    // The ceiling on body bytes held by all copies under way cuts before body_limit does.
    let mut cfg = config();
    cfg.max_buffered_body_bytes = 100;
    let (server, rx) = start(cfg);
    let mut s = connect(&server);
    s.write_all(b"POST /t HTTP/1.1\r\nHost: t\r\nContent-Length: 300\r\n\r\n").unwrap();
    s.write_all(&body[..300]).unwrap();
    assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
    let copy = recv(&rx);
    assert_eq!(
        (copy.request.body.len(), copy.request.body_len, copy.request.body_truncated),
        (100, 300, true)
    );
    // Released once handed on: the next copy gets the room again.
    s.write_all(b"POST /t2 HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n").unwrap();
    s.write_all(&body[..50]).unwrap();
    assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(recv(&rx).request.body, body[..50]);
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!((stats.truncated, stats.budget_truncated), (1, 1));
}

#[test]
fn content_length_without_body_ends_at_the_body_timeouts() {
    // nginx with `mirror_request_body off` forwards Content-Length and sends no body.
    let mut cfg = config();
    cfg.body_start_timeout = Duration::from_millis(200);
    cfg.body_timeout = Duration::from_millis(600);
    let (server, rx) = start(cfg);
    let timed = |req: &[u8]| {
        let mut s = connect(&server);
        let t0 = Instant::now();
        s.write_all(req).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        t0.elapsed()
    };
    // No body byte at all: the start timeout.
    let took = timed(b"POST /nobody HTTP/1.0\r\nHost: n\r\nContent-Length: 1234\r\n\r\n");
    assert!(took >= Duration::from_millis(150) && took < Duration::from_millis(550), "{took:?}");
    let copy = recv(&rx);
    assert!(copy.request.gap);
    assert_eq!((copy.request.body_len, copy.request.target.as_slice()), (0, &b"/nobody"[..]));
    // A body that stops: the idle timeout.
    let took = timed(b"POST /stalled HTTP/1.1\r\nHost: n\r\nContent-Length: 1234\r\n\r\nabc");
    assert!(took >= Duration::from_millis(550) && took < Duration::from_secs(2), "{took:?}");
    let copy = recv(&rx);
    assert!(copy.request.gap);
    assert_eq!((copy.request.body.as_slice(), copy.request.body_len), (&b"abc"[..], 3));
    // Chunked, and HTTP/2: the same.
    let took = timed(b"POST /chunks HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(took < Duration::from_millis(550), "{took:?}");
    assert!(recv(&rx).request.gap);
    let addr = server.local_addr();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let io = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake::<
            _,
            _,
            http_body_util::channel::Channel<Bytes, std::io::Error>,
        >(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
        tokio::spawn(conn);
        let (tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(1);
        let req = hyper::Request::post("http://n/h2-nobody").body(body).unwrap();
        let t0 = Instant::now();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 204);
        assert!(t0.elapsed() < Duration::from_millis(550));
        drop(tx);
    });
    let copy = recv(&rx);
    assert_eq!((copy.request.protocol.as_slice(), copy.request.gap), (&b"HTTP/2"[..], true));
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!((stats.body_timeouts, stats.copies, stats.answered), (4, 4, 4));
}

#[test]
fn peer_closing_inside_the_body_is_counted() {
    let (server, rx) = start(config());
    let mut s = connect(&server);
    s.write_all(b"POST /cut HTTP/1.1\r\nHost: n\r\nContent-Length: 100\r\n\r\n0123456789").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let copy = recv(&rx);
    assert!(copy.request.gap);
    assert_eq!(copy.request.body, b"0123456789");
    wait_for("body_incomplete", || server.stats().body_incomplete == 1);
}

#[test]
fn trusted_proxy_headers_are_believed_and_spoofing_is_not() {
    let mut cfg = config();
    cfg.trusted_proxies = Cidr::parse_list("127.0.0.1/32,10.0.0.0/8").unwrap();
    let (server, rx) = start(cfg);
    let req = b"GET /x HTTP/1.1\r\nHost: shop.example-shadow:8080\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.9, 10.9.9.9\r\n\
                X-Forwarded-Port: 55555\r\nX-Server-Addr: 10.0.1.20\r\nX-Server-Port: 443\r\nConnection: close\r\n\r\n";
    // From the trusted proxy (127.0.0.1).
    let mut s = connect_from(&server, "127.0.0.1");
    s.write_all(req).unwrap();
    let _ = s.read_to_end(&mut Vec::new());
    let copy = recv(&rx);
    assert!(copy.addresses_trusted);
    assert_eq!(copy.client, sa("203.0.113.9:55555"));
    assert_eq!(copy.server, sa("10.0.1.20:443"));
    assert_eq!(copy.hostname, b"shop.example");
    assert_eq!(header(&copy, "host"), Some(&b"shop.example-shadow:8080"[..]));
    // The same bytes from an untrusted peer (127.0.0.2): nothing believed.
    let mut s = connect_from(&server, "127.0.0.2");
    let spoof_port = s.local_addr().unwrap().port();
    s.write_all(req).unwrap();
    let _ = s.read_to_end(&mut Vec::new());
    let copy = recv(&rx);
    assert!(!copy.addresses_trusted);
    assert_eq!(copy.client, SocketAddr::new("127.0.0.2".parse().unwrap(), spoof_port));
    assert_eq!(copy.server, server.local_addr());
    assert_eq!(header(&copy, "x-forwarded-for"), Some(&b"6.6.6.6, 203.0.113.9, 10.9.9.9"[..]));
}

#[test]
fn allow_list_refuses_others_with_403() {
    let mut cfg = config();
    cfg.allow = Cidr::parse_list("127.0.0.2").unwrap();
    let (server, rx) = start(cfg);
    let mut s = connect_from(&server, "127.0.0.1");
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    let mut s = connect_from(&server, "127.0.0.2");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"));
    assert_eq!(recv(&rx).peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
    assert!(rx.try_recv().is_err());
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!((stats.refused, stats.copies), (1, 1));
}

#[test]
fn full_sink_still_answers_at_once() {
    let offered = Arc::new(AtomicUsize::new(0));
    let seen = offered.clone();
    let sink = move |_: MirroredRequest| -> Result<(), SinkFull> {
        seen.fetch_add(1, Ordering::Relaxed);
        Err(SinkFull)
    };
    let server = MirrorServer::start(config(), sink).unwrap();
    let mut s = connect(&server);
    for _ in 0..50 {
        let t0 = Instant::now();
        s.write_all(b"POST /f HTTP/1.1\r\nHost: f\r\nContent-Length: 4\r\n\r\nbody").unwrap();
        assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
        assert!(t0.elapsed() < Duration::from_millis(200));
    }
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!((stats.copies, stats.sink_full, stats.delivered, stats.answered), (50, 50, 0, 50));
    assert_eq!(offered.load(Ordering::Relaxed), 50);
    assert!(stats.render_prometheus().contains("vxtap_mirror_sink_full_drops_total 50\n"));
}

#[test]
fn bad_input_is_answered_and_counted() {
    let mut cfg = config();
    cfg.max_head_bytes = 4096;
    cfg.header_timeout = Duration::from_millis(300);
    let (server, rx) = start(cfg);
    // Oversized head, arriving whole or in pieces.
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "a".repeat(5000));
    assert!(exchange(&server, big.as_bytes()).starts_with("HTTP/1.1 431 "));
    let endless = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}", "a".repeat(5000));
    assert!(exchange(&server, endless.as_bytes()).starts_with("HTTP/1.1 431 "));
    // Garbage and a TLS ClientHello on the cleartext port.
    assert!(exchange(&server, b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(exchange(&server, b"GET / HTTP/7.0\r\n\r\n").starts_with("HTTP/1.1 505 "));
    // A head that never ends: closed at the header timeout.
    let mut s = connect(&server);
    let t0 = Instant::now();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(t0.elapsed() < Duration::from_secs(2));
    // The listener is fine afterwards.
    assert!(exchange(&server, b"GET /ok HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 204"));
    assert_eq!(recv(&rx).request.target, b"/ok");
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!((stats.head_too_large, stats.parse_errors, stats.header_timeouts), (2, 2, 1));
}

#[test]
fn expect_100_continue() {
    let (server, rx) = start(config());
    let mut s = connect(&server);
    s.write_all(b"POST /e HTTP/1.1\r\nHost: e\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").unwrap();
    assert_eq!(read_head(&mut s), "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"12345").unwrap();
    assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(recv(&rx).request.body, b"12345");
}

async fn h2_client(
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    send
}

async fn h2_requests(send: hyper::client::conn::http2::SendRequest<Full<Bytes>>, n: usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut send = send.clone();
        tasks.push(tokio::spawn(async move {
            let body = pattern(i * 7919 % 300_000, i as u8);
            let req = hyper::Request::builder()
                .method("POST")
                .uri(format!("http://shop.example-shadow:8080/h2/{i}?q=1"))
                .header("x-request-id", format!("req-{i}"))
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 204);
            assert!(resp.into_body().collect().await.unwrap().to_bytes().is_empty());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn check_h2_copies(rx: &Receiver<MirroredRequest>, n: usize) {
    let mut copies: Vec<MirroredRequest> = (0..n).map(|_| recv(rx)).collect();
    copies.sort_by_key(|c| c.request_id.clone());
    for c in copies {
        let id = String::from_utf8(c.request_id.clone().unwrap()).unwrap();
        let i: usize = id.strip_prefix("req-").unwrap().parse().unwrap();
        assert_eq!(c.request.protocol, b"HTTP/2");
        assert_eq!(c.request.method, b"POST");
        assert_eq!(c.request.target, format!("/h2/{i}?q=1").as_bytes());
        assert!(c.request.body == pattern(i * 7919 % 300_000, i as u8));
        assert_eq!(c.hostname, b"shop.example");
        assert_eq!(c.request.headers[0].name, b"Host");
        assert_eq!(c.request.headers[0].value, b"shop.example-shadow:8080");
        assert_eq!(header(&c, "Cookie"), Some(&b"a=1; b=2"[..]));
        assert!(c.request.headers.iter().any(|h| h.name == b"X-Request-Id"));
    }
}

#[test]
fn h2c_prior_knowledge() {
    let (server, rx) = start(config());
    let addr = server.local_addr();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let send = h2_client(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        h2_requests(send.clone(), 40).await;
        // A header list over max_head_bytes: refused by the HTTP/2 layer, no copy, no hang.
        let big = hyper::Request::get("http://a/big")
            .header("x-big", "b".repeat(200_000))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = tokio::time::timeout(WAIT, send.clone().send_request(big)).await.unwrap();
        eprintln!("oversized h2 header list: {:?}", r.as_ref().map(|r| r.status()));
        assert!(r.is_err() || r.unwrap().status() == 431);
    });
    check_h2_copies(&rx, 40);
    assert!(rx.try_recv().is_err());
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!((stats.copies_http2, stats.answered, stats.connections_accepted), (40, 40, 1));
}

struct Tls {
    dir: std::path::PathBuf,
    cert_pem: String,
}

fn tls_files() -> Tls {
    static N: AtomicUsize = AtomicUsize::new(0);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "vxtap-mirror-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    Tls { dir, cert_pem: ck.cert.pem() }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_connector(cert_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()).unwrap();
    let mut cfg =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[test]
fn tls_http1_and_h2() {
    let tls = tls_files();
    let mut cfg = config();
    cfg.tls = Some(vxtap_mirror::TlsFiles { cert: tls.dir.join("cert.pem"), key: tls.dir.join("key.pem") });
    let (server, rx) = start(cfg);
    let addr = server.local_addr();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        // HTTP/1.1 (ALPN http/1.1), keep-alive, then close.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut s = tls_connector(&tls.cert_pem, &[b"http/1.1"]).connect(name.clone(), tcp).await.unwrap();
        s.write_all(b"POST /tls1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc").await.unwrap();
        s.write_all(b"GET /tls2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert_eq!(out.matches("HTTP/1.1 204 No Content").count(), 2, "{out}");
        // No ALPN at all: HTTP/1.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut s = tls_connector(&tls.cert_pem, &[]).connect(name.clone(), tcp).await.unwrap();
        s.write_all(b"GET /tls3 HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 204"));
        // HTTP/2 via ALPN h2.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let s = tls_connector(&tls.cert_pem, &[b"h2"]).connect(name, tcp).await.unwrap();
        h2_requests(h2_client(s).await, 5).await;
    });
    let mut first: Vec<Vec<u8>> = (0..3).map(|_| recv(&rx).request.target).collect();
    first.sort();
    assert_eq!(first, [b"/tls1".to_vec(), b"/tls2".to_vec(), b"/tls3".to_vec()]);
    check_h2_copies(&rx, 5);
    // A cleartext client on the TLS port is a handshake error, nothing else.
    let _ = exchange(&server, b"GET / HTTP/1.0\r\n\r\n");
    let stats = server.shutdown(Duration::from_secs(1));
    assert_eq!(stats.tls_handshake_errors, 1);
    assert_eq!(stats.copies, 8);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_thousand_idle_connections() {
    let (server, rx) = start(config());
    let before = rss_kib();
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut s = connect(&server);
        // Half of them sent a partial nothing-yet; the other half completed a request and stay idle.
        if i % 2 == 0 {
            s.write_all(b"GET /warm HTTP/1.1\r\nHost: i\r\n\r\n").unwrap();
            assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
        }
        idle.push(s);
    }
    wait_for("1000 open connections", || server.stats().connections_open == 1000);
    for _ in 0..500 {
        recv(&rx);
    }
    let grown = rss_kib().saturating_sub(before);
    // The test process holds both ends (and 500 copies passed through): under 8 KiB a connection.
    assert!(grown < 8 * 1000, "RSS grew by {grown} KiB for 1000 idle connections");
    // Other copies are unaffected.
    let mut s = connect(&server);
    let t0 = Instant::now();
    for i in 0..100 {
        write!(s, "POST /busy/{i} HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(recv(&rx).request.target, format!("/busy/{i}").as_bytes());
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    eprintln!("1000 idle connections: RSS +{grown} KiB (both ends); 100 copies in {:?}", t0.elapsed());
    drop(idle);
    wait_for("connections to close", || server.stats().connections_open == 1);
}

#[test]
fn connection_limit_rejects_extra_connections() {
    let mut cfg = config();
    cfg.max_connections = 2;
    let (server, _rx) = start(cfg);
    let _a = connect(&server);
    let _b = connect(&server);
    wait_for("two open", || server.stats().connections_open == 2);
    let mut c = connect(&server);
    let mut out = Vec::new();
    let r = c.read_to_end(&mut out);
    assert!(r.is_err() || out.is_empty());
    wait_for("rejection counted", || server.stats().connections_rejected == 1);
}

#[test]
fn idle_timeout_and_shutdown_drain() {
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_millis(300);
    let (server, rx) = start(cfg);
    let mut s = connect(&server);
    let mut out = Vec::new();
    let t0 = Instant::now();
    let _ = s.read_to_end(&mut out);
    assert!(t0.elapsed() < Duration::from_secs(2));
    // A copy under way when shutdown starts is finished and answered.
    let mut s = connect(&server);
    s.write_all(b"POST /drain HTTP/1.1\r\nHost: d\r\nContent-Length: 6\r\n\r\nabc").unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(b"def").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    std::thread::sleep(Duration::from_millis(50));
    let stats = server.shutdown(Duration::from_secs(3));
    assert_eq!(writer.join().unwrap(), "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    assert_eq!(recv(&rx).request.body, b"abcdef");
    assert_eq!(stats.answered, 1);
    assert_eq!(stats.connections_open, 0);
}

#[test]
fn metrics_render() {
    let (server, _rx) = start(config());
    let _ = exchange(&server, b"GET / HTTP/1.0\r\n\r\n");
    wait_for("answer", || server.stats().answered == 1);
    let text = server.metrics().render_prometheus();
    for needle in [
        "# TYPE vxtap_mirror_copies_total counter\n",
        "vxtap_mirror_copies_total{protocol=\"HTTP/1.0\"} 1\n",
        "vxtap_mirror_answered_total 1\n",
        "vxtap_mirror_refused_total 0\n",
        "vxtap_mirror_truncated_bodies_total 0\n",
        "vxtap_mirror_body_timeouts_total 0\n",
        "vxtap_mirror_head_too_large_total 0\n",
        "vxtap_mirror_parse_errors_total 0\n",
        "vxtap_mirror_sink_full_drops_total 0\n",
        "# TYPE vxtap_mirror_connections_open gauge\n",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

/// One raw HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn h2_rapid_reset_flood_is_cut_off_and_others_unaffected() {
    let (server, rx) = start(config());
    let mut s = connect(&server);
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(h2_frame(4, 0, 0, &[])); // SETTINGS
    // HPACK: :method GET, :path /, :scheme http, :authority "a".
    let block = [0x82, 0x84, 0x86, 0x41, 0x01, b'a'];
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        wire.extend(h2_frame(1, 0x4, id, &block)); // HEADERS, END_HEADERS, no END_STREAM
        wire.extend(h2_frame(3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let _ = s.write_all(&wire);
    // The server gives up on this connection (GOAWAY, close) instead of working forever.
    let mut rest = Vec::new();
    let t0 = Instant::now();
    let _ = s.read_to_end(&mut rest);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Meanwhile and afterwards, other copies go through.
    assert!(exchange(&server, b"GET /after-flood HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 204"));
    let mut targets = Vec::new();
    while let Ok(c) = rx.recv_timeout(Duration::from_millis(500)) {
        targets.push(c.request.target);
    }
    assert!(targets.contains(&b"/after-flood".to_vec()));
    assert!(targets.len() < 5000, "{} copies from a reset flood", targets.len());
    wait_for("flood counted", || server.stats().parse_errors >= 1);
    eprintln!("rapid reset: {} copies, {:?}", targets.len(), server.stats());
}

#[test]
fn dual_stack_listener_reports_ipv4_peers_as_ipv4() {
    let mut cfg = config();
    cfg.listen = "[::]:0".parse().unwrap();
    cfg.trusted_proxies = Cidr::parse_list("127.0.0.1").unwrap();
    let (server, rx) = start(cfg);
    let port = server.local_addr().port();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /v4 HTTP/1.0\r\nHost: h\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n").unwrap();
    let _ = s.read_to_end(&mut Vec::new());
    let copy = recv(&rx);
    assert!(copy.peer.is_ipv4());
    assert!(copy.addresses_trusted);
    assert_eq!(copy.client.ip(), "198.51.100.1".parse::<IpAddr>().unwrap());
    assert_eq!(copy.server.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    let mut s = TcpStream::connect(("::1", port)).unwrap();
    s.write_all(b"GET /v6 HTTP/1.0\r\nHost: [::1]:8445\r\n\r\n").unwrap();
    let _ = s.read_to_end(&mut Vec::new());
    let copy = recv(&rx);
    assert_eq!(copy.client.ip(), "::1".parse::<IpAddr>().unwrap());
    assert!(!copy.addresses_trusted);
    assert_eq!(copy.hostname, b"[::1]");
}

#[test]
fn start_errors_and_warnings() {
    let (server, _rx) = start(config());
    let mut cfg = config();
    cfg.listen = server.local_addr();
    let err = MirrorServer::start_channel(cfg.clone(), 1).unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tls = Some(vxtap_mirror::TlsFiles {
        cert: "/nonexistent/cert.pem".into(),
        key: "/nonexistent/key.pem".into(),
    });
    let err = MirrorServer::start_channel(cfg.clone(), 1).unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    cfg.tls = None;
    cfg.body_timeout = Duration::ZERO;
    assert!(MirrorServer::start_channel(cfg.clone(), 1).is_err());
    let cfg = config();
    assert_eq!(cfg.warnings().len(), 1);
    let mut cfg = config();
    cfg.trusted_proxies = Cidr::parse_list("10.0.0.0/8").unwrap();
    assert!(cfg.warnings().is_empty());
}

#[test]
fn head_and_body_written_apart_without_nodelay_are_not_delayed() {
    // nginx to a keep-alive upstream writes head and body separately with Nagle on: unless the head
    // is acknowledged at once, each copy waits for a delayed ACK (40 ms on Linux).
    let (server, rx) = start(config());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let body = pattern(16 << 10, 3);
    let t0 = Instant::now();
    for i in 0..50 {
        write!(s, "POST /split/{i} HTTP/1.1\r\nHost: s\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        s.write_all(&body).unwrap();
        assert_eq!(read_head(&mut s), "HTTP/1.1 204 No Content\r\n\r\n");
        assert!(recv(&rx).request.body == body);
    }
    assert!(t0.elapsed() < Duration::from_millis(800), "50 copies took {:?}", t0.elapsed());
}
