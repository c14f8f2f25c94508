//! HTTP/2 copies (cleartext prior knowledge, or TLS with ALPN `h2`): hyper's HTTP/2 server.

use std::convert::Infallible;
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::header::{COOKIE, HOST};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use vxtap_http::{Header, Request};

use crate::body::BodyBuf;
use crate::server::{ConnInfo, Shared, deliver, now_us};
use crate::stats::Counters;

/// Streams under way and the time the last one ended, for the idle timeout.
#[derive(Default)]
struct Activity {
    active: AtomicUsize,
    last_end_us: AtomicU64,
}

struct ActiveGuard<'a>(&'a Activity);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.last_end_us.store(now_us(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one HTTP/2 connection until the peer closes it, it stays idle for `idle_timeout`, or the
/// server shuts down (GOAWAY, streams under way finish).
pub(crate) async fn serve<T>(io: T, info: ConnInfo, shared: &Arc<Shared>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &shared.cfg;
    let activity = Arc::new(Activity { active: AtomicUsize::new(0), last_end_us: AtomicU64::new(now_us()) });
    let svc = {
        let shared = shared.clone();
        let activity = activity.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            let activity = activity.clone();
            async move { Ok::<_, Infallible>(handle(req, info, &shared, &activity).await) }
        })
    };
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(cfg.max_head_bytes).unwrap_or(u32::MAX))
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(None)
        .auto_date_header(false);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut shutdown = shared.shutdown.clone();
    let idle = cfg.idle_timeout;
    let check = (idle / 4).max(Duration::from_millis(10));
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = shutdown.wait_for(Option::is_some), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep(check), if !closing => {
                let since = now_us().saturating_sub(activity.last_end_us.load(Ordering::Relaxed));
                if activity.active.load(Ordering::Relaxed) == 0 && since >= idle.as_micros() as u64 {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    };
    if let Err(e) = result {
        // A broken socket is not a protocol error; anything else (bad frames, floods) is.
        let mut source: Option<&dyn std::error::Error> = e.source();
        let mut io = false;
        while let Some(s) = source {
            io |= s.is::<std::io::Error>();
            source = s.source();
        }
        if !io {
            Counters::inc(&shared.stats.parse_errors);
        }
    }
}

fn answer(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut r = Response::new(Empty::new());
    *r.status_mut() = status;
    r
}

async fn handle(
    req: hyper::Request<Incoming>,
    info: ConnInfo,
    shared: &Shared,
    activity: &Activity,
) -> Response<Empty<Bytes>> {
    let start_ts = now_us();
    activity.active.fetch_add(1, Ordering::Relaxed);
    let _guard = ActiveGuard(activity);
    let stats = &shared.stats;
    if !info.allowed {
        Counters::inc(&stats.refused);
        return answer(StatusCode::FORBIDDEN);
    }
    let (parts, mut body) = req.into_parts();
    let mut kept = BodyBuf::new(shared.cfg.body_limit, body.size_hint().exact(), &shared.budget);
    let mut gap = false;
    let mut broken = false;
    let mut timeout = shared.cfg.body_start_timeout;
    loop {
        match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => {
                Counters::inc(&stats.body_timeouts);
                gap = true;
                break;
            }
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    kept.push(data);
                }
                timeout = shared.cfg.body_timeout;
            }
            Ok(Some(Err(_))) => {
                Counters::inc(&stats.body_incomplete);
                gap = true;
                broken = true;
                break;
            }
        }
    }
    drop(body);
    let request = Request {
        method: parts.method.as_str().as_bytes().to_vec(),
        target: target(&parts.uri),
        protocol: b"HTTP/2".to_vec(),
        headers: http1_headers(&parts.uri, &parts.headers),
        body_truncated: kept.truncated(),
        body_len: kept.len,
        body: std::mem::take(&mut kept.kept),
        gap,
        start_ts,
        end_ts: now_us(),
    };
    if kept.starved {
        Counters::inc(&stats.budget_truncated);
    }
    drop(kept);
    deliver(shared, &info, request);
    if !broken {
        Counters::inc(&stats.answered);
    }
    answer(StatusCode::NO_CONTENT)
}

/// `:path` (origin-form or `*`); for CONNECT, the authority.
fn target(uri: &hyper::Uri) -> Vec<u8> {
    match uri.path_and_query() {
        Some(pq) => pq.as_str().as_bytes().to_vec(),
        None => uri.authority().map_or_else(|| b"/".to_vec(), |a| a.as_str().as_bytes().to_vec()),
    }
}

/// HTTP/2 fields as HTTP/1 header lines: `:authority` first as `Host` (a `host` field is dropped
/// when `:authority` is there), names capitalised as HTTP/1 writes them, `cookie` crumbs joined
/// with `; ` into one `Cookie` line (RFC 9113 §8.2.3), otherwise in the order received.
fn http1_headers(uri: &hyper::Uri, fields: &hyper::HeaderMap) -> Vec<Header> {
    let mut out = Vec::with_capacity(fields.len() + 1);
    let authority = uri.authority();
    if let Some(a) = authority {
        out.push(Header { name: b"Host".to_vec(), value: a.as_str().as_bytes().to_vec() });
    }
    let mut cookie: Option<usize> = None;
    for (name, value) in fields {
        if name == HOST && authority.is_some() {
            continue;
        }
        if name == COOKIE {
            if let Some(i) = cookie {
                out[i].value.extend_from_slice(b"; ");
                out[i].value.extend_from_slice(value.as_bytes());
                continue;
            }
            cookie = Some(out.len());
        }
        out.push(Header { name: title_case(name.as_str()), value: value.as_bytes().to_vec() });
    }
    out
}

/// `content-type` → `Content-Type`, `x-request-id` → `X-Request-Id`.
fn title_case(name: &str) -> Vec<u8> {
    let mut up = true;
    name.bytes()
        .map(|b| {
            let c = if up { b.to_ascii_uppercase() } else { b };
            up = b == b'-';
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_fields_become_http1_lines() {
        let uri: hyper::Uri = "https://shop.example-shadow:8443/p?q=1".parse().unwrap();
        let mut map = hyper::HeaderMap::new();
        map.append("cookie", "a=1".parse().unwrap());
        map.append("x-request-id", "r1".parse().unwrap());
        map.append("cookie", "b=2".parse().unwrap());
        map.append("host", "ignored".parse().unwrap());
        let hs = http1_headers(&uri, &map);
        let got: Vec<(String, String)> = hs
            .iter()
            .map(|h| (String::from_utf8_lossy(&h.name).into(), String::from_utf8_lossy(&h.value).into()))
            .collect();
        let want = [("Host", "shop.example-shadow:8443"), ("Cookie", "a=1; b=2"), ("X-Request-Id", "r1")];
        assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
        assert_eq!(target(&uri), b"/p?q=1");
    }
}
