//! Counters, their snapshot and its Prometheus rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets; a last, unbounded bucket follows.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Why a request that was taken from the queue got no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FailKind {
    Connect,
    Timeout,
    Io,
    Http,
    Invalid,
}

/// Failed requests by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts {
    /// No connection to the target: name resolution, TCP connect (refused, unreachable, connect
    /// timeout) or TLS handshake failed.
    pub connect: u64,
    /// The request did not complete within [`ReplayConfig::timeout`](crate::ReplayConfig::timeout).
    pub timeout: u64,
    /// The connection failed while sending or receiving (reset, closed before the response ended).
    pub io: u64,
    /// The target answered something that is not an HTTP/1.x response.
    pub http: u64,
    /// The captured request cannot be put on the wire: a method that is not a token, a header name with
    /// a space or control byte, a header value with CR, LF or NUL. (Request-targets always can: bytes
    /// that cannot stand in a request line are percent-encoded.)
    pub invalid: u64,
}

impl FailureCounts {
    /// Sum over all kinds.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.io + self.http + self.invalid
    }
}

/// Responses from the target by status class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusClasses {
    /// 100-199 (only `101`: interim responses are skipped).
    pub informational: u64,
    /// 200-299.
    pub success: u64,
    /// 300-399.
    pub redirect: u64,
    /// 400-499.
    pub client_error: u64,
    /// 500-599.
    pub server_error: u64,
    /// Any other code.
    pub other: u64,
}

/// Time from taking a request off the queue (after pacing and waiting for a connection slot) to the
/// end of its response, for requests that got one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Requests per bucket (not cumulative): `counts[i]` for latencies in
    /// (`LATENCY_BUCKETS[i-1]`, `LATENCY_BUCKETS[i]`] seconds; the last element counts those above
    /// the largest bound. Length `LATENCY_BUCKETS.len() + 1`.
    pub counts: Vec<u64>,
    /// Sum of all latencies, µs.
    pub sum_us: u64,
    /// Number of latencies recorded.
    pub count: u64,
}

/// A snapshot of the replay client's counters and gauges.
///
/// Every job given to `submit` ends in exactly one of: `skipped_*`, `dropped_*`, or `accepted`; and
/// every accepted job in exactly one of `sent`, `failed`, `abandoned`, or is still queued or in flight:
/// `accepted == sent + failed.total() + abandoned + queue_depth + in_flight` (up to the moment the
/// snapshot is taken).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Jobs taken into the queue.
    pub accepted: u64,
    /// Requests that got a complete response from the target (any status).
    pub sent: u64,
    /// Requests that got no response, by kind.
    pub failed: FailureCounts,
    /// Jobs dropped because the queue was full (by count or bytes).
    pub dropped_queue_full: u64,
    /// Jobs submitted after the client began finishing (or was dropped).
    pub dropped_closed: u64,
    /// Requests not replayed because bytes of them were missing from the capture (`gap`).
    pub skipped_gap: u64,
    /// Requests not replayed because the body limit cut their body (`body_truncated`).
    pub skipped_truncated: u64,
    /// Accepted jobs still queued or in flight when [`ReplayClient::finish`](crate::ReplayClient::finish)
    /// ran out of time (or the client was dropped).
    pub abandoned: u64,
    /// Requests sent a second time, on a new connection, because a reused keep-alive connection was
    /// found closed by the target before any response byte came (at most one retry per request).
    pub retries: u64,
    /// Connections opened to the target.
    pub connections_opened: u64,
    /// Jobs taken off the queue and not finished: waiting for their pacing time or a connection slot,
    /// or being sent (gauge).
    pub in_flight: u64,
    /// Jobs waiting in the queue (gauge).
    pub queue_depth: u64,
    /// Estimated bytes held by the queued jobs (gauge).
    pub queue_bytes: u64,
    /// The queue's capacity in jobs.
    pub queue_capacity: u64,
    /// Latency of requests that got a response.
    pub latency: LatencyHistogram,
    /// Responses by status class.
    pub status: StatusClasses,
}

impl ReplayStats {
    /// Prometheus text exposition (format 0.0.4) of these figures, every metric named `vxtap_replay_*`,
    /// each with `# HELP` and `# TYPE`, ready to be appended to a `/metrics` page:
    ///
    /// | metric | type | labels |
    /// |---|---|---|
    /// | `vxtap_replay_accepted_total` | counter | |
    /// | `vxtap_replay_sent_total` | counter | |
    /// | `vxtap_replay_failed_total` | counter | `kind`: connect, timeout, io, http, invalid |
    /// | `vxtap_replay_dropped_total` | counter | `reason`: queue_full, closed |
    /// | `vxtap_replay_skipped_total` | counter | `reason`: gap, truncated |
    /// | `vxtap_replay_abandoned_total` | counter | |
    /// | `vxtap_replay_retries_total` | counter | |
    /// | `vxtap_replay_connections_opened_total` | counter | |
    /// | `vxtap_replay_responses_total` | counter | `class`: 1xx, 2xx, 3xx, 4xx, 5xx, other |
    /// | `vxtap_replay_in_flight` | gauge | |
    /// | `vxtap_replay_queue_depth` | gauge | |
    /// | `vxtap_replay_queue_bytes` | gauge | |
    /// | `vxtap_replay_queue_capacity` | gauge | |
    /// | `vxtap_replay_request_duration_seconds` | histogram | `le` |
    pub fn render_prometheus(&self) -> String {
        let mut s = String::with_capacity(4096);
        let mut simple = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        };
        simple(
            "vxtap_replay_accepted_total",
            "counter",
            "Requests taken into the replay queue.",
            self.accepted,
        );
        simple("vxtap_replay_sent_total", "counter", "Replayed requests that got a response.", self.sent);
        simple(
            "vxtap_replay_abandoned_total",
            "counter",
            "Accepted requests still queued or in flight at shutdown.",
            self.abandoned,
        );
        simple(
            "vxtap_replay_retries_total",
            "counter",
            "Requests re-sent once after a reused connection was found closed.",
            self.retries,
        );
        simple(
            "vxtap_replay_connections_opened_total",
            "counter",
            "Connections opened to the replay target.",
            self.connections_opened,
        );
        simple("vxtap_replay_in_flight", "gauge", "Replay requests being sent.", self.in_flight);
        simple(
            "vxtap_replay_queue_depth",
            "gauge",
            "Requests waiting in the replay queue.",
            self.queue_depth,
        );
        simple("vxtap_replay_queue_bytes", "gauge", "Bytes held by the replay queue.", self.queue_bytes);
        simple("vxtap_replay_queue_capacity", "gauge", "Capacity of the replay queue.", self.queue_capacity);
        let mut labelled = |name: &str, help: &str, label: &str, values: &[(&str, u64)]| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} counter\n");
            for (l, v) in values {
                let _ = writeln!(s, "{name}{{{label}=\"{l}\"}} {v}");
            }
        };
        let f = &self.failed;
        labelled(
            "vxtap_replay_failed_total",
            "Replay requests that got no response, by kind.",
            "kind",
            &[
                ("connect", f.connect),
                ("timeout", f.timeout),
                ("io", f.io),
                ("http", f.http),
                ("invalid", f.invalid),
            ],
        );
        labelled(
            "vxtap_replay_dropped_total",
            "Requests not queued for replay.",
            "reason",
            &[("queue_full", self.dropped_queue_full), ("closed", self.dropped_closed)],
        );
        labelled(
            "vxtap_replay_skipped_total",
            "Incomplete requests not replayed.",
            "reason",
            &[("gap", self.skipped_gap), ("truncated", self.skipped_truncated)],
        );
        let st = &self.status;
        labelled(
            "vxtap_replay_responses_total",
            "Responses from the replay target by status class.",
            "class",
            &[
                ("1xx", st.informational),
                ("2xx", st.success),
                ("3xx", st.redirect),
                ("4xx", st.client_error),
                ("5xx", st.server_error),
                ("other", st.other),
            ],
        );
        let name = "vxtap_replay_request_duration_seconds";
        let _ = write!(s, "# HELP {name} Replay request latency.\n# TYPE {name} histogram\n");
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(s, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {}", self.latency.count);
        let _ = writeln!(s, "{name}_sum {}", self.latency.sum_us as f64 / 1e6);
        let _ = writeln!(s, "{name}_count {}", self.latency.count);
        s
    }
}

/// The live counters, shared by the senders and the runtime's tasks.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) accepted: AtomicU64,
    pub(crate) sent: AtomicU64,
    failed: [AtomicU64; 5],
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_closed: AtomicU64,
    pub(crate) skipped_gap: AtomicU64,
    pub(crate) skipped_truncated: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    status: [AtomicU64; 6],
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub(crate) fn fail(&self, kind: FailKind) {
        self.failed[kind as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn response(&self, status: u16, latency: Duration) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.status[class].fetch_add(1, Relaxed);
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(latency.as_micros() as u64, Relaxed);
        // Counted last, so a snapshot never shows a response without its latency.
        self.sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, queue_depth: u64, queue_bytes: u64, queue_capacity: u64) -> ReplayStats {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let counts: Vec<u64> = self.latency.iter().map(l).collect();
        let count = counts.iter().sum();
        ReplayStats {
            accepted: l(&self.accepted),
            sent: l(&self.sent),
            failed: FailureCounts {
                connect: l(&self.failed[FailKind::Connect as usize]),
                timeout: l(&self.failed[FailKind::Timeout as usize]),
                io: l(&self.failed[FailKind::Io as usize]),
                http: l(&self.failed[FailKind::Http as usize]),
                invalid: l(&self.failed[FailKind::Invalid as usize]),
            },
            dropped_queue_full: l(&self.dropped_queue_full),
            dropped_closed: l(&self.dropped_closed),
            skipped_gap: l(&self.skipped_gap),
            skipped_truncated: l(&self.skipped_truncated),
            abandoned: l(&self.abandoned),
            retries: l(&self.retries),
            connections_opened: l(&self.connections_opened),
            in_flight: l(&self.in_flight),
            queue_depth,
            queue_bytes,
            queue_capacity,
            latency: LatencyHistogram { counts, sum_us: l(&self.latency_sum_us), count },
            status: StatusClasses {
                informational: l(&self.status[0]),
                success: l(&self.status[1]),
                redirect: l(&self.status[2]),
                client_error: l(&self.status[3]),
                server_error: l(&self.status[4]),
                other: l(&self.status[5]),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let m = Metrics::default();
        m.accepted.fetch_add(3, Relaxed);
        m.response(204, Duration::from_micros(800));
        m.response(503, Duration::from_secs(20));
        m.fail(FailKind::Connect);
        let s = m.snapshot(0, 0, 10);
        assert_eq!(s.sent, 2);
        assert_eq!(s.failed.total(), 1);
        assert_eq!(s.status.success, 1);
        assert_eq!(s.status.server_error, 1);
        assert_eq!(s.latency.counts[1], 1);
        assert_eq!(s.latency.counts[LATENCY_BUCKETS.len()], 1);
        let text = s.render_prometheus();
        assert!(text.contains("vxtap_replay_sent_total 2\n"));
        assert!(text.contains("vxtap_replay_failed_total{kind=\"connect\"} 1\n"));
        assert!(text.contains("vxtap_replay_responses_total{class=\"5xx\"} 1\n"));
        assert!(text.contains("vxtap_replay_request_duration_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("vxtap_replay_request_duration_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("vxtap_replay_request_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("vxtap_replay_request_duration_seconds_count 2\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("vxtap_replay_"), "{line}");
            let v = line.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
