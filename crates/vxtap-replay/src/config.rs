//! Configuration: target URL, limits, header policy, pacing.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ReplayError;

/// How offline input (`vxtap pcap --replay`) is paced. Live input uses [`Pacing::AsFastAsPossible`].
///
/// Pacing is by [`ReplayJob::capture_ts_us`](crate::ReplayJob::capture_ts_us) relative to the first job
/// the client dispatches: a job captured `d` µs after the first one is sent `d / multiple` µs after the
/// first one was sent (or at once if that moment has passed). A job whose timestamp is earlier than the
/// first job's is sent at once.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Pacing {
    /// Send every job as soon as a connection slot is free (default).
    #[default]
    AsFastAsPossible,
    /// Keep the captured timing (goreplay's `--input-file "file|100%"`).
    Original,
    /// The captured timing sped up by this factor: `2.0` is twice as fast (goreplay's `"file|200%"`),
    /// `0.5` half as fast. Must be finite and positive.
    Multiple(f64),
}

impl Pacing {
    /// The speed-up factor, `None` for [`Pacing::AsFastAsPossible`].
    pub fn factor(self) -> Option<f64> {
        match self {
            Pacing::AsFastAsPossible => None,
            Pacing::Original => Some(1.0),
            Pacing::Multiple(m) => Some(m),
        }
    }
}

/// Which of the headers that replay adds (as the nginx `mirror` configuration in front of a filtering
/// node sets them) are added. All on by default; a header turned off is left exactly as captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddedHeaders {
    /// `X-Forwarded-For`: the original client IP appended to the captured value with `", "` (or, for a
    /// job with [`ReplayJob::forwarded_resolved`](crate::ReplayJob::forwarded_resolved), set to it).
    pub forwarded_for: bool,
    /// `X-Forwarded-Port`: the original client port (replaces a captured value).
    pub forwarded_port: bool,
    /// `X-Forwarded-Proto`: kept when captured, else `http`.
    pub forwarded_proto: bool,
    /// `X-Scheme: http` (replaces a captured value).
    pub scheme: bool,
    /// `X-Server-Addr`: the original server IP (replaces a captured value).
    pub server_addr: bool,
    /// `X-Server-Port`: the original server port (replaces a captured value).
    pub server_port: bool,
    /// `X-Request-ID`: a new unique 32-hex-digit id, unless the request already carries one, which is
    /// then kept as captured (it identifies the original request end to end).
    pub request_id: bool,
}

impl Default for AddedHeaders {
    fn default() -> Self {
        AddedHeaders {
            forwarded_for: true,
            forwarded_port: true,
            forwarded_proto: true,
            scheme: true,
            server_addr: true,
            server_port: true,
            request_id: true,
        }
    }
}

impl AddedHeaders {
    /// Every added header turned off: requests are replayed as captured (hop-by-hop headers, framing
    /// and a missing `Host` are still redone).
    pub fn none() -> Self {
        AddedHeaders {
            forwarded_for: false,
            forwarded_port: false,
            forwarded_proto: false,
            scheme: false,
            server_addr: false,
            server_port: false,
            request_id: false,
        }
    }
}

/// Everything [`ReplayClient::start`](crate::ReplayClient::start) needs. Build it with
/// [`ReplayConfig::new`] and change fields as needed.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayConfig {
    /// The target, `http://host[:port][/]` or `https://host[:port][/]` (an internal ALB, say). Every
    /// request goes there and nowhere else: never to an address or `Host` taken from captured traffic.
    /// The host may be a DNS name (resolved at each new connection) or an IP literal (`[::1]`).
    pub target: String,
    /// Most requests in flight (and so most open connections) at once. Default 64.
    pub concurrency: usize,
    /// Time limit for one request: getting a connection, sending, reading the whole response.
    /// Default 10 s. Past it the request fails as `timeout`.
    pub timeout: Duration,
    /// Time limit for opening one connection (TCP and TLS handshake). Default 3 s. Past it the request
    /// fails as `connect`.
    pub connect_timeout: Duration,
    /// Most jobs waiting in the queue between the engine and the replay tasks. Default 4096.
    pub queue_capacity: usize,
    /// Most bytes (request line, headers and body, estimated) waiting in the queue. Default 64 MiB.
    /// Together with `queue_capacity` and `concurrency` this bounds replay's memory.
    pub queue_max_bytes: usize,
    /// A pooled connection idle for this long is closed. Default 30 s (under the 60 s idle timeout of
    /// an ALB and nginx's 75 s, so the target rarely closes a connection just as it is reused).
    pub pool_idle_timeout: Duration,
    /// Most idle connections kept open. Default `None`: as many as `concurrency`.
    pub pool_max_idle: Option<usize>,
    /// Extra CA certificates (PEM file, one or more certificates) trusted for an `https://` target, in
    /// addition to the Mozilla root set: for an ALB with an internal certificate.
    pub ca_file: Option<PathBuf>,
    /// Which forwarding headers are added.
    pub headers: AddedHeaders,
    /// Add the observed response, when the job has one, as `X-Vxtap-Response-Status`,
    /// `X-Vxtap-Response-Length` and `X-Vxtap-Response-Time-Us`. Captured headers with these names are
    /// removed whenever this is on, so that a client cannot forge them. Default off.
    pub add_response_headers: bool,
    /// Offline pacing. Default [`Pacing::AsFastAsPossible`].
    pub pacing: Pacing,
    /// Threads of the client's own tokio runtime. Default 1 (one thread sustains tens of thousands of
    /// requests per second).
    pub threads: usize,
}

impl ReplayConfig {
    /// Defaults for everything but the target URL.
    pub fn new(target: impl Into<String>) -> Self {
        ReplayConfig {
            target: target.into(),
            concurrency: 64,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            queue_capacity: 4096,
            queue_max_bytes: 64 << 20,
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle: None,
            ca_file: None,
            headers: AddedHeaders::default(),
            add_response_headers: false,
            pacing: Pacing::AsFastAsPossible,
            threads: 1,
        }
    }

    pub(crate) fn validate(&self) -> Result<Target, ReplayError> {
        let bad = |what: &str| Err(ReplayError::Config(what.to_string()));
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.queue_capacity == 0 {
            return bad("queue capacity must be at least 1");
        }
        if self.threads == 0 {
            return bad("threads must be at least 1");
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        if self.pacing.factor().is_some_and(|m| !(m.is_finite() && m > 0.0)) {
            return bad("pacing multiple must be finite and positive");
        }
        Target::parse(&self.target)
    }
}

/// A parsed target URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) tls: bool,
    /// Host as written, without brackets for IPv6.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, ReplayError> {
        let bad = |why: &str| Err(ReplayError::Target { url: url.to_string(), reason: why.to_string() });
        let lower = url.to_ascii_lowercase();
        let (tls, rest) = if lower.starts_with("http://") {
            (false, &url[7..])
        } else if lower.starts_with("https://") {
            (true, &url[8..])
        } else {
            return bad("the scheme must be http:// or https://");
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !(path.is_empty() || path == "/") {
            return bad("a path, query or fragment is not supported: the captured request-target is sent");
        }
        if authority.contains('@') {
            return bad("user information is not supported");
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some(end) = v6.find(']') else { return bad("unclosed [ in the host") };
            let host = &v6[..end];
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return bad("invalid IPv6 address");
            }
            let port = match &v6[end + 1..] {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return bad("junk after the IPv6 address"),
                },
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return bad("no host");
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)) {
            return bad("invalid character in the host");
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return bad("invalid port"),
            },
        };
        Ok(Target { tls, host: host.to_string(), port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "127.0.0.1", 8080));
        let t = Target::parse("HTTPS://alb.internal/").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (true, "alb.internal", 443));
        let t = Target::parse("http://[::1]:81/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 81));
        let t = Target::parse("http://[fe80::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("fe80::1", 80));
        for bad in [
            "ftp://x",
            "x:80",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://h/path",
            "http://u@h",
            "http://[::1",
            "http://[zz]:80",
            "http://h h",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation() {
        let mut c = ReplayConfig::new("http://127.0.0.1:1");
        assert!(c.validate().is_ok());
        c.pacing = Pacing::Multiple(0.0);
        assert!(c.validate().is_err());
        c.pacing = Pacing::Multiple(f64::NAN);
        assert!(c.validate().is_err());
        c.pacing = Pacing::Multiple(2.0);
        assert!(c.validate().is_ok());
        c.concurrency = 0;
        assert!(c.validate().is_err());
    }
}
