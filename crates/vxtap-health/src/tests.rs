use super::*;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn body(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Parses a status line and headers into a body-less reply; also returns where the body starts.
fn parse_head(raw: &[u8]) -> Option<(Reply, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "status line {status_line:?}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    Some((Reply { status, headers, body: Vec::new() }, end + 4))
}

/// One request with `Connection: close`; the reply is everything up to EOF.
fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = connect(addr);
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let (reply, start) = parse_head(&raw).expect("complete response head");
    Reply { body: raw[start..].to_vec(), ..reply }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path)
}

/// One request on a kept-alive connection, reading exactly one response.
fn keep_alive_get(stream: &mut TcpStream, path: &str) -> Reply {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((reply, start)) = parse_head(&raw) {
            let len: usize = reply.header("content-length").unwrap().parse().unwrap();
            while raw.len() < start + len {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed mid-body");
                raw.extend_from_slice(&buf[..n]);
            }
            assert_eq!(raw.len(), start + len, "nothing beyond the body");
            return Reply { body: raw[start..].to_vec(), ..reply };
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the response head");
        raw.extend_from_slice(&buf[..n]);
    }
}

/// True when the server closed the connection (EOF or reset) without sending anything.
fn closed_without_reply(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
    }
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn metrics_const(body: &'static str) -> MetricsRenderer {
    Arc::new(move || body.to_owned())
}

fn start(state: &HealthState) -> HealthServer {
    HealthServer::start(localhost(), state.clone(), metrics_const("vxtap_up 1\n")).unwrap()
}

#[test]
fn healthcheck_ok_while_running() {
    let server = start(&HealthState::new());
    let reply = get(server.local_addr(), "/-/healthcheck");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body(), "OK\n");
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(reply.header("content-length"), Some("3"));
    assert_eq!(get(server.local_addr(), "/-/healthcheck?from=nlb").status, 200);
    server.shutdown();
}

#[test]
fn ping_pongs() {
    let server = start(&HealthState::new());
    let reply = get(server.local_addr(), "/-/ping");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body(), "PONG");
}

#[test]
fn metrics_body_comes_from_the_renderer_on_every_request() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let metrics: MetricsRenderer = Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        format!("# TYPE vxtap_scrapes counter\nvxtap_scrapes {n}\n")
    });
    let server = HealthServer::start(localhost(), HealthState::new(), metrics).unwrap();
    let first = get(server.local_addr(), "/metrics");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(first.body(), "# TYPE vxtap_scrapes counter\nvxtap_scrapes 1\n");
    let second = get(server.local_addr(), "/metrics");
    assert_eq!(second.body(), "# TYPE vxtap_scrapes counter\nvxtap_scrapes 2\n");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn panicking_renderer_gives_500_and_server_survives() {
    let metrics: MetricsRenderer = Arc::new(|| panic!("renderer bug (expected by this test)"));
    let server = HealthServer::start(localhost(), HealthState::new(), metrics).unwrap();
    assert_eq!(get(server.local_addr(), "/metrics").status, 500);
    assert_eq!(get(server.local_addr(), "/-/ping").status, 200);
    server.shutdown();
}

#[test]
fn head_works_on_every_endpoint() {
    let server = start(&HealthState::new());
    for (path, len, content_type) in [
        ("/-/healthcheck", "3", TEXT_CONTENT_TYPE),
        ("/-/ping", "4", TEXT_CONTENT_TYPE),
        ("/metrics", "11", METRICS_CONTENT_TYPE),
    ] {
        let reply = request(server.local_addr(), "HEAD", path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-length"), Some(len), "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert!(reply.body.is_empty(), "{path}: HEAD reply has a body");
    }
}

#[test]
fn unknown_path_is_404() {
    let server = start(&HealthState::new());
    for path in ["/", "/healthcheck", "/-/healthcheck/", "/metricsx", "/-/PING"] {
        assert_eq!(get(server.local_addr(), path).status, 404, "{path}");
    }
    assert_eq!(request(server.local_addr(), "POST", "/nope").status, 404);
}

#[test]
fn other_methods_are_405_with_allow() {
    let server = start(&HealthState::new());
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        for path in ["/-/healthcheck", "/-/ping", "/metrics"] {
            let reply = request(server.local_addr(), method, path);
            assert_eq!(reply.status, 405, "{method} {path}");
            assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
}

#[test]
fn state_transitions_are_visible_immediately() {
    let state = HealthState::new();
    let server = start(&state);
    let addr = server.local_addr();
    assert!(state.is_healthy());

    state.set_unhealthy("udp intake socket closed");
    let reply = get(addr, "/-/healthcheck");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body(), "unhealthy: udp intake socket closed\n");
    assert!(!state.is_healthy());
    assert_eq!(state.unhealthy_reason().as_deref(), Some("udp intake socket closed"));

    state.set_unhealthy("capture thread died");
    assert_eq!(get(addr, "/-/healthcheck").body(), "unhealthy: capture thread died\n");

    state.set_healthy();
    let reply = get(addr, "/-/healthcheck");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body(), "OK\n");
    assert_eq!(state.unhealthy_reason(), None);

    assert!(!state.is_draining());
    state.set_draining();
    assert!(state.is_draining());
    let reply = get(addr, "/-/healthcheck");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body(), "draining\n");

    // Draining wins over unhealthy and survives set_healthy.
    state.set_unhealthy("x");
    assert_eq!(get(addr, "/-/healthcheck").body(), "draining\n");
    state.set_healthy();
    assert_eq!(get(addr, "/-/healthcheck").status, 503);
    assert!(!state.is_healthy());

    // Ping and metrics are unaffected.
    assert_eq!(get(addr, "/-/ping").status, 200);
    assert_eq!(get(addr, "/metrics").status, 200);
}

#[test]
fn state_changes_show_on_a_kept_alive_connection() {
    let state = HealthState::new();
    let server = start(&state);
    let mut stream = connect(server.local_addr());
    assert_eq!(keep_alive_get(&mut stream, "/-/healthcheck").status, 200);
    state.set_draining();
    let reply = keep_alive_get(&mut stream, "/-/healthcheck");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body(), "draining\n");
}

#[test]
fn bind_error_names_the_address() {
    let taken = std::net::TcpListener::bind(localhost()).unwrap();
    let addr = taken.local_addr().unwrap();
    let err = HealthServer::start(addr, HealthState::new(), metrics_const("")).unwrap_err();
    assert!(
        matches!(&err, HealthError::Bind { addr: a, error } if *a == addr && error.kind() == ErrorKind::AddrInUse)
    );
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
}

#[test]
fn shutdown_is_prompt_with_an_idle_keep_alive_client() {
    let server = start(&HealthState::new());
    let addr = server.local_addr();
    let mut idle = connect(addr);
    assert_eq!(keep_alive_get(&mut idle, "/-/ping").status, 200);

    let started = Instant::now();
    server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "shutdown took {took:?}");

    assert!(closed_without_reply(&mut idle), "idle connection left open");
    assert!(TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

#[test]
fn drop_shuts_down() {
    let server = start(&HealthState::new());
    let addr = server.local_addr();
    let _idle = connect(addr);
    drop(server);
    assert!(TcpStream::connect(addr).is_err(), "still accepting after drop");
}

#[test]
fn slow_headers_are_cut_off() {
    let limits = Limits { header_read_timeout: Duration::from_millis(200), ..Limits::DEFAULT };
    let server =
        HealthServer::start_with(localhost(), HealthState::new(), metrics_const(""), limits).unwrap();
    let mut slow = connect(server.local_addr());
    let started = Instant::now();
    slow.write_all(b"GET /-/ping HTTP/1.1\r\nHost: te").unwrap();
    let mut rest = Vec::new();
    // The server may answer 408 before closing, or just close; either way it must not wait for us.
    let _ = slow.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("PONG"));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());

    // An idle connection that never sends anything is closed too.
    let mut silent = connect(server.local_addr());
    let started = Instant::now();
    assert!(closed_without_reply(&mut silent));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let limits = Limits { max_connections: 4, ..Limits::DEFAULT };
    let server =
        HealthServer::start_with(localhost(), HealthState::new(), metrics_const(""), limits).unwrap();
    let addr = server.local_addr();
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    for stream in &mut held {
        assert_eq!(keep_alive_get(stream, "/-/ping").status, 200);
    }

    let mut extra = connect(addr);
    let _ = extra.write_all(b"GET /-/ping HTTP/1.1\r\nHost: test\r\n\r\n");
    let started = Instant::now();
    assert!(closed_without_reply(&mut extra), "connection over the limit was served");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Freeing a slot lets new connections in again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = connect(addr);
        if stream.write_all(b"GET /-/ping HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").is_ok() {
            let mut raw = Vec::new();
            let _ = stream.read_to_end(&mut raw);
            if raw.starts_with(b"HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The held connections still work.
    for stream in &mut held {
        assert_eq!(keep_alive_get(stream, "/-/ping").status, 200);
    }
}

#[test]
fn state_handle_is_shared_between_clones() {
    let state = HealthState::new();
    let other = state.clone();
    other.set_unhealthy("boom");
    assert_eq!(state.unhealthy_reason().as_deref(), Some("boom"));
    other.set_draining();
    assert!(state.is_draining());
}

#[test]
fn types_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HealthState>();
    assert_send_sync::<HealthServer>();
    assert_send_sync::<HealthError>();
}
