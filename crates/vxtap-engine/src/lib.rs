//! The vxtap pipeline: decapsulated segments are sharded by flow onto worker threads, each of which
//! owns a flow table, rebuilds HTTP transactions, runs the detector and writes EVE JSON events.
//!
//! Input threads (pcap reader, UDP receivers, live capture) each own a [`Dispatcher`]; workers own
//! their flows outright (no locks on the data path); every queue is bounded. With
//! [`Overload::WaitThenDrop`] (live input) a full worker queue makes the input wait a bounded time
//! (the kernel buffers meanwhile), then costs a counted drop; with [`Overload::Block`] (files) the
//! reader waits, so nothing is lost.
//!
//! ```
//! use vxtap_decap::LinkType;
//! use vxtap_engine::{Engine, EngineConfig, EventOutput};
//!
//! let events = EventOutput::Writer(Box::new(std::io::sink()));
//! let engine = Engine::start(EngineConfig::default(), events, None).unwrap();
//! let mut input = engine.dispatcher();
//! input.frame(LinkType::Ethernet, &[0u8; 10], 0); // counted as a decap error
//! drop(input);
//! let metrics = engine.metrics();
//! engine.finish().unwrap();
//! assert_eq!(metrics.summary()["decap_errors"]["ethernet_truncated"], 1);
//! ```

mod event;
mod json;
mod metrics;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, IoSlice, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, bounded};
use vxtap_decap::{
    DecapConfig, DecapError, Decoded, DefragConfig, Defragmenter, LinkType, Segment, SegmentHeader,
    SkipReason, decode_frame, decode_udp_payload,
};
use vxtap_http::HttpConfig;
use vxtap_reassembly::{FlowKey, ReassemblyConfig};

pub use event::{Origin, write_events};

/// Called by the workers with every emitted transaction (after its events are written): how replay,
/// or any other consumer of request records, plugs in without the engine knowing it. It must not
/// block for long: it runs on a worker thread.
pub type RequestHook = Arc<dyn Fn(&Origin, &vxtap_http::Transaction) + Send + Sync>;
pub use metrics::{Metrics, write_prometheus_family};
pub use worker::{Pipeline, RecordSink};

/// What an input does when a worker's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overload {
    /// Wait for room: nothing is lost (offline files).
    Block,
    /// Wait for room up to this long, then drop the batch and count it (live input). While the input
    /// waits, what arrives queues in the kernel (the socket's receive buffer, libpcap's ring), so a
    /// burst is absorbed instead of dropped; past that buffer the kernel drops and counts. Only workers
    /// that make no progress at all for this long cost dropped batches here.
    WaitThenDrop(Duration),
}

/// Everything the pipeline needs to know.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads (at least one).
    pub workers: usize,
    /// Tunnel ports and VNI filter.
    pub decap: DecapConfig,
    /// Flow-table limits; `memcap` is the total, split evenly across workers.
    pub reassembly: ReassemblyConfig,
    /// HTTP parser limits.
    pub http: HttpConfig,
    /// Run the detector on every request.
    pub detect: bool,
    /// Inner TCP ports treated as HTTP; empty means any port.
    pub ports: Vec<u16>,
    /// Behaviour when a worker queue is full.
    pub overload: Overload,
    /// Bytes of segments each worker queue may hold (default 16 MiB). Past it, live input drops and
    /// counts; file input waits.
    pub queue_bytes: usize,
    /// Advance flow timers from the wall clock even when no packet arrives (live input).
    pub wall_clock: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            decap: DecapConfig::default(),
            reassembly: ReassemblyConfig::default(),
            http: HttpConfig::default(),
            detect: true,
            ports: Vec::new(),
            overload: Overload::Block,
            queue_bytes: 16 << 20,
            wall_clock: false,
        }
    }
}

/// Errors of the engine itself (inputs report their own).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A thread could not be started.
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        /// Thread name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
    /// The events file cannot be opened.
    #[error("cannot open events file {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing events failed.
    #[error("writing events: {0}")]
    Write(#[source] io::Error),
    /// A worker thread panicked (a bug); its flows are lost.
    #[error("worker thread {0} panicked")]
    WorkerPanicked(usize),
}

/// Work for one worker.
enum Work {
    Batch(Batch),
    /// The wall clock, for timers when the input is quiet.
    Tick(u64),
}

/// Segments bound for one worker: headers plus payload bytes packed in one buffer, so a batch costs
/// two allocations however many segments it holds.
#[derive(Default)]
struct Batch {
    items: Vec<BatchItem>,
    data: Vec<u8>,
}

impl Batch {
    /// Bytes the batch takes, counted against its worker's queue limit: what it allocated, not
    /// only what it filled, so spare capacity cannot hide from the limit.
    fn cost(&self) -> usize {
        Batch::cost_of(self.items.capacity(), self.data.capacity())
    }

    /// What a batch with room for `items` segments and `data` payload bytes costs a queue.
    const fn cost_of(items: usize, data: usize) -> usize {
        data + items * std::mem::size_of::<BatchItem>()
    }

    /// Whether the batch holds as many segments or payload bytes as a batch should.
    fn is_full(&self) -> bool {
        self.items.len() >= BATCH_ITEMS || self.data.len() >= BATCH_BYTES
    }
}

struct BatchItem {
    header: SegmentHeader,
    start: usize,
    len: usize,
    ts: u64,
}

/// Segments per tunnel VNI, counted per frame: foldhash, as SipHash showed in the profile.
type VniCounts = HashMap<u32, u64, foldhash::fast::RandomState>;

/// An input's counters, kept by the input thread and added to the shared [`Metrics`] when it sends
/// a batch (frames and bytes) or flushes (everything): two atomic additions per frame cost more
/// than the rest of the counting.
#[derive(Default)]
struct InputCounts {
    packets: u64,
    bytes: u64,
    /// The VNI of the latest segments and how many there were: mirrored frames come in runs of one
    /// VNI, so the map below is touched once per run, not per frame.
    vni_run: Option<(u32, u64)>,
    per_vni: VniCounts,
}

impl InputCounts {
    fn frame(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }

    fn vni(&mut self, vni: u32) {
        match &mut self.vni_run {
            Some((run, n)) if *run == vni => *n += 1,
            run => {
                if let Some((previous, n)) = run.replace((vni, 1)) {
                    *self.per_vni.entry(previous).or_default() += n;
                }
            }
        }
    }

    fn publish_frames(&mut self, metrics: &Metrics) {
        // Nothing to add after a flush, whose sends come right after it published.
        if self.packets > 0 {
            metrics.packets.fetch_add(std::mem::take(&mut self.packets), Relaxed);
            metrics.bytes.fetch_add(std::mem::take(&mut self.bytes), Relaxed);
        }
    }

    fn publish(&mut self, metrics: &Metrics) {
        self.publish_frames(metrics);
        if let Some((vni, n)) = self.vni_run.take() {
            *self.per_vni.entry(vni).or_default() += n;
        }
        metrics.add_vni_segments(&mut self.per_vni);
    }
}

/// Segments per batch handed to a worker.
const BATCH_ITEMS: usize = 128;
/// Payload bytes after which a batch is handed over.
const BATCH_BYTES: usize = 256 << 10;
/// Room beyond `BATCH_BYTES` for the payload that fills a batch: a decoded IP packet's payload (a
/// larger one, which a zero IP length lets through up to the capture length, grows the batch, and
/// such a batch is not recycled).
const BATCH_SLACK: usize = 64 << 10;

/// Bytes a batch filled to the limit allocates for its payloads.
const FULL_BATCH_DATA: usize = BATCH_BYTES + BATCH_SLACK;

/// Emptied batches on their way back from the workers to the inputs.
#[derive(Clone)]
struct SpareBatches {
    tx: Sender<Batch>,
    rx: Receiver<Batch>,
}

impl SpareBatches {
    /// Room for every full-size batch the workers' queues can hold (a queue admits at least one),
    /// plus two per worker: the one it works through and the one an input fills. A fresh batch's
    /// allocations are too large for the allocator's thread caches and touching their new pages
    /// faulted (3% of a run); a smaller pool freed batches whenever the queues drained and allocated
    /// them again when they refilled (more than a quarter of all batches on the benchmark pcap).
    /// Only full-size batches are kept, so the pool holds at most `queue_bytes` (or one batch) plus
    /// two batches per worker. The price: a full-size batch is charged its whole capacity in a
    /// queue even when it filled up on 128 small segments, so a 16 MiB queue holds at least
    /// 6,000 segments rather than more of small ones; the kernel's buffers take a burst beyond.
    fn new(workers: usize, queue_bytes: usize) -> Self {
        let (tx, rx) = bounded(workers * ((queue_bytes / Self::FULL_COST).max(1) + 2));
        SpareBatches { tx, rx }
    }

    /// What a full-size batch is charged in a queue.
    const FULL_COST: usize = Batch::cost_of(BATCH_ITEMS, FULL_BATCH_DATA);

    /// A batch with room for a full batch's items and payloads, reused when one is spare.
    fn full_size(&self) -> Batch {
        self.rx.try_recv().unwrap_or_else(|_| Batch {
            items: Vec::with_capacity(BATCH_ITEMS),
            data: Vec::with_capacity(FULL_BATCH_DATA),
        })
    }

    /// Keeps a batch that was worked through, emptied, if it is a full-size one and the pool has
    /// room; others (a live input's partial flushes, batches that grew) are freed.
    fn give_back(&self, mut batch: Batch) {
        if batch.items.capacity() == BATCH_ITEMS && batch.data.capacity() == FULL_BATCH_DATA {
            batch.items.clear();
            batch.data.clear();
            let _ = self.tx.try_send(batch);
        }
    }
}

/// A running pipeline.
pub struct Engine {
    cfg: Arc<EngineConfig>,
    senders: Vec<Sender<Work>>,
    spare: SpareBatches,
    /// Bytes waiting in each worker's queue.
    queued: Arc<[AtomicUsize]>,
    event_tx: Sender<Vec<u8>>,
    hook: Option<RequestHook>,
    workers: Vec<JoinHandle<()>>,
    writer: JoinHandle<io::Result<()>>,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// Starts the workers and the event writer (events go to `events`, one JSON object a line). A file
    /// that cannot be opened is an error here, before any thread starts.
    pub fn start(
        mut cfg: EngineConfig,
        events: EventOutput,
        hook: Option<RequestHook>,
    ) -> Result<Engine, EngineError> {
        cfg.workers = cfg.workers.max(1);
        cfg.reassembly.memcap /= cfg.workers;
        if let EventOutput::File { path, .. } = &events {
            events.open().map_err(|source| EngineError::Open { path: path.clone(), source })?;
        }
        let cfg = Arc::new(cfg);
        let metrics = Arc::new(Metrics::new(cfg.workers));
        let (event_tx, event_rx) = bounded::<Vec<u8>>(cfg.workers * 64);
        let writer = spawn("vxtap-events", {
            let metrics = metrics.clone();
            move || write_events_loop(event_rx, events, &metrics)
        })?;
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        let queued: Arc<[AtomicUsize]> = (0..cfg.workers).map(|_| AtomicUsize::new(0)).collect();
        let spare = SpareBatches::new(cfg.workers, cfg.queue_bytes);
        for index in 0..cfg.workers {
            // Batches are flushed at least every receive batch; 16 KiB is a small one.
            let (tx, rx) = bounded((cfg.queue_bytes / (16 << 10)).max(16));
            let ctx = worker::Worker::new(
                index,
                cfg.clone(),
                metrics.clone(),
                event_tx.clone(),
                queued.clone(),
                spare.clone(),
                hook.clone(),
            );
            workers.push(spawn(&format!("vxtap-worker-{index}"), move || ctx.run(rx))?);
            senders.push(tx);
        }
        let ticker = if cfg.wall_clock { Some(start_ticker(senders.clone())?) } else { None };
        Ok(Engine { cfg, senders, spare, queued, event_tx, hook, workers, writer, ticker, metrics })
    }

    /// A new input handle; each input thread owns one.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher {
            cfg: self.cfg.clone(),
            senders: self.senders.clone(),
            spare: self.spare.clone(),
            queued: self.queued.clone(),
            pending: (0..self.senders.len()).map(|_| Batch::default()).collect(),
            stalled: vec![false; self.senders.len()],
            defrag: Defragmenter::new(DefragConfig::default()),
            counts: InputCounts::default(),
            metrics: self.metrics.clone(),
        }
    }

    /// A sink for whole request records from another input (the HTTP mirror listener).
    pub fn record_sink(&self) -> RecordSink {
        RecordSink::new(&self.cfg, self.metrics.clone(), self.event_tx.clone(), self.hook.clone())
    }

    /// The shared counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Ends the pipeline once every [`Dispatcher`] is dropped: workers close all flows (emitting every
    /// complete request), the writer flushes, and the threads are joined.
    pub fn finish(self) -> Result<(), EngineError> {
        if let Some((stop, handle)) = self.ticker {
            stop.store(true, Relaxed);
            let _ = handle.join();
        }
        drop(self.senders);
        drop(self.event_tx);
        let mut result = Ok(());
        for (index, worker) in self.workers.into_iter().enumerate() {
            if worker.join().is_err() && result.is_ok() {
                result = Err(EngineError::WorkerPanicked(index));
            }
        }
        match self.writer.join() {
            Ok(Ok(())) => result,
            Ok(Err(e)) => Err(EngineError::Write(e)),
            Err(_) => Err(EngineError::WorkerPanicked(usize::MAX)),
        }
    }
}

fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, EngineError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(|source| EngineError::Spawn { name: name.to_string(), source })
}

/// Microseconds since the Unix epoch, from the wall clock.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn start_ticker(senders: Vec<Sender<Work>>) -> Result<(Arc<AtomicBool>, JoinHandle<()>), EngineError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = spawn("vxtap-ticker", move || {
        while !flag.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let now = now_micros();
            for tx in &senders {
                let _ = tx.try_send(Work::Tick(now));
            }
        }
    })?;
    Ok((stop, handle))
}

/// Where events are written.
pub enum EventOutput {
    /// Any writer: stdout, a pipe, a test buffer.
    Writer(Box<dyn Write + Send>),
    /// A file opened for appending, reopened (created anew if it was moved away) whenever `reopen`
    /// is set: SIGHUP after logrotate.
    File {
        /// The file.
        path: PathBuf,
        /// Set by the caller; the writer clears it once the file is reopened.
        reopen: Arc<AtomicBool>,
    },
}

impl EventOutput {
    /// Opens the writer (the file, for [`EventOutput::File`]).
    fn open(&self) -> io::Result<Box<dyn Write + Send>> {
        match self {
            EventOutput::Writer(_) => Err(io::Error::other("a writer is opened once")),
            EventOutput::File { path, .. } => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                Ok(Box::new(file))
            }
        }
    }
}

/// Event chunks written with one system call at most (well under every system's `IOV_MAX`).
const GATHER_CHUNKS: usize = 256;

/// How long the writer waits for events before it checks for a reopen request.
const WRITER_POLL: Duration = Duration::from_millis(200);

fn write_events_loop(rx: Receiver<Vec<u8>>, output: EventOutput, metrics: &Metrics) -> io::Result<()> {
    let (mut out, reopen) = match output {
        EventOutput::Writer(w) => (w, None),
        ref file @ EventOutput::File { ref reopen, .. } => (file.open()?, Some((file, reopen.clone()))),
    };
    let mut chunks = Vec::with_capacity(GATHER_CHUNKS);
    loop {
        match rx.recv_timeout(WRITER_POLL) {
            Ok(chunk) => {
                // The workers' chunks go to the output as they are, as many as are waiting in one
                // vectored write: no copy through a buffer (that copy was 3% of a run).
                chunks.push(chunk);
                chunks.extend(rx.try_iter().take(GATHER_CHUNKS - 1));
                write_chunks(&mut out, &chunks)?;
                let bytes: usize = chunks.drain(..).map(|c| c.len()).sum();
                metrics.event_bytes.fetch_add(bytes as u64, Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return out.flush(),
        }
        if let Some((file, flag)) = &reopen {
            if flag.swap(false, Relaxed) {
                out.flush()?;
                match file.open() {
                    Ok(fresh) => out = fresh,
                    // Keep writing to the old file rather than lose events; the metric shows it.
                    Err(_) => {
                        metrics.event_reopen_failures.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
}

/// Writes every chunk whole, in as few vectored writes as the output takes.
fn write_chunks(out: &mut impl Write, chunks: &[Vec<u8>]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An input thread's handle into the pipeline: decodes frames and routes segments to workers.
/// Partly filled batches are sent by [`Dispatcher::flush`] and when the dispatcher is dropped.
pub struct Dispatcher {
    cfg: Arc<EngineConfig>,
    senders: Vec<Sender<Work>>,
    spare: SpareBatches,
    queued: Arc<[AtomicUsize]>,
    pending: Vec<Batch>,
    /// Per worker: a wait for room ran out, so batches are dropped at once until its queue is half
    /// empty (live input only).
    stalled: Vec<bool>,
    defrag: Defragmenter,
    /// Frames, bytes and segments per VNI not yet added to `metrics`.
    counts: InputCounts,
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    /// A captured frame (pcap file or interface) with link type `link`, captured at `ts` (µs).
    pub fn frame(&mut self, link: LinkType, frame: &[u8], ts: u64) {
        self.counts.frame(frame.len());
        match decode_frame(link, frame, &self.cfg.decap) {
            Ok(Decoded::Skipped(SkipReason::OuterFragment)) => {
                if let Some(packet) = defragment(&mut self.defrag, &self.metrics, link, frame, ts) {
                    let decoded = decode_frame(LinkType::RawIp, &packet, &self.cfg.decap);
                    self.route(decoded, ts);
                }
            }
            decoded => self.route(decoded, ts),
        }
    }

    /// A datagram received on the tunnel socket bound to `local_port`.
    pub fn udp_payload(&mut self, src: IpAddr, dst: IpAddr, local_port: u16, payload: &[u8], ts: u64) {
        self.counts.frame(payload.len());
        let decoded = decode_udp_payload(src, dst, local_port, payload, &self.cfg.decap);
        self.route(decoded, ts);
    }

    fn route(&mut self, decoded: Result<Decoded<'_>, DecapError>, ts: u64) {
        let Some(segment) = accept(decoded, &self.cfg, &self.metrics) else { return };
        let h = &segment.header;
        if let Some(tunnel) = h.tunnel {
            self.counts.vni(tunnel.vni);
        }
        let shard = (FlowKey::of(h).0.shard_hash() % self.senders.len() as u64) as usize;
        let batch = &mut self.pending[shard];
        let start = batch.data.len();
        batch.data.extend_from_slice(segment.payload);
        batch.items.push(BatchItem { header: *h, start, len: segment.payload.len(), ts });
        if batch.is_full() {
            self.send(shard);
        }
    }

    /// Sends every partly filled batch; call when the input pauses (end of a receive batch).
    pub fn flush(&mut self) {
        self.counts.publish(&self.metrics);
        for shard in 0..self.pending.len() {
            if !self.pending[shard].items.is_empty() {
                self.send(shard);
            }
        }
    }

    fn send(&mut self, shard: usize) {
        // After a full batch the next one is full-size, a spare one when a worker gave one back.
        // After a partial one (a live input's flush) it starts with room for twice what this one
        // held, since queues are charged by capacity and a small flush should not cost a full
        // batch's room; a burst after a quiet spell grows it in a few doublings.
        let held = &self.pending[shard];
        let next = if held.is_full() {
            self.spare.full_size()
        } else {
            Batch {
                items: Vec::with_capacity((2 * held.items.len()).min(BATCH_ITEMS)),
                data: Vec::with_capacity((2 * held.data.len()).min(FULL_BATCH_DATA)),
            }
        };
        let batch = std::mem::replace(&mut self.pending[shard], next);
        self.counts.publish_frames(&self.metrics);
        let (count, bytes) = (batch.items.len() as u64, batch.cost());
        let queued = &self.queued[shard];
        let limit = self.cfg.queue_bytes;
        let deadline = match self.cfg.overload {
            Overload::Block => None,
            Overload::WaitThenDrop(wait) => {
                // A worker that let a wait run out is behind: until it has worked its queue down to
                // half, its batches are dropped at once, so one slow worker cannot hold up this input
                // (and the other workers it feeds) for a wait per batch.
                if self.stalled[shard] && queued.load(Relaxed) > limit / 2 {
                    self.metrics.shard_queue_drops.fetch_add(count, Relaxed);
                    return;
                }
                self.stalled[shard] = false;
                Instant::now().checked_add(wait)
            }
        };
        while queued.load(Relaxed) + bytes > limit && queued.load(Relaxed) > 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.stalled[shard] = true;
                self.metrics.shard_queue_drops.fetch_add(count, Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        queued.fetch_add(bytes, Relaxed);
        self.metrics.shard_queue_depth.fetch_add(count, Relaxed);
        let sent = match deadline {
            None => self.senders[shard].send(Work::Batch(batch)).is_ok(),
            Some(d) => match self.senders[shard].send_deadline(Work::Batch(batch), d) {
                Ok(()) => true,
                Err(SendTimeoutError::Timeout(_)) => {
                    self.metrics.shard_queue_drops.fetch_add(count, Relaxed);
                    false
                }
                Err(SendTimeoutError::Disconnected(_)) => false,
            },
        };
        if !sent {
            queued.fetch_sub(bytes, Relaxed);
            self.metrics.shard_queue_depth.fetch_sub(count, Relaxed);
        }
    }
}

/// Adds an outer IP fragment to `defrag`; the whole datagram once its last fragment arrived.
fn defragment(
    defrag: &mut Defragmenter,
    metrics: &Metrics,
    link: LinkType,
    frame: &[u8],
    ts: u64,
) -> Option<Vec<u8>> {
    let before = defrag.stats();
    let result = defrag.push(link, frame, ts);
    metrics.add_defrag(&before, &defrag.stats());
    result.unwrap_or_else(|err| {
        metrics.decap_error(err);
        None
    })
}

/// The segment of a decoded frame when it is one vxtap should reassemble; everything else is counted.
fn accept<'a>(
    decoded: Result<Decoded<'a>, DecapError>,
    cfg: &EngineConfig,
    metrics: &Metrics,
) -> Option<Segment<'a>> {
    let segment = match decoded {
        Ok(Decoded::Tcp(segment)) => segment,
        Ok(Decoded::Skipped(reason)) => {
            metrics.skipped(reason);
            return None;
        }
        Err(err) => {
            metrics.decap_error(err);
            return None;
        }
    };
    let (src, dst) = (segment.header.src.port(), segment.header.dst.port());
    if !cfg.ports.is_empty() && !cfg.ports.contains(&src) && !cfg.ports.contains(&dst) {
        metrics.port_filtered.fetch_add(1, Relaxed);
        return None;
    }
    Some(segment)
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.flush();
    }
}
