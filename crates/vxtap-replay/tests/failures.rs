//! Failure kinds, retries on a closed keep-alive connection, closed client, config errors.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Behaviour, Server, request, small_job};
use vxtap_replay::{Rejected, ReplayClient, ReplayConfig, ReplayError, ReplayJob};
use vxtap_testgen::ports::unused_port;

#[test]
fn target_closing_idle_connections_loses_and_repeats_nothing() {
    let server = Server::start(Behaviour { close_silently: true, ..Behaviour::default() });
    let mut cfg = ReplayConfig::new(server.url());
    cfg.concurrency = 4;
    let client = ReplayClient::start(cfg).unwrap();
    let sender = client.sender();
    const N: u64 = 300;
    for i in 0..N {
        sender.submit_wait(small_job(i), Duration::from_secs(10)).unwrap();
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let stats = client.finish(Duration::from_secs(30));
    eprintln!("{stats:?}");
    assert_eq!(stats.sent, N, "{stats:?}");
    let targets: HashSet<Vec<u8>> = server.records().into_iter().map(|r| r.target).collect();
    assert_eq!(targets.len() as u64, N);
    assert_eq!(server.records().len() as u64, N, "a request arrived twice");
}

/// A one-shot raw TCP server answering every connection with `answer` (or nothing).
fn raw_server(answer: Option<&'static [u8]>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut buf);
            match answer {
                Some(a) => {
                    let _ = s.write_all(a);
                }
                None => held.push(s), // never answer, keep it open
            }
            if held.len() > 100 {
                break;
            }
        }
    });
    port
}

fn one(url: String, job: ReplayJob, timeout: Duration) -> vxtap_replay::ReplayStats {
    let mut cfg = ReplayConfig::new(url);
    cfg.timeout = timeout;
    let client = ReplayClient::start(cfg).unwrap();
    client.sender().submit(job).unwrap();
    client.finish(Duration::from_secs(10))
}

#[test]
fn failure_kinds() {
    // Not HTTP at all.
    let port = raw_server(Some(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"));
    let s = one(format!("http://127.0.0.1:{port}"), small_job(1), Duration::from_secs(5));
    assert_eq!((s.failed.http, s.sent), (1, 0), "{s:?}");
    // Closed before any response.
    let port = raw_server(Some(b""));
    let s = one(format!("http://127.0.0.1:{port}"), small_job(1), Duration::from_secs(5));
    assert_eq!(s.failed.io, 1, "{s:?}");
    // Response cut short.
    let port = raw_server(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
    let s = one(format!("http://127.0.0.1:{port}"), small_job(1), Duration::from_secs(5));
    assert_eq!(s.failed.io, 1, "{s:?}");
    // Never answers: per-request timeout.
    let port = raw_server(None);
    let start = Instant::now();
    let s = one(format!("http://127.0.0.1:{port}"), small_job(1), Duration::from_millis(300));
    assert_eq!(s.failed.timeout, 1, "{s:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    // Closed port.
    let s = one(format!("http://127.0.0.1:{}", unused_port()), small_job(1), Duration::from_secs(5));
    assert_eq!(s.failed.connect, 1, "{s:?}");
    // A request that cannot be written: counted, not sent, no panic.
    let server = Server::start(Behaviour::default());
    let bad = request(b"GET", b"/", &[(b"Host", b"h"), (b"X-Split", b"a\r\nInjected: 1")], b"");
    let job = ReplayJob::new(bad, "10.0.0.1:1".parse().unwrap(), "10.0.0.2:80".parse().unwrap(), 0);
    let s = one(server.url(), job, Duration::from_secs(5));
    assert_eq!(s.failed.invalid, 1, "{s:?}");
    assert!(server.records().is_empty());
    // Response status classes and a response without a body for HEAD.
    let port = raw_server(Some(b"HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n"));
    let s = one(format!("http://127.0.0.1:{port}"), small_job(1), Duration::from_secs(5));
    assert_eq!((s.sent, s.status.redirect), (1, 1), "{s:?}");
}

#[test]
fn closed_client_and_bad_config() {
    let server = Server::start(Behaviour::default());
    let client = ReplayClient::start(ReplayConfig::new(server.url())).unwrap();
    let sender = client.sender();
    sender.submit(small_job(1)).unwrap();
    let stats = client.finish(Duration::from_secs(5));
    assert_eq!(stats.sent, 1);
    assert_eq!(sender.submit(small_job(2)), Err(Rejected::Closed));
    assert_eq!(sender.stats().dropped_closed, 1);

    for url in ["ftp://x", "http://h/path", "127.0.0.1:80"] {
        assert!(
            matches!(ReplayClient::start(ReplayConfig::new(url)), Err(ReplayError::Target { .. })),
            "{url}"
        );
    }
    let mut cfg = ReplayConfig::new("https://127.0.0.1:1");
    cfg.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(matches!(ReplayClient::start(cfg), Err(ReplayError::CaFile { .. })));
    let mut cfg = ReplayConfig::new("http://127.0.0.1:1");
    cfg.concurrency = 0;
    assert!(matches!(ReplayClient::start(cfg), Err(ReplayError::Config(_))));

    // Dropping a client without finish abandons what is queued (counted), and returns at once.
    let mut cfg = ReplayConfig::new(format!("http://127.0.0.1:{}", unused_port()));
    cfg.pacing = vxtap_replay::Pacing::Original;
    let client = ReplayClient::start(cfg).unwrap();
    let sender = client.sender();
    for i in 0..10 {
        let mut j = small_job(i);
        j.capture_ts_us = i * 10_000_000; // 10 s apart
        sender.submit(j).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    drop(client);
    assert!(start.elapsed() < Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(200)); // the runtime stops in the background
    let s = sender.stats();
    assert_eq!(s.accepted, 10);
    assert_eq!(s.failed.connect + s.abandoned, 10, "{s:?}");
}

#[test]
fn idle_connections_expire_and_are_reused_before() {
    let server = Server::start(Behaviour::default());
    let mut cfg = ReplayConfig::new(server.url());
    cfg.pool_idle_timeout = Duration::from_millis(300);
    let client = ReplayClient::start(cfg).unwrap();
    let sender = client.sender();
    sender.submit(small_job(1)).unwrap();
    server.wait_for(1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(50));
    sender.submit(small_job(2)).unwrap(); // reuses the connection
    server.wait_for(2, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800)); // expires it
    sender.submit(small_job(3)).unwrap();
    let stats = client.finish(Duration::from_secs(5));
    assert_eq!((stats.sent, stats.connections_opened, stats.retries), (3, 2, 0), "{stats:?}");
}

#[test]
fn finish_inside_an_async_runtime_does_not_panic() {
    let server = Server::start(Behaviour::default());
    let client = ReplayClient::start(ReplayConfig::new(server.url())).unwrap();
    client.sender().submit(small_job(1)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stats = rt.block_on(async move { client.finish(Duration::from_secs(5)) });
    assert_eq!(stats.sent, 1);
}
