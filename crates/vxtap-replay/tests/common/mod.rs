//! Test helpers: a recording HTTP/1.1 server on 127.0.0.1 (plain or TLS) with its own runtime, job
//! builders, and memory readings.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use vxtap_http::{Header, Request};
use vxtap_replay::ReplayJob;

/// One request as it arrived, bytes exactly as on the wire.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub version: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub conn: u64,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v.as_slice())
    }
}

/// How the server answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour {
    /// Wait this long before each answer.
    pub delay: Duration,
    /// Vary the answer by the request's `X-Test-Respond` header (see `respond`).
    pub varied: bool,
    /// Do not record (for throughput runs): only count.
    pub count_only: bool,
    /// Close the connection 20 ms after each answer without saying so (no `Connection: close`) and
    /// without reading what came meanwhile, as a target's keep-alive timeout does: the client must
    /// neither lose nor repeat a request.
    pub close_silently: bool,
}

pub struct Server {
    pub addr: SocketAddr,
    pub records: Arc<Mutex<Vec<Recorded>>>,
    pub count: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    pub protocol_errors: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    pub fn start(behaviour: Behaviour) -> Server {
        Self::start_inner(behaviour, None)
    }

    pub fn start_tls(behaviour: Behaviour, tls: Arc<rustls::ServerConfig>) -> Server {
        Self::start_inner(behaviour, Some(tokio_rustls::TlsAcceptor::from(tls)))
    }

    fn start_inner(behaviour: Behaviour, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-server")
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let protocol_errors = Arc::new(AtomicU64::new(0));
        let st = State {
            behaviour,
            records: records.clone(),
            count: count.clone(),
            connections: connections.clone(),
            protocol_errors: protocol_errors.clone(),
        };
        let st = Arc::new(st);
        runtime.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                sock.set_nodelay(true).ok();
                let id = st.connections.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve(sock, id, st).await,
                        Some(acc) => {
                            if let Ok(s) = acc.accept(sock).await {
                                serve(s, id, st).await
                            }
                        }
                    }
                });
            }
        });
        Server { addr, records, count, connections, protocol_errors, _runtime: runtime }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until `n` requests were counted or `limit` passed.
    pub fn wait_for(&self, n: u64, limit: Duration) -> u64 {
        let start = Instant::now();
        while self.count.load(Ordering::Relaxed) < n && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.count.load(Ordering::Relaxed)
    }
}

struct State {
    behaviour: Behaviour,
    records: Arc<Mutex<Vec<Recorded>>>,
    count: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    protocol_errors: Arc<AtomicU64>,
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, conn: u64, st: Arc<State>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16384);
    let mut tmp = vec![0u8; 65536];
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = buf[..head_end - 4].to_vec();
        let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let line = lines.next().unwrap_or_default();
        let (Some(sp1), Some(sp2)) =
            (line.iter().position(|&b| b == b' '), line.iter().rposition(|&b| b == b' '))
        else {
            st.protocol_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let method = line[..sp1].to_vec();
        let target = line[sp1 + 1..sp2].to_vec();
        let version = line[sp2 + 1..].to_vec();
        let mut headers = Vec::new();
        for l in lines {
            let Some(c) = l.iter().position(|&b| b == b':') else {
                st.protocol_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let v = &l[c + 1..];
            let v = v.strip_prefix(b" ").unwrap_or(v);
            headers.push((l[..c].to_vec(), v.to_vec()));
        }
        let get = |name: &str| {
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v.clone())
        };
        if get("transfer-encoding").is_some()
            || headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"content-length")).count() > 1
        {
            st.protocol_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let len: usize =
            get("content-length").map(|v| String::from_utf8(v).unwrap().parse().unwrap()).unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let respond =
            if st.behaviour.varied { get("x-test-respond").unwrap_or_default() } else { Vec::new() };
        let is_head = method == b"HEAD";
        if !st.behaviour.count_only {
            st.records.lock().unwrap().push(Recorded {
                method,
                target,
                version,
                headers,
                body,
                conn,
                at: Instant::now(),
            });
        }
        st.count.fetch_add(1, Ordering::Relaxed);
        if !st.behaviour.delay.is_zero() {
            tokio::time::sleep(st.behaviour.delay).await;
        }
        let (answer, close): (Vec<u8>, bool) = match respond.as_slice() {
            b"chunked" => (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
                false,
            ),
            b"close" => (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye".to_vec(), true),
            b"continue" => (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n".to_vec(), false),
            b"204" => (b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), false),
            b"http10" => (b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec(), true),
            b"404" => (b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec(), false),
            b"503" => (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec(), false),
            b"big" => {
                let mut v = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
                v.resize(v.len() + 100_000, b'x');
                (v, false)
            }
            _ if is_head => (b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(), false),
            _ => (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false),
        };
        if s.write_all(&answer).await.is_err() {
            return;
        }
        if st.behaviour.close_silently {
            // Long enough for the client to reuse the connection: what it writes meanwhile is never
            // read, and the close resets the connection.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
        if close {
            let _ = s.shutdown().await;
            return;
        }
    }
}

/// A request with the given parts; `body_len` matches the body.
pub fn request(method: &[u8], target: &[u8], headers: &[(&[u8], &[u8])], body: &[u8]) -> Request {
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

/// A small GET job.
pub fn small_job(seq: u64) -> ReplayJob {
    let target = format!("/item/{seq}?q=1");
    let r = request(b"GET", target.as_bytes(), &[(b"Host", b"shop.example"), (b"User-Agent", b"t")], b"");
    ReplayJob::new(r, "10.0.0.7:50000".parse().unwrap(), "10.0.1.20:80".parse().unwrap(), seq)
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
pub fn proc_status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
