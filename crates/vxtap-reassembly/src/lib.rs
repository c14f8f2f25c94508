//! TCP stream reassembly for vxtap: a flow table that turns decoded segments into ordered byte streams.
//!
//! Sans-IO: segments and their capture timestamps (microseconds) go in; the caller's [`StreamHandler`]
//! receives, per flow and direction, contiguous data, gaps (bytes that will never come), ends and the
//! close. Out-of-order segments wait in a bounded buffer; overlaps follow a first-data-wins policy (as
//! Linux does), and conflicting overlaps are counted because they are an evasion signal.
//!
//! ```
//! use vxtap_decap::{decode_frame, DecapConfig, Decoded, LinkType};
//! use vxtap_reassembly::{CloseReason, Delivery, Dir, FlowInfo, FlowTable, ReassemblyConfig, StreamHandler};
//!
//! #[derive(Default)]
//! struct Collect(Vec<u8>);
//! impl StreamHandler for Collect {
//!     type Sink = Vec<Vec<u8>>;
//!     fn on_data(&mut self, _dir: Dir, data: &[u8], _at: Delivery, _sink: &mut Self::Sink) {
//!         self.0.extend_from_slice(data);
//!     }
//!     fn on_close(&mut self, _ts: u64, _why: CloseReason, sink: &mut Self::Sink) {
//!         sink.push(std::mem::take(&mut self.0));
//!     }
//! }
//!
//! let mut table = FlowTable::new(ReassemblyConfig::default());
//! let mut sink = Vec::new();
//! # let frames: Vec<Vec<u8>> = Vec::new();
//! for frame in &frames {
//!     if let Ok(Decoded::Tcp(seg)) = decode_frame(LinkType::Ethernet, frame, &DecapConfig::default()) {
//!         table.process(&seg, 0, &mut sink, |_info: &FlowInfo, _sink: &mut Vec<Vec<u8>>| Collect::default());
//!     }
//! }
//! table.close_all(0, &mut sink);
//! ```

mod flow;
mod stream;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use vxtap_decap::{Segment, SegmentHeader, TcpFlags, TunnelKind};

use flow::Flow;
use stream::Stream;

/// Direction within a flow: `A` is the side that sent the flow's first packet, `B` the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the side that sent the first packet vxtap saw (the client when that was a SYN).
    A,
    /// From the other side.
    B,
}

impl Dir {
    /// The opposite direction.
    pub fn other(self) -> Dir {
        match self {
            Dir::A => Dir::B,
            Dir::B => Dir::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Dir::A => 0,
            Dir::B => 1,
        }
    }
}

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions finished (FIN), or one did and the other was never seen.
    Fin,
    /// A reset.
    Rst,
    /// No packet for the idle timeout, or for the closing timeout after a FIN.
    Idle,
    /// Cut to keep memory under the memcap or the flow count under its limit.
    Evicted,
    /// The input ended (end of file, shutdown).
    Shutdown,
    /// A flow whose ports a new connection took over was displaced by yet another one, or by too
    /// many such flows (see [`ReassemblyStats::closed_reused`]).
    Reused,
}

/// The identity of a connection: tunnel, VNI, VLAN and both endpoints, in a direction-free order so
/// that both directions of a connection have the same key (and land on the same worker). Addresses
/// are kept as 128-bit numbers in two words (IPv4 as its 32 bits) and ports beside them, not as
/// `SocketAddr`s: keys are hashed and compared for every frame and segment, and stored in the
/// table, its timers and tombstones (56 bytes instead of 80).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    /// Tunnel kind and VNI: two VPCs using the same addresses never mix.
    tunnel: Option<(TunnelKind, u32)>,
    /// Inner VLAN id.
    vlan: Option<u16>,
    /// Whether the addresses are IPv6 (both endpoints of a packet are of one family).
    v6: bool,
    /// The lower endpoint's address (high word first).
    lo: [u64; 2],
    /// The higher endpoint's address.
    hi: [u64; 2],
    /// The lower and the higher endpoint's ports.
    ports: [u16; 2],
}

impl FlowKey {
    /// The key of a segment's flow, and whether the segment travels from `lo` to `hi`.
    pub fn of(header: &SegmentHeader) -> (FlowKey, bool) {
        let endpoint = |addr: SocketAddr| {
            let ip = match addr.ip() {
                IpAddr::V4(ip) => u128::from(ip.to_bits()),
                IpAddr::V6(ip) => ip.to_bits(),
            };
            ([(ip >> 64) as u64, ip as u64], addr.port())
        };
        let (src, dst) = (endpoint(header.src), endpoint(header.dst));
        let forward = src <= dst;
        let (lo, hi) = if forward { (src, dst) } else { (dst, src) };
        let tunnel = header.tunnel.map(|t| (t.kind, t.vni));
        let v6 = header.src.is_ipv6();
        (FlowKey { tunnel, vlan: header.vlan, v6, lo: lo.0, hi: hi.0, ports: [lo.1, hi.1] }, forward)
    }

    /// A hash that is the same for both directions and for every process and thread, for sharding.
    pub fn shard_hash(&self) -> u64 {
        let mut hasher = StableHasher::default();
        self.hash(&mut hasher);
        hasher.finish()
    }
}

/// Hashes the key as five machine words (addresses as 128-bit numbers, IPv6 ones with the top bit
/// flipped; ports, VLAN and tunnel packed in one): a hash per frame in the dispatcher and per
/// segment in the flow table, where the field by field derive showed in profiles. Equal keys give
/// equal words; unequal keys rarely do, and the table resolves that by equality.
impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let family = if self.v6 { 1 << 63 } else { 0 };
        let (kind, vni) = match self.tunnel {
            None => (0u64, 0),
            Some((TunnelKind::Vxlan, vni)) => (1, vni),
            Some((TunnelKind::Geneve, vni)) => (2, vni),
        };
        let vlan = self.vlan.map_or(0, |v| u64::from(v) | 1 << 16);
        let ports = u64::from(self.ports[0]) << 48 | u64::from(self.ports[1]) << 32;
        let [lo_high, lo_low] = self.lo;
        let [hi_high, hi_low] = self.hi;
        state.write_u64(lo_low);
        state.write_u64(lo_high ^ family);
        state.write_u64(hi_low);
        state.write_u64(hi_high ^ family);
        state.write_u64(ports ^ vlan ^ kind << 17 ^ u64::from(vni) << 19);
    }
}

/// What a handler learns about its flow when the flow is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// A number identifying the flow in events (stable for a given key and start time).
    pub flow_id: u64,
    /// The flow's key.
    pub key: FlowKey,
    /// Source of the first packet seen (direction [`Dir::A`]).
    pub a: SocketAddr,
    /// Destination of the first packet seen.
    pub b: SocketAddr,
    /// The innermost tunnel of the first packet.
    pub tunnel: Option<vxtap_decap::Tunnel>,
    /// Which side opened the connection, when the handshake was seen (`A` for a SYN, `B` for a SYN-ACK).
    pub client: Option<Dir>,
    /// Capture time of the first packet, microseconds.
    pub start_ts: u64,
}

/// Receives what reassembly makes of one flow. Only `on_data` and `on_close` are required.
pub trait StreamHandler {
    /// Where the handler writes its results (the caller's output buffer).
    type Sink;

    /// A packet (possibly without payload) was seen in `dir`.
    fn on_packet(&mut self, _dir: Dir, _sink: &mut Self::Sink) {}
    /// The next contiguous bytes of `dir`, and where and when they were delivered.
    fn on_data(&mut self, dir: Dir, data: &[u8], at: Delivery, sink: &mut Self::Sink);
    /// `len` bytes of `dir` are lost: they will never be delivered. `at` says where they were and
    /// when they were declared lost (no acknowledgment: no segment carried them).
    fn on_gap(&mut self, _dir: Dir, _len: u64, _at: Delivery, _sink: &mut Self::Sink) {}
    /// `dir` has ended (its FIN was reached).
    fn on_end(&mut self, _dir: Dir, _ts: u64, _sink: &mut Self::Sink) {}
    /// The flow is over; no further calls follow.
    fn on_close(&mut self, ts: u64, reason: CloseReason, sink: &mut Self::Sink);
    /// Bytes the handler holds, counted against the memcap.
    fn buffered_bytes(&self) -> usize {
        0
    }
}

/// Where delivered bytes sit in their stream, and when they were delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Capture time, microseconds.
    pub ts: u64,
    /// Stream offset of the first byte: bytes delivered or declared lost before it. 0 is the byte
    /// after the SYN; a stream whose start was guessed (no SYN seen) counts from up to 1 MiB before
    /// its first byte, so only differences between offsets of one stream mean something there.
    pub offset: u64,
    /// The offset in the other direction's stream that the segment carrying these bytes
    /// acknowledged: what the sender had received of the other direction when it sent them. `None`
    /// without an ACK or before the other stream has a start.
    pub acked: Option<u64>,
}

/// Limits and timeouts of a flow table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// A flow with no packet for this long is closed (default 30 s, as goreplay's `--input-raw-expire`).
    pub idle_timeout_us: u64,
    /// After one direction's FIN, the flow is closed when idle this long (default 5 s).
    pub closing_timeout_us: u64,
    /// How long a hole may wait for its missing segment before it is declared a gap (default 1 s).
    pub reorder_timeout_us: u64,
    /// Out-of-order bytes buffered per direction before the hole is declared a gap (default 4 MiB,
    /// at most 1 GiB).
    pub max_ooo_bytes: usize,
    /// Bytes (stream buffers, handler buffers, per-flow overhead) this table may hold (default 1 GiB).
    pub memcap: usize,
    /// Flows this table may hold (default 1,000,000).
    pub max_flows: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            idle_timeout_us: 30_000_000,
            closing_timeout_us: 5_000_000,
            reorder_timeout_us: 1_000_000,
            max_ooo_bytes: 4 << 20,
            memcap: 1 << 30,
            max_flows: 1_000_000,
        }
    }
}

/// Counters of one flow table; the caller sums them over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Segments processed.
    pub segments: u64,
    /// Flows created.
    pub flows: u64,
    /// Flows closed by FIN, RST, idle expiry, eviction and shutdown.
    pub closed_fin: u64,
    /// See `closed_fin`.
    pub closed_rst: u64,
    /// See `closed_fin`.
    pub closed_idle: u64,
    /// Flows cut for the memcap or the flow limit.
    pub evicted: u64,
    /// See `closed_fin`.
    pub closed_shutdown: u64,
    /// Flows whose addresses and ports a new connection took over while they were still open
    /// (their FIN lost, or bytes before it not yet reached): a SYN with a new initial sequence
    /// number, or bytes past their FIN. They stay open beside the new flow for the segments the
    /// mirror still brings them, and close as any flow does (counted there too).
    pub closed_reused: u64,
    /// Payload bytes delivered in order.
    pub bytes: u64,
    /// Gaps declared, and the bytes they cover.
    pub gaps: u64,
    /// See `gaps`.
    pub gap_bytes: u64,
    /// Segments that carried only bytes already delivered or buffered.
    pub duplicates: u64,
    /// Overlapping retransmissions whose bytes differ from the first copy (kept: first data wins).
    pub overlap_conflicts: u64,
    /// Segments that arrived ahead of a hole.
    pub out_of_order: u64,
    /// Segments too far from the expected sequence number to belong to the stream.
    pub out_of_window: u64,
    /// Segments that open no flow, ignored: without payload (bare ACK, FIN, RST) for no known
    /// flow, or late copies of a connection that closed moments ago (its handshake included).
    pub stray: u64,
}

/// Closed connections remembered at once (beyond it the oldest are forgotten early).
const MAX_TOMBSTONES: usize = 65_536;

impl ReassemblyStats {
    /// Adds another table's counters to these (summing over workers).
    pub fn add(&mut self, other: &ReassemblyStats) {
        let ReassemblyStats {
            segments,
            flows,
            closed_fin,
            closed_rst,
            closed_idle,
            evicted,
            closed_shutdown,
            closed_reused,
            bytes,
            gaps,
            gap_bytes,
            duplicates,
            overlap_conflicts,
            out_of_order,
            out_of_window,
            stray,
        } = other;
        self.segments += segments;
        self.flows += flows;
        self.closed_fin += closed_fin;
        self.closed_rst += closed_rst;
        self.closed_idle += closed_idle;
        self.evicted += evicted;
        self.closed_shutdown += closed_shutdown;
        self.closed_reused += closed_reused;
        self.bytes += bytes;
        self.gaps += gaps;
        self.gap_bytes += gap_bytes;
        self.duplicates += duplicates;
        self.overlap_conflicts += overlap_conflicts;
        self.out_of_order += out_of_order;
        self.out_of_window += out_of_window;
        self.stray += stray;
    }
}

/// One worker's flow table: owns its flows outright, no locks.
pub struct FlowTable<H> {
    cfg: ReassemblyConfig,
    /// Flows are boxed: a flow with its HTTP state is large, and the map's spare capacity should
    /// cost pointers, not whole flows.
    /// foldhash: several times cheaper than SipHash on these keys, and randomly seeded per table, so
    /// addresses chosen by an attacker cannot be aimed at one bucket.
    flows: HashMap<FlowKey, Box<Flow<H>>, foldhash::fast::RandomState>,
    /// Connections closed by FIN or RST: late duplicates of their segments are ignored instead of
    /// opening a flow that would emit a request again.
    closed: HashMap<FlowKey, Tombstone, foldhash::fast::RandomState>,
    closed_order: VecDeque<(u64, FlowKey)>,
    /// Flows whose ports a new connection took over while they were open, by key: segments that
    /// precede the new connection's start, and that the old one owns, still go to it, until it
    /// closes (by its FINs, or idle for the closing timeout).
    /// Oldest first: a client can reuse its port again before the mirror brought the last bytes of
    /// the connection before.
    retired: HashMap<FlowKey, Vec<Box<Flow<H>>>, foldhash::fast::RandomState>,
    /// Retired flows in all.
    retired_count: usize,
    /// (deadline, key): lazily maintained; an entry whose flow moved on is re-queued when popped.
    timers: BinaryHeap<Reverse<(u64, FlowKey)>>,
    memory: usize,
    stats: ReassemblyStats,
    now: u64,
}

/// What the table remembers of the connections on one key that closed by FIN or RST, or that a
/// new connection on their ports took over.
struct Tombstone {
    /// When the latest closed (capture time, µs).
    at: u64,
    latest: Ended,
    /// The ones before it within the closing timeout, latest first, up to [`MAX_GENERATIONS`] in
    /// all: a client that reuses its port at once leaves several, and a reordering mirror can still
    /// bring copies of each. Empty, without an allocation, for the usual single connection.
    older: Vec<Ended>,
}

/// Closed connections remembered per key (see [`Tombstone::older`]).
const MAX_GENERATIONS: usize = 8;

/// What is remembered of one closed connection.
#[derive(Clone, Copy)]
struct Ended {
    /// Its initial sequence numbers from the key's `lo` and `hi` endpoints, where known: a SYN
    /// carrying one of them is a late copy of the old handshake, not a new connection on the port.
    isns: [Option<u32>; 2],
    /// The sequence numbers each endpoint's bytes took (see `Stream::span`), where known: a late
    /// copy of the closed connection's segments lies within them.
    spans: [Option<(u32, u32)>; 2],
}

impl Tombstone {
    /// Whether a segment (from the key's `lo` endpoint when `from_lo`) is a late copy of one of
    /// the closed connections', its handshake included.
    fn is_late_copy(&self, h: &SegmentHeader, from_lo: bool) -> bool {
        std::iter::once(&self.latest).chain(&self.older).any(|ended| ended.is_late_copy(h, from_lo))
    }
}

impl Ended {
    /// Whether a SYN or SYN-ACK (from the key's `lo` endpoint when `from_lo`) is a late copy of the
    /// closed connection's handshake: it carries its sender's old initial sequence number, or, a
    /// SYN-ACK, acknowledges the other side's (whose own SYN-ACK may never have been seen).
    fn is_old_handshake(&self, h: &SegmentHeader, from_lo: bool) -> bool {
        let (sender, receiver) =
            if from_lo { (self.isns[0], self.isns[1]) } else { (self.isns[1], self.isns[0]) };
        sender == Some(h.seq)
            || (h.flags.contains(TcpFlags::ACK) && receiver.map(|isn| isn.wrapping_add(1)) == Some(h.ack))
    }

    /// Whether a segment without SYN (from the key's `lo` endpoint when `from_lo`) may be a late
    /// copy of the closed connection's: its sequence number lies within what its sender sent
    /// (its FIN and the ACK after it included), and so does its acknowledgment, if it has one,
    /// within what the other side sent. A new connection on the same ports, whose handshake the
    /// mirror lost, starts elsewhere: a stack that numbers connections by a clock (Linux, RFC 6528)
    /// starts the next one past the old end, unless the old one sent faster than that clock runs
    /// (about 15 MB a second).
    fn may_be_late_copy(&self, h: &SegmentHeader, from_lo: bool) -> bool {
        let (sender, receiver) =
            if from_lo { (self.spans[0], self.spans[1]) } else { (self.spans[1], self.spans[0]) };
        let within = |span: Option<(u32, u32)>, n: u32| {
            span.is_none_or(|(first, len)| len == u32::MAX || n.wrapping_sub(first) <= len + 1)
        };
        within(sender, h.seq) && (!h.flags.contains(TcpFlags::ACK) || within(receiver, h.ack))
    }

    /// Whether a segment is a late copy of this closed connection's, its handshake included.
    fn is_late_copy(&self, h: &SegmentHeader, from_lo: bool) -> bool {
        if h.flags.contains(TcpFlags::SYN) {
            self.is_old_handshake(h, from_lo)
        } else {
            self.may_be_late_copy(h, from_lo)
        }
    }
}

/// Retired flows kept at once (see [`FlowTable::retire`]); beyond it the least recently active
/// one closes.
const MAX_RETIRED: usize = 4096;

/// Retired flows kept for one key; beyond it the oldest closes.
const MAX_RETIRED_PER_KEY: usize = 8;

/// Timer entries of closed flows tolerated beyond twice the open flows before they are swept.
const TIMER_SLACK: usize = 4096;

impl<H: StreamHandler> FlowTable<H> {
    /// Size of a flow's boxed state (its two streams and its handler): what every open flow
    /// allocates, whatever it buffers.
    pub const FLOW_SIZE: usize = std::mem::size_of::<Flow<H>>();

    /// Memory charged per flow beyond its buffered bytes: the boxed flow with its handler, its table
    /// slot, a timer entry and allocator overhead.
    pub const FLOW_OVERHEAD: usize = Self::FLOW_SIZE + 3 * std::mem::size_of::<(FlowKey, u64)>() + 64;

    /// An empty table.
    pub fn new(cfg: ReassemblyConfig) -> Self {
        FlowTable {
            cfg,
            flows: HashMap::default(),
            closed: HashMap::default(),
            closed_order: VecDeque::new(),
            retired: HashMap::default(),
            retired_count: 0,
            timers: BinaryHeap::new(),
            memory: 0,
            stats: ReassemblyStats::default(),
            now: 0,
        }
    }

    /// Feeds one segment captured at `ts`; `make` builds the handler when the segment opens a new flow
    /// (it may read the sink, where the caller keeps what it learned from other flows).
    pub fn process(
        &mut self,
        seg: &Segment<'_>,
        ts: u64,
        sink: &mut H::Sink,
        make: impl FnOnce(&FlowInfo, &mut H::Sink) -> H,
    ) {
        self.now = self.now.max(ts);
        self.stats.segments += 1;
        let (key, forward) = FlowKey::of(&seg.header);
        if !self.retired.is_empty() {
            if let Some(index) = self.retired_owner(&key, seg, forward) {
                self.feed_retired(&key, index, seg, ts, forward, sink);
                return;
            }
        }
        // One hash and probe for a segment of a known flow (nearly all of them): the lookup is per
        // segment, and a `contains_key` before it showed in profiles.
        let (outcome, (before, after)) = match self.flows.get_mut(&key) {
            Some(flow) if !flow.is_new_connection(seg, forward) => {
                (flow.segment(seg, forward, ts, &self.cfg, &mut self.stats, sink), flow.recharge())
            }
            found => {
                let was_open = found.is_some();
                // A late copy of a segment of a connection that closed moments ago (its SYN or
                // SYN-ACK included) opens nothing, nor moves an open flow aside: a new connection
                // on the same ports starts from other sequence numbers. Judged before the open
                // flow is retired, which may push an older one out of what is remembered.
                let stale =
                    self.recently_closed(&key).is_some_and(|old| old.is_late_copy(&seg.header, forward));
                if was_open && !stale {
                    self.retire(&key, sink);
                }
                if !self.open(key, forward, seg, ts, stale, sink, make) {
                    return;
                }
                let Some(flow) = self.flows.get_mut(&key) else { return };
                (flow.segment(seg, forward, ts, &self.cfg, &mut self.stats, sink), flow.recharge())
            }
        };
        self.memory = self.memory + after - before;
        if let Some(reason) = outcome {
            self.remove(&key, reason, sink);
        }
        self.enforce_memcap(&key, sink);
    }

    /// Opens the flow `key` for its first segment; false when the segment opens nothing (a stray
    /// bare ACK, FIN or RST, or, `stale`, a late copy from a connection that just closed).
    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        key: FlowKey,
        forward: bool,
        seg: &Segment<'_>,
        ts: u64,
        stale: bool,
        sink: &mut H::Sink,
        make: impl FnOnce(&FlowInfo, &mut H::Sink) -> H,
    ) -> bool {
        let h = &seg.header;
        let syn = h.flags.contains(TcpFlags::SYN);
        let bare = seg.payload.is_empty() && h.missing == 0;
        // A bare ACK, FIN or RST opens nothing (typically the last ACK of a closed connection).
        if stale || (!syn && bare) {
            self.stats.stray += 1;
            return false;
        }
        if self.flows.len() >= self.cfg.max_flows {
            self.evict_oldest(None, sink);
        }
        let info = new_flow_info(key, h, ts);
        let flow = Box::new(Flow::new(forward, make(&info, sink)));
        self.memory += Self::FLOW_OVERHEAD;
        self.stats.flows += 1;
        self.timers.push(Reverse((ts + self.cfg.idle_timeout_us, key)));
        self.flows.insert(key, flow);
        true
    }

    /// Advances the clock to `now` (capture time, microseconds): closes idle flows and declares gaps
    /// for holes that waited longer than the reorder timeout. Call it regularly when input is quiet.
    pub fn advance(&mut self, now: u64, sink: &mut H::Sink) {
        self.now = self.now.max(now);
        while let Some(Reverse((deadline, key))) = self.timers.peek().copied() {
            if deadline > self.now {
                break;
            }
            self.timers.pop();
            let Some(flow) = self.flows.get_mut(&key) else { continue };
            let due = flow.deadline(&self.cfg);
            if due > self.now {
                self.timers.push(Reverse((due, key)));
                continue;
            }
            self.remove(&key, CloseReason::Idle, sink);
        }
        let flows = self.flows.values_mut();
        Self::expire_overdue_holes(flows, self.now, &self.cfg, &mut self.stats, &mut self.memory, sink);
        if !self.retired.is_empty() {
            self.advance_retired(sink);
        }
    }

    /// Closes every flow, delivering what is buffered (with gaps for holes): end of input or drain.
    pub fn close_all(&mut self, ts: u64, sink: &mut H::Sink) {
        self.now = self.now.max(ts);
        self.close_all_retired(CloseReason::Shutdown, sink);
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            self.remove(&key, CloseReason::Shutdown, sink);
        }
        self.timers.clear();
    }

    /// Flows currently held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Bytes currently charged against the memcap.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// What is remembered of `key` when it closed by FIN or RST within the closing timeout.
    fn recently_closed(&mut self, key: &FlowKey) -> Option<&Tombstone> {
        while let Some(&(at, old)) = self.closed_order.front() {
            if self.now.saturating_sub(at) < self.cfg.closing_timeout_us
                && self.closed_order.len() <= MAX_TOMBSTONES
            {
                break;
            }
            self.closed_order.pop_front();
            if self.closed.get(&old).is_some_and(|t| t.at == at) {
                self.closed.remove(&old);
            }
        }
        self.closed.get(key)
    }

    /// Remembers a closed connection of `key`, beside those that closed on it within the closing
    /// timeout.
    fn remember(&mut self, key: &FlowKey, ended: Ended) {
        let (now, timeout) = (self.now, self.cfg.closing_timeout_us);
        match self.closed.get_mut(key) {
            Some(t) if now.saturating_sub(t.at) < timeout => {
                t.older.insert(0, t.latest);
                t.older.truncate(MAX_GENERATIONS - 1);
                t.latest = ended;
                t.at = now;
            }
            _ => {
                self.closed.insert(*key, Tombstone { at: now, latest: ended, older: Vec::new() });
            }
        }
        self.closed_order.push_back((now, *key));
    }

    /// Which retired flow of `key` a segment belongs to, if any: the open flow would not take it
    /// (a new connection's, or before the open one's start), and a retired one would, the newest
    /// that it does not precede (a late copy of a SYN precedes its own flow).
    fn retired_owner(&self, key: &FlowKey, seg: &Segment<'_>, forward: bool) -> Option<usize> {
        let list = self.retired.get(key)?;
        let open_refuses =
            self.flows.get(key).is_none_or(|f| f.is_new_connection(seg, forward) || f.precedes(seg, forward));
        if !open_refuses {
            return None;
        }
        let owns = |old: &Flow<H>| !old.is_new_connection(seg, forward);
        list.iter()
            .rposition(|old| owns(old) && !old.precedes(seg, forward))
            .or_else(|| list.iter().rposition(|old| owns(old)))
    }

    fn feed_retired(
        &mut self,
        key: &FlowKey,
        index: usize,
        seg: &Segment<'_>,
        ts: u64,
        forward: bool,
        sink: &mut H::Sink,
    ) {
        let Some(old) = self.retired.get_mut(key).and_then(|list| list.get_mut(index)) else { return };
        let outcome = old.segment(seg, forward, ts, &self.cfg, &mut self.stats, sink);
        let (before, after) = old.recharge();
        self.memory = self.memory + after - before;
        if let Some(reason) = outcome {
            self.close_retired(key, index, reason, sink);
        }
    }

    /// Moves the open flow of `key` aside for a new connection on its ports (closing the oldest
    /// flow retired there when too many are, and the least recently active of all when too many
    /// are in all).
    fn retire(&mut self, key: &FlowKey, sink: &mut H::Sink) {
        let Some(flow) = self.flows.remove(key) else { return };
        self.stats.closed_reused += 1;
        self.retired_count += 1;
        let list = self.retired.entry(*key).or_default();
        list.push(flow);
        if list.len() > MAX_RETIRED_PER_KEY {
            self.close_retired(key, 0, CloseReason::Reused, sink);
        }
        if self.retired_count > MAX_RETIRED {
            let oldest = self
                .retired
                .iter()
                .flat_map(|(k, list)| list.iter().enumerate().map(move |(i, old)| (old.last_seen(), *k, i)))
                .min();
            if let Some((_, k, i)) = oldest {
                self.close_retired(&k, i, CloseReason::Reused, sink);
            }
        }
    }

    fn close_retired(&mut self, key: &FlowKey, index: usize, reason: CloseReason, sink: &mut H::Sink) {
        let Some(list) = self.retired.get_mut(key) else { return };
        if index >= list.len() {
            return;
        }
        let mut old = list.remove(index);
        if list.is_empty() {
            self.retired.remove(key);
        }
        self.retired_count -= 1;
        self.finish(key, &mut old, reason, true, sink);
    }

    /// Closes the retired flows idle for the closing timeout, and declares their overdue holes.
    fn advance_retired(&mut self, sink: &mut H::Sink) {
        let idle = self.cfg.closing_timeout_us;
        let now = self.now;
        let due: Vec<(FlowKey, usize)> = self
            .retired
            .iter()
            .flat_map(|(k, list)| {
                list.iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, old)| old.last_seen() + idle <= now)
                    .map(|(i, _)| (*k, i))
            })
            .collect();
        for (key, index) in due {
            self.close_retired(&key, index, CloseReason::Idle, sink);
        }
        let retired = self.retired.values_mut().flatten();
        Self::expire_overdue_holes(retired, now, &self.cfg, &mut self.stats, &mut self.memory, sink);
    }

    /// Declares the holes of `flows` that waited longer than the reorder timeout lost, and
    /// recharges those flows against the memcap: open and retired flows alike.
    fn expire_overdue_holes<'f>(
        flows: impl Iterator<Item = &'f mut Box<Flow<H>>>,
        now: u64,
        cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        memory: &mut usize,
        sink: &mut H::Sink,
    ) where
        H: 'f,
    {
        for flow in flows.filter(|f| f.has_hole()) {
            flow.expire_holes(now, cfg, stats, sink);
            let (before, after) = flow.recharge();
            *memory = *memory + after - before;
        }
    }

    /// Closes every retired flow.
    fn close_all_retired(&mut self, reason: CloseReason, sink: &mut H::Sink) {
        let keys: Vec<FlowKey> = self.retired.keys().copied().collect();
        for key in keys {
            while self.retired.contains_key(&key) {
                self.close_retired(&key, 0, reason, sink);
            }
        }
    }

    fn remove(&mut self, key: &FlowKey, reason: CloseReason, sink: &mut H::Sink) {
        let Some(mut flow) = self.flows.remove(key) else { return };
        self.finish(key, &mut flow, reason, false, sink);
        // A closed flow's timer stays queued until its deadline (the idle timeout); at a high
        // connection rate those would outnumber the open flows many times over (unbounded by the
        // memcap), so they are swept once they are half of the queue: linear, paid once per as many
        // closes as there are open flows.
        if self.timers.len() > 2 * self.flows.len() + TIMER_SLACK {
            self.timers.retain(|Reverse((_, key))| self.flows.contains_key(key));
        }
    }

    /// Closes a flow taken out of the table: flushes it, remembers it, uncharges it and counts why.
    /// A `retired` flow (one a newer connection took over) is remembered however it closes.
    fn finish(
        &mut self,
        key: &FlowKey,
        flow: &mut Flow<H>,
        reason: CloseReason,
        retired: bool,
        sink: &mut H::Sink,
    ) {
        flow.close(self.now, reason, &mut self.stats, sink);
        // Remembered after the close: its holes are flushed, so the spans reach the last bytes
        // seen. (Only retired flows close as `Reused`.)
        if retired || matches!(reason, CloseReason::Fin | CloseReason::Rst) {
            let ended = Ended { isns: flow.by_origin(Stream::isn), spans: flow.by_origin(Stream::span) };
            self.remember(key, ended);
        }
        self.memory -= flow.charged() + Self::FLOW_OVERHEAD;
        let counter = match reason {
            CloseReason::Fin => &mut self.stats.closed_fin,
            CloseReason::Rst => &mut self.stats.closed_rst,
            CloseReason::Idle => &mut self.stats.closed_idle,
            CloseReason::Evicted => &mut self.stats.evicted,
            CloseReason::Shutdown => &mut self.stats.closed_shutdown,
            // counted when the flow was retired
            CloseReason::Reused => return,
        };
        *counter += 1;
    }

    /// Cuts the least recently active flows until memory is under the cap, sparing `current` unless it
    /// alone is over the cap.
    fn enforce_memcap(&mut self, current: &FlowKey, sink: &mut H::Sink) {
        if self.memory > self.cfg.memcap {
            self.close_all_retired(CloseReason::Evicted, sink);
        }
        while self.memory > self.cfg.memcap && self.flows.len() > 1 {
            if !self.evict_oldest(Some(current), sink) {
                break;
            }
        }
        if self.memory > self.cfg.memcap {
            self.remove(current, CloseReason::Evicted, sink);
        }
    }

    /// Pops timers until a live flow whose deadline is current is found, and evicts it.
    fn evict_oldest(&mut self, spare: Option<&FlowKey>, sink: &mut H::Sink) -> bool {
        let mut spared = Vec::new();
        let mut evicted = false;
        while let Some(Reverse((deadline, key))) = self.timers.pop() {
            let Some(flow) = self.flows.get(&key) else { continue };
            let due = flow.deadline(&self.cfg);
            if due != deadline {
                self.timers.push(Reverse((due, key)));
                continue;
            }
            if spare == Some(&key) {
                spared.push(Reverse((deadline, key)));
                continue;
            }
            self.remove(&key, CloseReason::Evicted, sink);
            evicted = true;
            break;
        }
        self.timers.extend(spared);
        evicted
    }
}

fn new_flow_info(key: FlowKey, header: &SegmentHeader, ts: u64) -> FlowInfo {
    let client = if header.flags.contains(TcpFlags::SYN) {
        Some(if header.flags.contains(TcpFlags::ACK) { Dir::B } else { Dir::A })
    } else {
        None
    };
    let mut hasher = StableHasher::default();
    key.hash(&mut hasher);
    ts.hash(&mut hasher);
    FlowInfo {
        // 51 bits, like Suricata, so the id survives JSON readers that use doubles.
        flow_id: hasher.finish() & ((1 << 51) - 1),
        key,
        a: header.src,
        b: header.dst,
        tunnel: header.tunnel,
        client,
        start_ts: ts,
    }
}

/// A word-at-a-time multiply-rotate hash with a final mix: fixed across runs and platforms, a few
/// cycles per word (keys hash as words, see `impl Hash for FlowKey`).
#[derive(Default)]
struct StableHasher(u64);

impl Hasher for StableHasher {
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let mut tail = [0; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.write_u64(u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
