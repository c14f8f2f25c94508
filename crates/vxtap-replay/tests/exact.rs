//! Thousands of varied requests replayed to a recording server: each arrives exactly once, byte-exact,
//! with every added header right; hop-by-hop headers stripped; incomplete requests skipped.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::{Behaviour, Server};
use vxtap_http::{Header, Request};
use vxtap_replay::{Rejected, ReplayClient, ReplayConfig, ReplayJob};

const N: u64 = 3000;

type Hdr = (Vec<u8>, Vec<u8>);

/// `None` value: a generated request id (32 lowercase hex digits).
type Expected = (Vec<u8>, Vec<u8>, Vec<(Vec<u8>, Option<Vec<u8>>)>, Vec<u8>);

fn ip_text(a: SocketAddr) -> String {
    a.ip().to_string()
}

fn host_of(a: SocketAddr) -> String {
    let h = match a {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) => format!("[{}]", v.ip()),
    };
    if a.port() == 80 { h } else { format!("{h}:{}", a.port()) }
}

const METHODS: [&str; 11] =
    ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE", "M-SEARCH", "HEAD", "get", "PROPFIND"];
const RESPONDS: [&str; 10] = ["chunked", "close", "continue", "204", "http10", "404", "503", "big", "", ""];

/// The captured job for sequence number `i`, and what the target must receive for it.
fn generate(i: u64) -> (ReplayJob, Expected) {
    let client: SocketAddr = if i % 2 == 0 {
        format!("10.{}.{}.7:{}", i / 256 % 256, i % 256, 1024 + i).parse().unwrap()
    } else {
        format!("[2001:db8::{:x}]:{}", i, 1024 + i).parse().unwrap()
    };
    let server: SocketAddr =
        if i % 3 == 0 { "[2001:db8:1::20]:8080".parse().unwrap() } else { "10.0.1.20:80".parse().unwrap() };
    let method = METHODS[(i % 11) as usize].as_bytes().to_vec();
    let (target, exp_target, authority): (Vec<u8>, Vec<u8>, Option<&str>) = match i % 5 {
        0 if method == b"OPTIONS" => (b"*".to_vec(), b"*".to_vec(), None),
        0 => (format!("/p/{i}?q={i}").into_bytes(), format!("/p/{i}?q={i}").into_bytes(), None),
        1 => (
            format!("http://abs.example:8080/abs/{i}?x=1").into_bytes(),
            format!("/abs/{i}?x=1").into_bytes(),
            Some("abs.example:8080"),
        ),
        2 => {
            let mut t = format!("/raw/{i}/caf").into_bytes();
            t.extend_from_slice(b"\xe9\xff?q=\x80%zz");
            (t.clone(), t, None)
        }
        3 => (
            format!("http://abs2.example?i={i}").into_bytes(),
            format!("/?i={i}").into_bytes(),
            Some("abs2.example"),
        ),
        _ => (format!("/s p/{i}").into_bytes(), format!("/s%20p/{i}").into_bytes(), None),
    };
    let has_body = matches!(method.as_slice(), b"POST" | b"PUT" | b"PATCH") || i % 3 == 0;
    let body: Vec<u8> = if !has_body {
        Vec::new()
    } else {
        let n = if i % 50 == 0 { 40_000 } else { (i * 37 % 3000) as usize };
        (0..n).map(|k| (i as usize + k) as u8).collect()
    };

    let mut cap: Vec<Hdr> = Vec::new();
    let mut exp: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let both = |cap: &mut Vec<Hdr>, exp: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>, n: &[u8], v: &[u8]| {
        cap.push((n.to_vec(), v.to_vec()));
        exp.push((n.to_vec(), Some(v.to_vec())));
    };
    let no_host = i % 7 == 0;
    if no_host {
        let h = authority.map(str::to_string).unwrap_or_else(|| host_of(server));
        exp.push((b"Host".to_vec(), Some(h.into_bytes())));
    } else {
        let name: &[u8] = if i % 2 == 0 { b"Host" } else { b"host" };
        both(&mut cap, &mut exp, name, format!("shop{}.example", i % 4).as_bytes());
    }
    both(&mut cap, &mut exp, b"X-Test-Seq", i.to_string().as_bytes());
    both(&mut cap, &mut exp, b"User-Agent", format!("ua/{i}").as_bytes());
    if i % 4 == 0 {
        cap.push((b"Connection".to_vec(), b"keep-alive, X-Hop".to_vec()));
        cap.push((b"X-Hop".to_vec(), b"secret".to_vec()));
        cap.push((b"Keep-Alive".to_vec(), b"timeout=5".to_vec()));
    }
    if i % 6 == 0 {
        cap.push((b"Upgrade".to_vec(), b"h2c".to_vec()));
        cap.push((b"TE".to_vec(), b"trailers".to_vec()));
        cap.push((b"Proxy-Connection".to_vec(), b"keep-alive".to_vec()));
        cap.push((b"Trailer".to_vec(), b"X-T".to_vec()));
    }
    both(&mut cap, &mut exp, b"X-Dup", format!("a{i}").as_bytes());
    both(&mut cap, &mut exp, b"x-other", b"o");
    let xff = i % 5 == 0;
    if xff {
        let orig = format!("203.0.113.{}", i % 250);
        cap.push((b"X-Forwarded-For".to_vec(), orig.clone().into_bytes()));
        exp.push((b"X-Forwarded-For".to_vec(), Some(format!("{orig}, {}", ip_text(client)).into_bytes())));
    }
    both(&mut cap, &mut exp, b"X-DUP", format!("b{i}").as_bytes());
    let own_id = i % 9 == 0;
    if own_id {
        both(&mut cap, &mut exp, b"X-Request-ID", format!("orig-{i}").as_bytes());
    }
    let own_proto = i % 8 == 0;
    if own_proto {
        both(&mut cap, &mut exp, b"X-Forwarded-Proto", b"https");
    }
    let mut raw = format!("{i} ").into_bytes();
    raw.extend_from_slice(b"\xff\x80 caf\xe9");
    both(&mut cap, &mut exp, b"X-Raw", &raw);
    if has_body {
        if i % 2 == 0 {
            cap.push((b"Transfer-Encoding".to_vec(), b"chunked".to_vec()));
        } else {
            cap.push((b"Content-Length".to_vec(), body.len().to_string().into_bytes()));
        }
        exp.push((b"Content-Length".to_vec(), Some(body.len().to_string().into_bytes())));
    }
    if method != b"HEAD" {
        both(&mut cap, &mut exp, b"X-Test-Respond", RESPONDS[(i % 10) as usize].as_bytes());
    }
    both(&mut cap, &mut exp, b"Accept", b"*/*");
    // Added headers, in order.
    if !xff {
        exp.push((b"X-Forwarded-For".to_vec(), Some(ip_text(client).into_bytes())));
    }
    exp.push((b"X-Forwarded-Port".to_vec(), Some(client.port().to_string().into_bytes())));
    if !own_proto {
        exp.push((b"X-Forwarded-Proto".to_vec(), Some(b"http".to_vec())));
    }
    exp.push((b"X-Scheme".to_vec(), Some(b"http".to_vec())));
    exp.push((b"X-Server-Addr".to_vec(), Some(ip_text(server).into_bytes())));
    exp.push((b"X-Server-Port".to_vec(), Some(server.port().to_string().into_bytes())));
    if !own_id {
        exp.push((b"X-Request-ID".to_vec(), None));
    }

    let request = Request {
        method: method.clone(),
        target,
        protocol: if no_host { b"HTTP/1.0".to_vec() } else { b"HTTP/1.1".to_vec() },
        headers: cap.into_iter().map(|(name, value)| Header { name, value }).collect(),
        body_len: body.len() as u64,
        body: body.clone(),
        ..Request::default()
    };
    (ReplayJob::new(request, client, server, i), (method, exp_target, exp, body))
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_request_arrives_once_exact() {
    let server = Server::start(Behaviour { varied: true, ..Behaviour::default() });
    let mut cfg = ReplayConfig::new(server.url());
    cfg.concurrency = 32;
    cfg.queue_capacity = 256;
    let client = ReplayClient::start(cfg).unwrap();

    let mut expected = HashMap::new();
    let mut jobs = Vec::new();
    for i in 0..N {
        let (job, exp) = generate(i);
        expected.insert(i, exp);
        jobs.push(job);
    }
    // Incomplete requests: never replayed, counted.
    let mut gap = generate(N + 1).0;
    gap.request.gap = true;
    let mut cut = generate(N + 2).0;
    cut.request.body_truncated = true;
    let mut short = generate(N + 3).0;
    short.request.body_len = short.request.body.len() as u64 + 10;
    assert_eq!(client.sender().submit(gap), Err(Rejected::Gap));
    assert_eq!(client.sender().submit(cut), Err(Rejected::Truncated));
    assert_eq!(client.sender().submit(short), Err(Rejected::Truncated));

    // Two producer threads, as engine workers.
    let odd: Vec<ReplayJob> = jobs.iter().filter(|j| j.capture_ts_us % 2 == 1).cloned().collect();
    let even: Vec<ReplayJob> = jobs.into_iter().filter(|j| j.capture_ts_us % 2 == 0).collect();
    std::thread::scope(|s| {
        for part in [odd, even] {
            let sender = client.sender();
            s.spawn(move || {
                for job in part {
                    sender.submit_wait(job, Duration::from_secs(30)).unwrap();
                }
            });
        }
    });
    let stats = client.finish(Duration::from_secs(60));
    eprintln!("{stats:#?}");
    assert_eq!(stats.accepted, N);
    assert_eq!(stats.sent, N, "{stats:?}");
    assert_eq!(stats.failed.total(), 0);
    assert_eq!((stats.skipped_gap, stats.skipped_truncated), (1, 2));
    assert_eq!((stats.dropped_queue_full, stats.dropped_closed, stats.abandoned), (0, 0, 0));
    assert_eq!((stats.in_flight, stats.queue_depth, stats.queue_bytes), (0, 0, 0));
    assert_eq!(stats.latency.count, N);

    // Response classes as the server varied them (HEAD requests get the default 200).
    let respond =
        |i: u64| if METHODS[(i % 11) as usize] == "HEAD" { "" } else { RESPONDS[(i % 10) as usize] };
    let c404 = (0..N).filter(|&i| respond(i) == "404").count() as u64;
    let c503 = (0..N).filter(|&i| respond(i) == "503").count() as u64;
    assert_eq!(stats.status.client_error, c404);
    assert_eq!(stats.status.server_error, c503);
    assert_eq!(stats.status.success, N - c404 - c503);

    // Keep-alive: new connections only where the server closed one, plus the pool's own.
    let closing = (0..N).filter(|&i| matches!(respond(i), "close" | "http10")).count() as u64;
    let conns = server.connections.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("connections: {conns} (server-closed answers: {closing}), retries: {}", stats.retries);
    assert!(conns <= closing + 2 * 32 + stats.retries, "connections {conns}");
    assert_eq!(stats.connections_opened, conns);

    assert_eq!(server.protocol_errors.load(std::sync::atomic::Ordering::Relaxed), 0);
    let records = server.records();
    assert_eq!(records.len() as u64, N);
    let mut seen = HashSet::new();
    let mut ids = HashSet::new();
    let mut header_ok = 0;
    for r in &records {
        let seq: u64 = show(r.header("X-Test-Seq").expect("seq header")).parse().unwrap();
        assert!(seen.insert(seq), "request {seq} arrived twice");
        let (method, target, headers, body) = &expected[&seq];
        assert_eq!(show(&r.method), show(method), "method of {seq}");
        assert_eq!(r.target, *target, "target of {seq}: {}", show(&r.target));
        assert_eq!(r.version, b"HTTP/1.1");
        assert_eq!(r.body.len(), body.len(), "body of {seq}");
        assert!(r.body == *body, "body of {seq}");
        let got: Vec<String> = r.headers.iter().map(|(n, v)| format!("{}: {}", show(n), show(v))).collect();
        assert_eq!(r.headers.len(), headers.len(), "headers of {seq}:\n{got:#?}\nexpected {headers:?}");
        for ((gn, gv), (en, ev)) in r.headers.iter().zip(headers) {
            assert_eq!(show(gn), show(en), "header order of {seq}:\n{got:#?}");
            match ev {
                Some(ev) => {
                    assert!(gv == ev, "{seq}: {}: got {:?} expected {:?}", show(en), show(gv), show(ev))
                }
                None => {
                    assert!(
                        gv.len() == 32 && gv.iter().all(|b| b.is_ascii_hexdigit()),
                        "{seq}: id {}",
                        show(gv)
                    );
                    assert!(ids.insert(gv.clone()), "request id repeated");
                }
            }
        }
        header_ok += 1;
    }
    assert_eq!(seen.len() as u64, N);
    eprintln!("delivered {} / exact {} / header-correct {header_ok} of {N}", records.len(), seen.len());
}
