//! Counters shared by input threads and workers, rendered as Prometheus text and as the exit summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vxtap_decap::{DecapError, DefragStats, SkipReason};
use vxtap_reassembly::ReassemblyStats;

/// Every counter of a running engine. Input threads and workers add to it; readers take snapshots.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Frames or datagrams received.
    pub packets: AtomicU64,
    /// Bytes of those frames or datagrams.
    pub bytes: AtomicU64,
    decap_errors: [AtomicU64; DecapError::ALL.len()],
    skipped: [AtomicU64; SkipReason::ALL.len()],
    /// Tunnel datagrams from sources outside `--udp-allow`.
    pub udp_refused: AtomicU64,
    /// Segments whose ports are outside `--ports`.
    pub port_filtered: AtomicU64,
    /// Segments dropped because a worker's queue was full (live input only).
    pub shard_queue_drops: AtomicU64,
    /// Segments waiting in worker queues.
    pub shard_queue_depth: AtomicU64,
    /// HTTP requests emitted as events.
    pub requests: AtomicU64,
    /// Requests emitted with their response.
    pub responses: AtomicU64,
    /// Requests emitted with `gap: true`.
    pub requests_with_gap: AtomicU64,
    /// Alert events written.
    pub alerts: AtomicU64,
    /// Requests the detector inspected only in part: a bound on its work per request ran out
    /// (`vxtap_detect::Inspection::partial`), so findings may be missing.
    pub requests_inspected_in_part: AtomicU64,
    /// Event bytes written.
    pub event_bytes: AtomicU64,
    /// Reopen requests (SIGHUP) whose file could not be opened; events went on to the old file.
    pub event_reopen_failures: AtomicU64,
    /// Outer IP datagrams rebuilt from fragments.
    pub defrag_reassembled: AtomicU64,
    /// Outer IP datagrams whose fragments never all came (timeout, limits) or were inconsistent.
    pub defrag_failed: AtomicU64,
    /// Alerts by attack class.
    alerts_by_class: Mutex<BTreeMap<String, u64>>,
    /// Segments by tunnel VNI.
    vni_segments: Mutex<BTreeMap<u32, u64>>,
    /// Conditions the HTTP parser reported (lost heads, non-HTTP flows, upgrades), by kind.
    http_anomalies: Mutex<BTreeMap<&'static str, u64>>,
    /// Each worker's reassembly counters, published after every batch.
    reassembly: Mutex<Vec<ReassemblyStats>>,
    /// Each worker's open flows and memcap charge, published after every batch.
    tables: Mutex<Tables>,
}

/// The workers' flow tables, as last published.
#[derive(Debug, Default)]
struct Tables {
    workers: Vec<TableGauge>,
    /// The largest sum of the workers' charges seen at a publication.
    memory_peak: u64,
}

/// One worker's flow table, as last published.
#[derive(Clone, Copy, Debug, Default)]
struct TableGauge {
    flows: u64,
    memory: u64,
}

impl Metrics {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> Metrics {
        Metrics {
            reassembly: Mutex::new(vec![ReassemblyStats::default(); workers]),
            tables: Mutex::new(Tables { workers: vec![TableGauge::default(); workers], memory_peak: 0 }),
            ..Metrics::default()
        }
    }

    /// Counts a decapsulation error.
    pub fn decap_error(&self, err: DecapError) {
        if let Some(i) = DecapError::ALL.iter().position(|e| *e == err) {
            self.decap_errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a skipped packet.
    pub fn skipped(&self, reason: SkipReason) {
        if let Some(i) = SkipReason::ALL.iter().position(|r| *r == reason) {
            self.skipped[i].fetch_add(1, Relaxed);
        }
    }

    /// Adds what a defragmenter did between two snapshots of its counters.
    pub(crate) fn add_defrag(&self, before: &DefragStats, after: &DefragStats) {
        self.defrag_reassembled.fetch_add(after.reassembled - before.reassembled, Relaxed);
        let failed = |s: &DefragStats| s.dropped + s.invalid;
        self.defrag_failed.fetch_add(failed(after) - failed(before), Relaxed);
    }

    /// Counts one alert of each of `classes`.
    pub(crate) fn add_alert_classes<'c>(&self, classes: impl Iterator<Item = &'c String>) {
        let mut by_class = self.alerts_by_class.lock().unwrap_or_else(|e| e.into_inner());
        for class in classes {
            match by_class.get_mut(class.as_str()) {
                Some(n) => *n += 1,
                None => {
                    by_class.insert(class.clone(), 1);
                }
            }
        }
    }

    /// Adds a dispatcher's per-VNI segment counts (and clears them).
    pub(crate) fn add_vni_segments(&self, counts: &mut crate::VniCounts) {
        if counts.is_empty() {
            return;
        }
        let mut total = self.vni_segments.lock().unwrap_or_else(|e| e.into_inner());
        for (vni, n) in counts.drain() {
            *total.entry(vni).or_default() += n;
        }
    }

    /// Adds a worker's HTTP anomaly counts.
    pub(crate) fn add_anomalies(&self, counts: &mut BTreeMap<&'static str, u64>) {
        if counts.is_empty() {
            return;
        }
        let mut total = self.http_anomalies.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, n) in std::mem::take(counts) {
            *total.entry(kind).or_default() += n;
        }
    }

    /// Publishes worker `index`'s reassembly counters, its open flows and the bytes its flows are
    /// charged against the memcap.
    pub(crate) fn publish_reassembly(
        &self,
        index: usize,
        stats: &ReassemblyStats,
        flows: usize,
        memory: usize,
    ) {
        let mut all = self.reassembly.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.get_mut(index) {
            slot.clone_from(stats);
        }
        drop(all);
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tables.workers.get_mut(index) {
            t.flows = flows as u64;
            t.memory = memory as u64;
        }
        let total = tables.workers.iter().map(|t| t.memory).sum();
        tables.memory_peak = tables.memory_peak.max(total);
    }

    /// Open flows, bytes charged against the memcap now, and the largest total charge published.
    fn tables(&self) -> (u64, u64, u64) {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let (flows, memory) = tables.workers.iter().fold((0, 0), |(f, m), t| (f + t.flows, m + t.memory));
        (flows, memory, tables.memory_peak)
    }

    /// The sum of every worker's reassembly counters.
    pub fn reassembly(&self) -> ReassemblyStats {
        let all = self.reassembly.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = ReassemblyStats::default();
        for s in all.iter() {
            sum.add(s);
        }
        sum
    }

    fn anomalies(&self) -> BTreeMap<&'static str, u64> {
        self.http_anomalies.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn decap_errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DecapError::ALL.iter().zip(&self.decap_errors).map(|(e, n)| (e.kind(), n.load(Relaxed)))
    }

    fn skips(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        SkipReason::ALL.iter().zip(&self.skipped).map(|(r, n)| (r.kind(), n.load(Relaxed)))
    }

    /// The one-line JSON summary printed at exit.
    pub fn summary(&self) -> serde_json::Value {
        let r = self.reassembly();
        let map = |it: &mut dyn Iterator<Item = (&'static str, u64)>| -> serde_json::Map<String, serde_json::Value> {
            it.filter(|(_, n)| *n > 0).map(|(k, n)| (k.to_string(), n.into())).collect()
        };
        serde_json::json!({
            "packets": self.packets.load(Relaxed),
            "bytes": self.bytes.load(Relaxed),
            "decap_errors": map(&mut self.decap_errors()),
            "skipped": map(&mut self.skips()),
            "port_filtered": self.port_filtered.load(Relaxed),
            "udp_refused": self.udp_refused.load(Relaxed),
            "segments": r.segments,
            "flows": r.flows,
            "memcap_used_peak": self.tables().2,
            "requests": self.requests.load(Relaxed),
            "responses": self.responses.load(Relaxed),
            "requests_with_gap": self.requests_with_gap.load(Relaxed),
            "alerts": self.alerts.load(Relaxed),
            "alerts_by_class": self.alerts_by_class.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "requests_inspected_in_part": self.requests_inspected_in_part.load(Relaxed),
            "gaps": r.gaps,
            "gap_bytes": r.gap_bytes,
            "flows_evicted": r.evicted,
            "flows_reused": r.closed_reused,
            "duplicate_segments": r.duplicates,
            "overlap_conflicts": r.overlap_conflicts,
            "out_of_window": r.out_of_window,
            "http_anomalies": map(&mut self.anomalies().into_iter()),
            "outer_fragments": {
                "reassembled": self.defrag_reassembled.load(Relaxed),
                "failed": self.defrag_failed.load(Relaxed),
            },
            "drops": { "shard_queue": self.shard_queue_drops.load(Relaxed) },
        })
    }

    /// Prometheus text exposition of every counter, names prefixed `vxtap_`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let r = self.reassembly();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP vxtap_{name} {help}\n# TYPE vxtap_{name} counter\nvxtap_{name} {value}"
            );
        };
        counter("packets_total", "Frames or datagrams received.", self.packets.load(Relaxed));
        counter("bytes_total", "Bytes received.", self.bytes.load(Relaxed));
        counter("segments_total", "TCP segments reassembled.", r.segments);
        counter("flows_total", "TCP flows created.", r.flows);
        counter("flows_evicted_total", "Flows cut for the memcap or flow limit.", r.evicted);
        counter(
            "flows_reused_total",
            "Flows whose addresses and ports a new connection took over while they were open.",
            r.closed_reused,
        );
        counter("requests_total", "HTTP requests emitted.", self.requests.load(Relaxed));
        counter(
            "responses_total",
            "HTTP requests emitted with their response.",
            self.responses.load(Relaxed),
        );
        counter(
            "requests_gap_total",
            "Requests emitted with missing bytes.",
            self.requests_with_gap.load(Relaxed),
        );
        counter("alerts_total", "Alert events written.", self.alerts.load(Relaxed));
        counter(
            "requests_inspected_in_part_total",
            "Requests the detector inspected only in part (a bound on its work per request ran out).",
            self.requests_inspected_in_part.load(Relaxed),
        );
        counter("gaps_total", "Stream gaps (bytes lost before reassembly).", r.gaps);
        counter("gap_bytes_total", "Bytes covered by gaps.", r.gap_bytes);
        counter("duplicate_segments_total", "Segments carrying only known bytes.", r.duplicates);
        counter(
            "overlap_conflicts_total",
            "Overlaps whose bytes differed (first kept).",
            r.overlap_conflicts,
        );
        counter("port_filtered_total", "Segments outside --ports.", self.port_filtered.load(Relaxed));
        counter(
            "udp_refused_total",
            "Tunnel datagrams from sources outside --udp-allow.",
            self.udp_refused.load(Relaxed),
        );
        counter("event_bytes_total", "Event bytes written.", self.event_bytes.load(Relaxed));
        counter(
            "event_reopen_failures_total",
            "Events file reopens that failed.",
            self.event_reopen_failures.load(Relaxed),
        );
        counter(
            "defrag_reassembled_total",
            "Outer IP datagrams rebuilt from fragments.",
            self.defrag_reassembled.load(Relaxed),
        );
        counter(
            "defrag_failed_total",
            "Outer IP datagrams never completed.",
            self.defrag_failed.load(Relaxed),
        );
        let _ = writeln!(out, "# HELP vxtap_decap_errors_total Malformed packets by layer.");
        let _ = writeln!(out, "# TYPE vxtap_decap_errors_total counter");
        for (kind, n) in self.decap_errors() {
            let _ = writeln!(out, "vxtap_decap_errors_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP vxtap_skipped_total Packets with nothing to reassemble, by reason.");
        let _ = writeln!(out, "# TYPE vxtap_skipped_total counter");
        for (kind, n) in self.skips() {
            let _ = writeln!(out, "vxtap_skipped_total{{reason=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP vxtap_alerts_by_class_total Alerts by attack class.");
        let _ = writeln!(out, "# TYPE vxtap_alerts_by_class_total counter");
        for (class, n) in self.alerts_by_class.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "vxtap_alerts_by_class_total{{class=\"{class}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP vxtap_vni_segments_total TCP segments by tunnel VNI.");
        let _ = writeln!(out, "# TYPE vxtap_vni_segments_total counter");
        for (vni, n) in self.vni_segments.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "vxtap_vni_segments_total{{vni=\"{vni}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP vxtap_http_anomalies_total HTTP parser conditions, by kind.");
        let _ = writeln!(out, "# TYPE vxtap_http_anomalies_total counter");
        for (kind, n) in self.anomalies() {
            let _ = writeln!(out, "vxtap_http_anomalies_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP vxtap_queue_drops_total Items dropped because a queue was full.");
        let _ = writeln!(out, "# TYPE vxtap_queue_drops_total counter");
        let _ = writeln!(
            out,
            "vxtap_queue_drops_total{{queue=\"shard\"}} {}",
            self.shard_queue_drops.load(Relaxed)
        );
        let (flows_open, memory, _) = self.tables();
        write_prometheus_family(
            &mut out,
            "flows_open",
            "gauge",
            "TCP flows held now.",
            &[(String::new(), flows_open)],
        );
        write_prometheus_family(
            &mut out,
            "memcap_used_bytes",
            "gauge",
            "Bytes charged against --memcap now (buffers and per-flow state).",
            &[(String::new(), memory)],
        );
        let _ = writeln!(out, "# HELP vxtap_queue_depth Items waiting in a queue.");
        let _ = writeln!(out, "# TYPE vxtap_queue_depth gauge");
        let _ =
            writeln!(out, "vxtap_queue_depth{{queue=\"shard\"}} {}", self.shard_queue_depth.load(Relaxed));
        out
    }
}

/// Appends one Prometheus metric family named `vxtap_{name}`: its HELP and TYPE lines, then a sample
/// per row, whose labels (`key="value"` pairs, comma-separated) may be empty. Nothing for no rows.
pub fn write_prometheus_family(out: &mut String, name: &str, kind: &str, help: &str, rows: &[(String, u64)]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP vxtap_{name} {help}\n# TYPE vxtap_{name} {kind}");
    for (labels, value) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "vxtap_{name} {value}");
        } else {
            let _ = writeln!(out, "vxtap_{name}{{{labels}}} {value}");
        }
    }
}
