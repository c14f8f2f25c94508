//! `vxtap listen --http-mirror`: copies from a proxy are answered 204 at once and become the same
//! `http` events as packet input, with the real client and server when the proxy is trusted and
//! the proxy's own address when it is not.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{http_get, signal, wait_for};
use vxtap_testgen::ports::unused_port;

/// Sends one copy the way nginx's reference `mirror` configuration does; returns the status line.
fn send_copy(port: u16, path: &str, body: &[u8], xff: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.0\r\nHOST: shop.example-shadow:8080\r\nX-SERVER-PORT: 443\r\nX-SERVER-ADDR: 10.0.1.20\r\n\
         X-Forwarded-For: {xff}\r\nX-Forwarded-Port: 51234\r\nX-Request-ID: req-{path}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

fn run(trusted: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("eve.json");
    let (mirror, health) = (unused_port(), unused_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .args(["listen", "--udp", "off", "--http-mirror", &format!("127.0.0.1:{mirror}")])
        .args(["--trusted-proxies", trusted, "--health", &format!("127.0.0.1:{health}")])
        .args(["--events", events.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("health", || http_get(health, "/-/healthcheck").is_some_and(|(s, _)| s == 200));
    wait_for("mirror", || TcpStream::connect(("127.0.0.1", mirror)).is_ok());
    let big = vec![b'q'; 300_000];
    assert_eq!(send_copy(mirror, "/login?x=1", b"{\"a\":1}", "198.51.100.7"), "HTTP/1.1 204 No Content");
    assert_eq!(send_copy(mirror, "/upload", &big, "203.0.113.1, 198.51.100.8"), "HTTP/1.1 204 No Content");
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(&events).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn trusted_proxy_copies_become_events_with_the_real_addresses() {
    let events = run("127.0.0.1/32");
    let http: Vec<_> = events.iter().filter(|e| e["event_type"] == "http").collect();
    assert_eq!(http.len(), 2);
    let login = http.iter().find(|e| e["http"]["url"] == "/login?x=1").unwrap();
    assert_eq!(login["src_ip"], "198.51.100.7");
    assert_eq!(login["src_port"], 51234);
    assert_eq!(login["dest_ip"], "10.0.1.20");
    assert_eq!(login["dest_port"], 443);
    assert_eq!(login["mirror"]["type"], "http");
    assert_eq!(login["mirror"]["peer_ip"], "127.0.0.1");
    assert!(login.get("tunnel").is_none());
    assert_eq!(login["http"]["hostname"], "shop.example");
    assert_eq!(login["http"]["request_id"], "req-/login?x=1");
    assert_eq!(login["http"]["http_method"], "POST");
    let body = base64::engine::general_purpose::STANDARD
        .decode(login["http"]["http_request_body"].as_str().unwrap());
    assert_eq!(body.unwrap(), b"{\"a\":1}");
    let upload = http.iter().find(|e| e["http"]["url"] == "/upload").unwrap();
    assert_eq!(upload["src_ip"], "198.51.100.8", "rightmost untrusted X-Forwarded-For address");
    assert_eq!(upload["http"]["request_body_len"], 300_000);
}

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_never_believed() {
    let events = run("10.0.0.0/8");
    let http: Vec<_> = events.iter().filter(|e| e["event_type"] == "http").collect();
    assert_eq!(http.len(), 2);
    for e in http {
        assert_eq!(e["src_ip"], "127.0.0.1", "{e}");
        assert_eq!(e["dest_ip"], "127.0.0.1", "{e}");
        let headers = e["http"]["request_headers"].as_array().unwrap();
        assert!(headers.iter().any(|h| h["name"] == "X-Forwarded-For"), "kept as a header");
    }
}
