//! `vxtap pcap --replay`: every request of a generated mirror capture reaches a recording HTTP
//! server exactly once, exact, with the forwarding headers a filtering node needs; a dead target
//! costs counted failures and a prompt exit, never a hang.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{summary, vxtap, write_pcap};
use vxtap_http::{Conversation, HttpConfig, Output, Peer, Request};
use vxtap_testgen::mix::{MixParams, generate_mix};
use vxtap_testgen::score::as_event_text;

/// Accepts connections on 127.0.0.1 and parses every request with vxtap's own HTTP parser.
fn recording_server() -> (SocketAddr, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let store = store.clone();
            std::thread::spawn(move || {
                let cfg = HttpConfig { body_limit: 64 << 20, ..HttpConfig::default() };
                let mut parser = Conversation::new(cfg, Some(Peer::A));
                let mut buf = vec![0u8; 1 << 16];
                let mut out = Vec::new();
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    parser.on_data(Peer::A, &buf[..n], 0);
                    parser.drain(&mut out);
                    for o in out.drain(..) {
                        if let Output::Transaction(tx) = o {
                            store.lock().unwrap().push(tx.request);
                            if conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a [u8]> {
    r.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name.as_bytes())).map(|h| h.value.as_slice())
}

/// The origin-form a replayed request carries for a captured target.
fn origin_form(target: &[u8]) -> Vec<u8> {
    for scheme in [&b"http://"[..], b"https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return match rest.iter().position(|&b| b == b'/') {
                Some(at) => rest[at..].to_vec(),
                None => b"/".to_vec(),
            };
        }
    }
    target.to_vec()
}

#[test]
fn every_request_replayed_once_exact_with_forwarding_headers() {
    let (addr, seen) = recording_server();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mix.pcap");
    let mix =
        generate_mix(&MixParams { seed: 51, connections: 400, ipv6_fraction: 0.4, ..MixParams::default() });
    write_pcap(&mix, &pcap);
    let target = format!("http://{addr}");
    let out = vxtap(&["pcap", pcap.to_str().unwrap(), "--replay", &target, "--body-limit", "16MiB"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = summary(&out);
    assert_eq!(summary["replay"]["sent"].as_u64(), Some(mix.expected.len() as u64), "{summary}");

    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), mix.expected.len(), "each request exactly once");
    let mut by_id: HashMap<Vec<u8>, usize> = HashMap::new();
    for r in &got {
        *by_id.entry(header(r, "x-request-id").unwrap_or_default().to_vec()).or_default() += 1;
    }
    let mut remaining: Vec<&Request> = got.iter().collect();
    for e in &mix.expected {
        let at = remaining
            .iter()
            .position(|r| {
                r.method == e.method.as_bytes()
                    && r.target == origin_form(&e.target)
                    && header(r, "x-forwarded-port") == Some(e.src.port().to_string().as_bytes())
                    && header(r, "x-server-port") == Some(e.dst.port().to_string().as_bytes())
                    && r.body == e.body
            })
            .unwrap_or_else(|| panic!("not replayed exactly: {} {}", e.method, as_event_text(&e.target)));
        // Replays run concurrently, so the same request line on one connection may arrive in any
        // order: a request is matched by its body too.
        let r = remaining.swap_remove(at);
        let xff = header(r, "x-forwarded-for").unwrap();
        assert!(xff.ends_with(e.src.ip().to_string().as_bytes()), "{}", String::from_utf8_lossy(xff));
        assert_eq!(header(r, "x-server-addr"), Some(e.dst.ip().to_string().as_bytes()));
        assert_eq!(header(r, "x-scheme"), Some(&b"http"[..]));
        assert!(header(r, "x-forwarded-proto").is_some());
        let host = header(r, "host").map(<[u8]>::to_vec);
        if let Some(expected_host) = &e.host {
            assert_eq!(host.as_deref(), Some(expected_host.as_bytes()), "Host stays the original");
        }
        assert!(header(r, "transfer-encoding").is_none(), "bodies go with Content-Length");
    }
    assert!(by_id.values().all(|&n| n == 1), "X-Request-ID unique per request");
}

#[test]
fn dead_target_is_counted_and_pcap_still_finishes_promptly() {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mix.pcap");
    let mix = generate_mix(&MixParams { seed: 52, connections: 200, ..MixParams::default() });
    write_pcap(&mix, &pcap);
    let started = Instant::now();
    let out = vxtap(&["pcap", pcap.to_str().unwrap(), "--replay", &format!("http://{dead}")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let summary = summary(&out);
    let failed = summary["replay"]["failed"].as_u64().unwrap();
    let dropped = summary["replay"]["dropped"].as_u64().unwrap();
    assert_eq!(failed + dropped, mix.expected.len() as u64, "{summary}");
    assert_eq!(summary["requests"].as_u64(), Some(mix.expected.len() as u64), "events still written");
}
