//! Counters of the mirror listener and their Prometheus rendering.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by every connection task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub tls_handshake_errors: AtomicU64,
    pub copies_http10: AtomicU64,
    pub copies_http11: AtomicU64,
    pub copies_http2: AtomicU64,
    pub delivered: AtomicU64,
    pub sink_full: AtomicU64,
    pub answered: AtomicU64,
    pub refused: AtomicU64,
    pub truncated: AtomicU64,
    pub budget_truncated: AtomicU64,
    pub body_bytes: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub body_timeouts: AtomicU64,
    pub body_incomplete: AtomicU64,
    pub head_too_large: AtomicU64,
    pub parse_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MirrorStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (c10, c11, c2) = (g(&self.copies_http10), g(&self.copies_http11), g(&self.copies_http2));
        MirrorStats {
            connections_accepted: g(&self.connections_accepted),
            connections_open: g(&self.connections_open),
            connections_rejected: g(&self.connections_rejected),
            tls_handshake_errors: g(&self.tls_handshake_errors),
            copies: c10 + c11 + c2,
            copies_http10: c10,
            copies_http11: c11,
            copies_http2: c2,
            delivered: g(&self.delivered),
            sink_full: g(&self.sink_full),
            answered: g(&self.answered),
            refused: g(&self.refused),
            truncated: g(&self.truncated),
            budget_truncated: g(&self.budget_truncated),
            body_bytes: g(&self.body_bytes),
            header_timeouts: g(&self.header_timeouts),
            body_timeouts: g(&self.body_timeouts),
            body_incomplete: g(&self.body_incomplete),
            head_too_large: g(&self.head_too_large),
            parse_errors: g(&self.parse_errors),
        }
    }
}

/// A point-in-time copy of the listener's counters (all totals since start, except
/// `connections_open`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MirrorStats {
    /// TCP connections accepted (including those then rejected or refused).
    pub connections_accepted: u64,
    /// Connections open now (a gauge).
    pub connections_open: u64,
    /// Connections closed at once because `max_connections` were already open.
    pub connections_rejected: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_errors: u64,
    /// Copies received: every request whose head was accepted from an allowed peer, complete or
    /// ended by a body timeout or a broken connection. `copies_http10 + copies_http11 + copies_http2`.
    pub copies: u64,
    /// Copies that arrived as HTTP/1.0.
    pub copies_http10: u64,
    /// Copies that arrived as HTTP/1.1.
    pub copies_http11: u64,
    /// Copies that arrived as HTTP/2.
    pub copies_http2: u64,
    /// Copies the sink accepted.
    pub delivered: u64,
    /// Copies dropped because the sink was full (or gone); `copies = delivered + sink_full`.
    pub sink_full: u64,
    /// `204 No Content` answers sent.
    pub answered: u64,
    /// Requests answered `403` because the peer is not in the allow-list.
    pub refused: u64,
    /// Copies whose body was longer than `body_limit` (kept truncated, flagged).
    pub truncated: u64,
    /// Of those, copies cut shorter than `body_limit` because `max_buffered_body_bytes` were already
    /// held by copies under way.
    pub budget_truncated: u64,
    /// Decoded request body bytes received (kept or not).
    pub body_bytes: u64,
    /// Connections closed because a request head did not arrive within `header_timeout`.
    pub header_timeouts: u64,
    /// Copies ended by `body_start_timeout` or `body_timeout` (for example nginx with
    /// `mirror_request_body off` announcing a body it never sends); delivered with `gap: true`.
    pub body_timeouts: u64,
    /// Copies whose connection or stream broke inside the body; delivered with `gap: true`.
    pub body_incomplete: u64,
    /// HTTP/1 requests refused with `431` because the head exceeded `max_head_bytes` (HTTP/2 streams
    /// whose header list is over it get a `431` from the HTTP/2 layer and are not counted here).
    pub head_too_large: u64,
    /// Malformed requests (`400`: bad request line, header, length or chunk framing; bytes that are
    /// not HTTP) and HTTP/2 protocol errors.
    pub parse_errors: u64,
}

impl MirrorStats {
    /// Prometheus text exposition (format 0.0.4), every name prefixed `vxtap_mirror_`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP vxtap_mirror_{name} {help}");
            let _ = writeln!(out, "# TYPE vxtap_mirror_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "vxtap_mirror_{name}{labels} {v}");
            }
        };
        let c = "counter";
        metric(
            "connections_accepted_total",
            c,
            "TCP connections accepted by the HTTP mirror listener.",
            &[("", self.connections_accepted)],
        );
        metric("connections_open", "gauge", "Mirror connections open now.", &[("", self.connections_open)]);
        metric(
            "connections_rejected_total",
            c,
            "Connections closed on accept because max_connections were open.",
            &[("", self.connections_rejected)],
        );
        metric(
            "tls_handshake_errors_total",
            c,
            "TLS handshakes that failed or timed out.",
            &[("", self.tls_handshake_errors)],
        );
        metric(
            "copies_total",
            c,
            "Mirrored requests received, by protocol.",
            &[
                ("{protocol=\"HTTP/1.0\"}", self.copies_http10),
                ("{protocol=\"HTTP/1.1\"}", self.copies_http11),
                ("{protocol=\"HTTP/2\"}", self.copies_http2),
            ],
        );
        metric("delivered_total", c, "Copies handed to analysis.", &[("", self.delivered)]);
        metric(
            "sink_full_drops_total",
            c,
            "Copies dropped because the analysis queue was full.",
            &[("", self.sink_full)],
        );
        metric("answered_total", c, "204 No Content answers sent.", &[("", self.answered)]);
        metric(
            "refused_total",
            c,
            "Requests answered 403: peer not in the allow-list.",
            &[("", self.refused)],
        );
        metric(
            "truncated_bodies_total",
            c,
            "Copies whose body exceeded the body limit.",
            &[("", self.truncated)],
        );
        metric(
            "buffer_full_truncations_total",
            c,
            "Copies cut short because max_buffered_body_bytes were held by copies under way.",
            &[("", self.budget_truncated)],
        );
        metric("body_bytes_total", c, "Decoded request body bytes received.", &[("", self.body_bytes)]);
        metric(
            "header_timeouts_total",
            c,
            "Connections closed because a request head was too slow.",
            &[("", self.header_timeouts)],
        );
        metric(
            "body_timeouts_total",
            c,
            "Copies ended by the body read timeout (delivered with gap).",
            &[("", self.body_timeouts)],
        );
        metric(
            "body_incomplete_total",
            c,
            "Copies whose connection or stream broke inside the body (delivered with gap).",
            &[("", self.body_incomplete)],
        );
        metric(
            "head_too_large_total",
            c,
            "Requests refused with 431: head larger than the limit.",
            &[("", self.head_too_large)],
        );
        metric(
            "parse_errors_total",
            c,
            "Malformed requests (400) and HTTP/2 protocol errors.",
            &[("", self.parse_errors)],
        );
        out
    }
}

/// A cheap, clonable handle on the live counters of a [`MirrorServer`](crate::MirrorServer), for a
/// metrics endpoint running on another thread. It stays valid after the server is shut down.
#[derive(Clone, Debug)]
pub struct MirrorMetrics {
    pub(crate) counters: Arc<Counters>,
}

impl MirrorMetrics {
    /// The counters now.
    pub fn snapshot(&self) -> MirrorStats {
        self.counters.snapshot()
    }

    /// [`MirrorStats::render_prometheus`] of the counters now.
    pub fn render_prometheus(&self) -> String {
        self.snapshot().render_prometheus()
    }
}
