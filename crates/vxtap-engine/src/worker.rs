//! A worker thread: its shard's flow table, one HTTP conversation per flow, detection and events.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crossbeam_channel::{Receiver, Sender};
use vxtap_decap::{
    Decoded, DefragConfig, Defragmenter, LinkType, Segment, SkipReason, Tunnel, TunnelKind, decode_frame,
};
use vxtap_detect::{Detector, Inspection};
use vxtap_http::{Conversation, Output, Peer, Transaction};
use vxtap_reassembly::{CloseReason, Delivery, Dir, FlowInfo, FlowTable, ReassemblyStats, StreamHandler};

use crate::event::{Origin, size_hint, write_events};
use crate::{EngineConfig, Metrics, RequestHook, SpareBatches, Work, accept, defragment};

/// How far (µs of capture time) the clock must move before timers are checked again.
const TIMER_STEP_US: u64 = 100_000;

pub(crate) struct Worker {
    index: usize,
    cfg: Arc<EngineConfig>,
    metrics: Arc<Metrics>,
    events: Sender<Vec<u8>>,
    /// Bytes waiting in each worker's queue (shared with the dispatchers).
    queued: Arc<[AtomicUsize]>,
    /// Where worked-through batches go back to the inputs.
    spare: SpareBatches,
    hook: Option<RequestHook>,
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        cfg: Arc<EngineConfig>,
        metrics: Arc<Metrics>,
        events: Sender<Vec<u8>>,
        queued: Arc<[AtomicUsize]>,
        spare: SpareBatches,
        hook: Option<RequestHook>,
    ) -> Self {
        Worker { index, cfg, metrics, events, queued, spare, hook }
    }

    pub(crate) fn run(self, rx: Receiver<Work>) {
        let mut pipeline = Pipeline::new(self.cfg.clone(), self.metrics.clone());
        pipeline.out.hook = self.hook.clone();
        let mut timers_at = 0u64;
        for work in rx.iter() {
            match work {
                Work::Batch(batch) => {
                    self.metrics.shard_queue_depth.fetch_sub(batch.items.len() as u64, Relaxed);
                    self.queued[self.index].fetch_sub(batch.cost(), Relaxed);
                    for item in &batch.items {
                        let payload = &batch.data[item.start..item.start + item.len];
                        pipeline.segment(&Segment { header: item.header, payload }, item.ts);
                    }
                    self.spare.give_back(batch);
                }
                Work::Tick(now) => pipeline.clock = pipeline.clock.max(now),
            }
            if pipeline.clock >= timers_at + TIMER_STEP_US {
                timers_at = pipeline.clock;
                pipeline.advance(timers_at);
            }
            self.publish(&mut pipeline);
        }
        pipeline.finish();
        self.publish(&mut pipeline);
    }

    fn publish(&self, pipeline: &mut Pipeline) {
        let table = &pipeline.table;
        self.metrics.publish_reassembly(self.index, table.stats(), table.len(), table.memory());
        send_events(&self.events, pipeline.take_events());
    }
}

/// Hands chunks of event lines to the writer thread.
fn send_events(writer: &Sender<Vec<u8>>, chunks: Vec<Vec<u8>>) {
    for chunk in chunks {
        // A closed writer means the run is failing already; its error is reported by finish().
        let _ = writer.send(chunk);
    }
}

/// The single-threaded heart of a worker, without its thread and queue: segments in, EVE JSON
/// lines out. Benchmarks and the whole-pipeline fuzz target drive it directly.
pub struct Pipeline {
    cfg: Arc<EngineConfig>,
    table: FlowTable<HttpFlow>,
    out: WorkerOutput,
    defrag: Defragmenter,
    /// The latest capture time seen, microseconds.
    clock: u64,
}

impl Pipeline {
    /// An empty pipeline counting into `metrics` (request counters, anomalies and, with the
    /// detector, alerts as [`Pipeline::take_events`] takes the events).
    pub fn new(cfg: Arc<EngineConfig>, metrics: Arc<Metrics>) -> Pipeline {
        let out = WorkerOutput::new(&cfg, metrics, None);
        let defrag = Defragmenter::new(DefragConfig::default());
        Pipeline { table: FlowTable::new(cfg.reassembly.clone()), cfg, out, defrag, clock: 0 }
    }

    /// Decodes a captured frame and processes its segment; decap errors are counted.
    pub fn frame(&mut self, link: LinkType, frame: &[u8], ts: u64) {
        self.out.metrics.packets.fetch_add(1, Relaxed);
        self.out.metrics.bytes.fetch_add(frame.len() as u64, Relaxed);
        let decoded = match decode_frame(link, frame, &self.cfg.decap) {
            Ok(Decoded::Skipped(SkipReason::OuterFragment)) => {
                let Some(packet) = defragment(&mut self.defrag, &self.out.metrics, link, frame, ts) else {
                    return;
                };
                let decoded = decode_frame(LinkType::RawIp, &packet, &self.cfg.decap);
                if let Some(segment) = accept(decoded, &self.cfg, &self.out.metrics) {
                    self.segment(&segment, ts);
                }
                return;
            }
            decoded => decoded,
        };
        if let Some(segment) = accept(decoded, &self.cfg, &self.out.metrics) {
            self.segment(&segment, ts);
        }
    }

    /// Processes one decoded segment captured at `ts` (µs).
    pub fn segment(&mut self, segment: &Segment<'_>, ts: u64) {
        self.clock = self.clock.max(ts);
        let cfg = &self.cfg;
        self.table.process(segment, ts, &mut self.out, |info, out| HttpFlow::new(info, cfg, out));
    }

    /// Runs timers up to `now` (µs): idle flows close, overdue holes become gaps.
    pub fn advance(&mut self, now: u64) {
        self.clock = self.clock.max(now);
        self.table.advance(self.clock, &mut self.out);
    }

    /// Closes every flow, emitting every request that can be emitted.
    pub fn finish(&mut self) {
        self.table.close_all(self.clock, &mut self.out);
    }

    /// The event lines written since the last call, in chunks of whole lines; the request counters
    /// and anomalies that go with them are added to the metrics now.
    pub fn take_events(&mut self) -> Vec<Vec<u8>> {
        self.out.take()
    }

    /// Reassembly counters so far.
    pub fn stats(&self) -> &ReassemblyStats {
        self.table.stats()
    }
}

/// Event lines in chunks: an event that does not fit in the chunk being filled starts the next
/// chunk instead of growing this one, since growing copies every event before it (5% of a run's
/// instructions with bodies of up to 300 KB).
#[derive(Default)]
struct EventChunks {
    full: Vec<Vec<u8>>,
    filling: Vec<u8>,
}

impl EventChunks {
    /// The buffer to write an event of about `size` bytes into.
    fn room(&mut self, size: usize) -> &mut Vec<u8> {
        if self.filling.capacity() - self.filling.len() < size {
            // Chunks double up to 1 MiB, and always have room for the event.
            let next = Vec::with_capacity(size.max((2 * self.filling.capacity()).min(1 << 20)));
            let filled = std::mem::replace(&mut self.filling, next);
            if !filled.is_empty() {
                self.full.push(filled);
            }
        }
        &mut self.filling
    }

    /// The chunks written so far. The next chunk starts as large as this one ended (up to 1 MiB),
    /// so a steady stream of events is not copied through a series of doublings.
    fn take(&mut self) -> Vec<Vec<u8>> {
        if !self.filling.is_empty() {
            let capacity = self.filling.len().min(1 << 20);
            self.full.push(std::mem::replace(&mut self.filling, Vec::with_capacity(capacity)));
        }
        std::mem::take(&mut self.full)
    }
}

/// Request counters not yet added to the shared [`Metrics`]: both workers adding to the same
/// atomics for every request bounced their cache line between the cores. (Alerts are rare and
/// are added at once, with their classes, so the two always agree.)
#[derive(Default)]
struct RecordCounts {
    requests: u64,
    responses: u64,
    requests_with_gap: u64,
    inspected_in_part: u64,
}

/// What handlers write into while segments are processed.
pub(crate) struct WorkerOutput {
    events: EventChunks,
    scratch: Vec<Output>,
    counts: RecordCounts,
    anomalies: BTreeMap<&'static str, u64>,
    detector: Option<Detector>,
    metrics: Arc<Metrics>,
    hook: Option<RequestHook>,
    /// Transactions waiting to be recorded, when the detector runs (see [`DETECT_BATCH`]).
    waiting: Vec<(Origin, Transaction)>,
    /// About the bytes they hold (see [`DETECT_BATCH_BYTES`]).
    waiting_bytes: usize,
    answering: AnsweringServers,
}

/// Servers this worker saw answer, by address within their tunnel (kind and VNI). A new flow
/// with one of them expects its answers before its first packet arrives, so a request whose SYN-ACK
/// the mirror lost or delayed waits for its response instead of going out without a status, as
/// it must on a one-direction mirror, where no server is ever seen. Each worker learns from its
/// own flows.
#[derive(Default)]
struct AnsweringServers(HashSet<(Option<(TunnelKind, u32)>, SocketAddr), foldhash::fast::RandomState>);

/// Servers remembered at most; past it the set starts over (servers are few, clients many).
const MAX_ANSWERING_SERVERS: usize = 1 << 16;

impl AnsweringServers {
    fn key(tunnel: Option<Tunnel>, addr: SocketAddr) -> (Option<(TunnelKind, u32)>, SocketAddr) {
        (tunnel.map(|t| (t.kind, t.vni)), addr)
    }

    fn insert(&mut self, tunnel: Option<Tunnel>, addr: SocketAddr) {
        if self.0.len() >= MAX_ANSWERING_SERVERS {
            self.0.clear();
        }
        self.0.insert(Self::key(tunnel, addr));
    }

    fn contains(&self, tunnel: Option<Tunnel>, addr: SocketAddr) -> bool {
        self.0.contains(&Self::key(tunnel, addr))
    }
}

/// With the detector on, a worker records transactions in runs of up to this many: detection then
/// runs on one request after another, its automata and lazy DFAs still in the cache, instead of
/// between segments of other flows that evict them (−4% to −5% CPU on the benchmark pcap,
/// docs/performance.md). Whatever waits is recorded whenever the worker hands its events on,
/// after every batch of segments, so a request waits no longer than the batch it completed in.
const DETECT_BATCH: usize = 64;
/// Transactions also stop waiting once they hold about this many bytes, measured as the events they
/// will make ([`size_hint`]: bodies, request and response heads, a fixed cost each), so what a run
/// holds beside the memcap stays small and bounded.
const DETECT_BATCH_BYTES: usize = 1 << 20;

impl WorkerOutput {
    fn new(cfg: &EngineConfig, metrics: Arc<Metrics>, hook: Option<RequestHook>) -> Self {
        WorkerOutput {
            events: EventChunks::default(),
            scratch: Vec::new(),
            counts: RecordCounts::default(),
            anomalies: BTreeMap::new(),
            detector: cfg.detect.then(Detector::builtin),
            metrics,
            hook,
            waiting: Vec::new(),
            waiting_bytes: 0,
            answering: AnsweringServers::default(),
        }
    }

    fn transaction(&mut self, conn: &Connection, tx: Transaction) {
        let (src, dst) = match tx.client {
            Peer::A => (conn.a, conn.b),
            Peer::B => (conn.b, conn.a),
        };
        if tx.response.is_some() {
            self.answering.insert(conn.tunnel, dst);
        }
        let base = Origin { flow_id: conn.flow_id, src, dst, tunnel: conn.tunnel, ..Origin::default() };
        let origin = match tx.proxy {
            Some(p) => Origin { src: p.source, dst: p.destination, proxy: Some((src, dst)), ..base },
            None => base,
        };
        if self.detector.is_none() {
            self.record(&origin, &tx);
            return;
        }
        self.waiting_bytes += size_hint(&tx, 0);
        self.waiting.push((origin, tx));
        if self.waiting.len() >= DETECT_BATCH || self.waiting_bytes >= DETECT_BATCH_BYTES {
            self.record_waiting();
        }
    }

    /// Records the transactions waiting, in the order they completed.
    fn record_waiting(&mut self) {
        let mut waiting = std::mem::take(&mut self.waiting);
        for (origin, tx) in waiting.drain(..) {
            self.record(&origin, &tx);
        }
        self.waiting = waiting;
        self.waiting_bytes = 0;
    }

    /// Detection, events, the request hook and counters for one transaction.
    pub(crate) fn record(&mut self, origin: &Origin, tx: &Transaction) {
        let Inspection { findings, partial } =
            self.detector.as_ref().map(|d| d.examine(&tx.request)).unwrap_or_default();
        write_events(self.events.room(size_hint(tx, findings.len())), origin, tx, &findings);
        if let Some(hook) = &self.hook {
            hook(origin, tx);
        }
        let counts = &mut self.counts;
        counts.requests += 1;
        counts.responses += u64::from(tx.response.is_some());
        counts.requests_with_gap += u64::from(tx.request.gap);
        counts.inspected_in_part += u64::from(partial);
        if !findings.is_empty() {
            self.metrics.alerts.fetch_add(findings.len() as u64, Relaxed);
            self.metrics.add_alert_classes(findings.iter().flat_map(|f| &f.attack_class));
        }
    }

    /// The event lines written since the last call, in chunks of whole lines; the counters that go
    /// with them are added to the shared metrics.
    fn take(&mut self) -> Vec<Vec<u8>> {
        self.record_waiting();
        let RecordCounts { requests, responses, requests_with_gap, inspected_in_part } =
            std::mem::take(&mut self.counts);
        let m = &self.metrics;
        for (metric, n) in [
            (&m.requests, requests),
            (&m.responses, responses),
            (&m.requests_with_gap, requests_with_gap),
            (&m.requests_inspected_in_part, inspected_in_part),
        ] {
            if n > 0 {
                metric.fetch_add(n, Relaxed);
            }
        }
        m.add_anomalies(&mut self.anomalies);
        self.events.take()
    }
}

/// Detection, events, the request hook and counters for request records that arrive whole from an
/// input other than packets (the HTTP mirror listener): the path packet input takes once its HTTP is
/// parsed. Drop every sink before [`crate::Engine::finish`].
pub struct RecordSink {
    out: WorkerOutput,
    events: Sender<Vec<u8>>,
}

impl RecordSink {
    pub(crate) fn new(
        cfg: &EngineConfig,
        metrics: Arc<Metrics>,
        events: Sender<Vec<u8>>,
        hook: Option<RequestHook>,
    ) -> Self {
        RecordSink { out: WorkerOutput::new(cfg, metrics, hook), events }
    }

    /// Writes the events of one transaction (and hands it to the request hook).
    pub fn submit(&mut self, origin: &Origin, tx: &Transaction) {
        self.out.record(origin, tx);
        send_events(&self.events, self.out.take());
    }
}

/// One flow's HTTP state.
pub(crate) struct HttpFlow {
    conversation: Conversation,
    conn: Connection,
}

/// The part of a flow's [`FlowInfo`] its events name. A flow keeps only this: the whole `FlowInfo`
/// made every open flow 64 bytes larger, a step up in the allocator's size classes
/// (docs/performance.md, tenth pass).
struct Connection {
    flow_id: u64,
    a: SocketAddr,
    b: SocketAddr,
    tunnel: Option<Tunnel>,
}

impl HttpFlow {
    fn new(info: &FlowInfo, cfg: &EngineConfig, out: &WorkerOutput) -> Self {
        let mut conversation = Conversation::new(cfg.http, info.client.map(peer));
        // Only when the handshake named the client: then the server's stream start is named too
        // (by the SYN-ACK or the client's handshake ACK), so a lost first answer is a gap. In a
        // flow picked up midstream, a first answer lost before any server packet would go
        // unnoticed, and a waiting request would take the next one's status.
        if info.client.is_some() {
            for (peer, addr) in [(Peer::A, info.a), (Peer::B, info.b)] {
                if out.answering.contains(info.tunnel, addr) {
                    conversation.expect_answers_from(peer);
                }
            }
        }
        HttpFlow {
            conversation,
            conn: Connection { flow_id: info.flow_id, a: info.a, b: info.b, tunnel: info.tunnel },
        }
    }

    fn emit(&mut self, out: &mut WorkerOutput) {
        self.conversation.drain(&mut out.scratch);
        let mut scratch = std::mem::take(&mut out.scratch);
        for output in scratch.drain(..) {
            match output {
                Output::Transaction(tx) => out.transaction(&self.conn, tx),
                Output::Anomaly(anomaly) => *out.anomalies.entry(anomaly.kind()).or_default() += 1,
            }
        }
        out.scratch = scratch;
    }
}

fn peer(dir: Dir) -> Peer {
    match dir {
        Dir::A => Peer::A,
        Dir::B => Peer::B,
    }
}

impl StreamHandler for HttpFlow {
    type Sink = WorkerOutput;

    fn on_packet(&mut self, dir: Dir, _out: &mut WorkerOutput) {
        self.conversation.on_packet(peer(dir));
    }

    fn on_data(&mut self, dir: Dir, data: &[u8], at: Delivery, out: &mut WorkerOutput) {
        self.conversation.on_stream_data(peer(dir), data, at.ts, at.offset, at.acked);
        self.emit(out);
    }

    fn on_gap(&mut self, dir: Dir, len: u64, at: Delivery, out: &mut WorkerOutput) {
        self.conversation.on_stream_gap(peer(dir), at.offset, len, at.ts);
        self.emit(out);
    }

    fn on_end(&mut self, dir: Dir, ts: u64, out: &mut WorkerOutput) {
        self.conversation.on_end(peer(dir), ts);
        self.emit(out);
    }

    fn on_close(&mut self, ts: u64, _reason: CloseReason, out: &mut WorkerOutput) {
        self.conversation.finish(ts);
        self.emit(out);
    }

    fn buffered_bytes(&self) -> usize {
        self.conversation.buffered_bytes()
    }
}

#[cfg(test)]
mod tests {
    use vxtap_decap::{SegmentHeader, TcpFlags};

    use super::*;

    /// The events of `lines` as (event type, url) pairs.
    fn kinds_and_urls(chunks: Vec<Vec<u8>>) -> Vec<(String, String)> {
        let text = String::from_utf8(chunks.concat()).expect("UTF-8 events");
        text.lines()
            .map(|line| {
                let e: serde_json::Value = serde_json::from_str(line).expect("JSON event");
                (
                    e["event_type"].as_str().unwrap_or("").into(),
                    e["http"]["url"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    }

    #[test]
    fn detected_transactions_wait_in_bounded_runs_and_are_recorded_in_order() {
        let mut pipeline = Pipeline::new(Arc::new(EngineConfig::default()), Arc::new(Metrics::new(1)));
        let header = |seq: u32, flags: TcpFlags| SegmentHeader {
            tunnel: None,
            vlan: None,
            src: "10.0.0.1:40000".parse().expect("address"),
            dst: "10.0.0.2:80".parse().expect("address"),
            seq,
            ack: 0,
            flags,
            missing: 0,
        };
        pipeline.segment(&Segment { header: header(999, TcpFlags::SYN), payload: b"" }, 1);
        // every seventh request an attack; every fifth carries a 100 KB body
        let request = |i: usize| {
            let target =
                if i % 7 == 3 { format!("/q?id={i}%27%20OR%20%271%27%3D%271") } else { format!("/r{i}") };
            let body = if i % 5 == 0 { vec![b'x'; 100_000] } else { Vec::new() };
            let head = format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n", body.len());
            ([head.as_bytes(), &body].concat(), target)
        };
        let mut seq = 1000u32;
        let mut sent = Vec::new();
        let mut events = Vec::new();
        for i in 0..300 {
            let (bytes, target) = request(i);
            pipeline.segment(&Segment { header: header(seq, TcpFlags::ACK), payload: &bytes }, 2 + i as u64);
            seq += bytes.len() as u32;
            sent.push(target);
            let out = &pipeline.out;
            assert!(out.waiting.len() < DETECT_BATCH && out.waiting_bytes < DETECT_BATCH_BYTES);
            // what waits is recorded whenever events are taken: after three requests, all three
            if i == 2 || i == 150 {
                events.extend(kinds_and_urls(pipeline.take_events()));
                assert_eq!(events.iter().filter(|(kind, _)| kind == "http").count(), i + 1);
            }
        }
        pipeline.finish();
        events.extend(kinds_and_urls(pipeline.take_events()));
        // every request once, in the order sent, its alerts right after its own event
        let http: Vec<&String> =
            events.iter().filter(|(kind, _)| kind == "http").map(|(_, url)| url).collect();
        assert_eq!(http, sent.iter().collect::<Vec<_>>());
        let mut alerted = Vec::new();
        for (at, (kind, url)) in events.iter().enumerate() {
            if kind == "alert" {
                let own = events[..at].iter().rev().find(|(kind, _)| kind == "http");
                assert_eq!(own.map(|(_, u)| u), Some(url), "alert at {at}");
                alerted.push(url);
            }
        }
        alerted.dedup();
        let attacks: Vec<&String> = sent.iter().filter(|url| url.contains("%27")).collect();
        assert_eq!(alerted, attacks);
    }

    #[test]
    fn a_request_to_a_server_that_answered_before_waits_for_its_answer() {
        // The second connection's SYN-ACK was lost and its first server packet comes after the
        // request: as the server answered the first connection, the request waits for its status.
        let mut pipeline = Pipeline::new(
            Arc::new(EngineConfig { detect: false, ..EngineConfig::default() }),
            Arc::new(Metrics::new(1)),
        );
        let segment =
            |pipeline: &mut Pipeline, client: bool, port: u16, (seq, ack): (u32, u32), flags, payload| {
                let (c, s): (SocketAddr, SocketAddr) =
                    (SocketAddr::from(([10, 0, 0, 1], port)), "10.0.0.2:80".parse().expect("address"));
                let (src, dst) = if client { (c, s) } else { (s, c) };
                let header =
                    SegmentHeader { tunnel: None, vlan: None, src, dst, seq, ack, flags, missing: 0 };
                pipeline.segment(&Segment { header, payload }, 1);
            };
        let request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let response = b"HTTP/1.1 204 No Content\r\n\r\n";
        for port in [40000, 40001] {
            segment(&mut pipeline, true, port, (99, 0), TcpFlags::SYN, b"");
            if port == 40000 {
                segment(&mut pipeline, false, port, (4999, 100), TcpFlags::SYN.union(TcpFlags::ACK), b"");
            }
            segment(&mut pipeline, true, port, (100, 5000), TcpFlags::ACK, request);
            segment(&mut pipeline, false, port, (5000, 100 + request.len() as u32), TcpFlags::ACK, response);
        }
        // A third connection, picked up midstream (no handshake: its server's start unknown), is
        // not held: its request goes out once reassembly settles the guessed start.
        segment(&mut pipeline, true, 40002, (100, 5000), TcpFlags::ACK, request);
        pipeline.advance(2_000_001);
        let early = String::from_utf8(pipeline.take_events().concat()).expect("UTF-8 events");
        assert_eq!(early.lines().count(), 3, "{early}");
        pipeline.finish();
        let text = early + &String::from_utf8(pipeline.take_events().concat()).expect("UTF-8 events");
        let statuses: Vec<Option<u64>> = text
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).expect("JSON event")["http"]["status"]
                    .as_u64()
            })
            .collect();
        assert_eq!(statuses, [Some(204), Some(204), None]);
    }

    #[test]
    fn an_open_flow_fits_the_allocators_768_byte_size_class() {
        // Every open flow pays the size class its box falls in: 1,280 bytes before the tenth pass,
        // 768 now (docs/performance.md).
        let boxed = FlowTable::<HttpFlow>::FLOW_SIZE;
        assert!(boxed <= 768, "a flow grew to {boxed} bytes, past jemalloc's 768-byte size class");
    }
}
