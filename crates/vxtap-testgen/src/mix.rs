//! A realistic, seeded mix of many concurrent HTTP/1.x connections, wrapped as a mirror session sends
//! them, with the list of requests a correct decoder must report.
//!
//! Frames are produced in time order by merging the connections' segments ([`stream_mix`] does this
//! lazily, so memory stays proportional to the connections open at once); impairments (loss,
//! duplication, reordering, mirror truncation) are then applied with their own seeded generator. Each
//! [`ExpectedRequest`] says whether all of its bytes survived the impairments (`intact`).
//!
//! What the mix contains: GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS, PURGE and PROPFIND requests
//! (weighted toward GET and POST); JSON, form, XML, text and binary bodies from empty to
//! [`MixParams::body_max`] bytes, some sent chunked (with the odd chunk extension and trailer); some
//! HTTP/1.0 connections (with `Connection: keep-alive` when they carry several requests, and sometimes no
//! Host header); lower-case header names now and then; odd request-targets (absolute-form, `*` with
//! OPTIONS, percent-encoded, long query strings, dot segments, raw UTF-8 and raw non-UTF-8 bytes);
//! pipelined connections and clients that send one byte per segment; ISNs near 2^32 in some connections.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::conversation::{self, ConversationSpec, Exchange, Segment};
use crate::frame::{self, Encap};
use crate::rng::Rng;

/// How the mix's frames are carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixEncap {
    /// Plain Ethernet frames, no tunnel.
    None,
    /// VXLAN on UDP 4789 (AWS Traffic Mirroring), outer IPv4.
    Vxlan {
        /// VXLAN network identifier of the session.
        vni: u32,
    },
    /// GENEVE on UDP 6081 around VXLAN (a Gateway Load Balancer in front of the target).
    Geneve {
        /// VXLAN network identifier of the session.
        vni: u32,
    },
}

/// Damage applied to the final frame sequence, with a generator seeded from [`MixParams::seed`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairments {
    /// Probability that a frame is dropped.
    pub loss: f64,
    /// Probability that a (kept) frame is sent twice in a row.
    pub duplication: f64,
    /// Probability that a frame is swapped with one 1 to 5 positions later. Record timestamps stay in
    /// order: the frames move, the timestamps do not.
    pub reorder: f64,
    /// Mirror packet length: every inner frame (what follows the VXLAN header, or the whole frame
    /// without encapsulation) is cut to this many bytes. Nothing inside is fixed up: the inner IP length
    /// and TCP checksum still describe the whole segment, as with AWS's packet-length option.
    pub truncate_to: Option<usize>,
}

/// What [`generate_mix`] produces. [`Default`] gives a moderate mix; every field may be changed.
#[derive(Clone, Debug, PartialEq)]
pub struct MixParams {
    /// Seed of everything; the same parameters give the same bytes.
    pub seed: u64,
    /// Number of TCP connections.
    pub connections: usize,
    /// Requests on each connection, drawn uniformly from this range (default `1..=8`).
    pub requests_per_conn: RangeInclusive<usize>,
    /// Fraction of connections over IPv6 (default 0.2).
    pub ipv6_fraction: f64,
    /// Encapsulation (default VXLAN, VNI 12345).
    pub encap: MixEncap,
    /// Largest TCP payload per segment (default 1448).
    pub mss: usize,
    /// Largest request body (default 300,000 bytes).
    pub body_max: usize,
    /// Fraction of bodies drawn from 64 KiB..=`body_max` (default 0.01); 10% more are 2..64 KiB, the
    /// rest below 2 KiB.
    pub large_body_fraction: f64,
    /// Fraction of HTTP/1.1 requests with a body that send it chunked (default 0.1).
    pub chunked_fraction: f64,
    /// Fraction of connections speaking HTTP/1.0 (default 0.05).
    pub http10_fraction: f64,
    /// Fraction of requests with an odd request-target (default 0.1).
    pub odd_target_fraction: f64,
    /// Fraction of HTTP/1.1 connections that pipeline their requests (default 0.05).
    pub pipelined_fraction: f64,
    /// Fraction of connections (with at most 4 KiB of requests) sending one byte per segment
    /// (default 0.01).
    pub byte_at_a_time_fraction: f64,
    /// Fraction of connections whose ISNs sit just below 2^32 so sequence numbers wrap (default 0.1).
    pub wrap_fraction: f64,
    /// Fraction of connections whose inner frames carry VLAN tags (default 0).
    pub vlan_fraction: f64,
    /// Fraction of connections with IPv4 options / an IPv6 hop-by-hop header (default 0).
    pub ip_extras_fraction: f64,
    /// Only client→server segments (a one-direction mirror session).
    pub client_only: bool,
    /// Mean gap between connection starts (exponential; default 250 µs, giving some hundreds of
    /// connections open at once with the default timing).
    pub mean_conn_gap_us: u64,
    /// Idle time every connection stays open after its last exchange before it closes (default 0):
    /// with a hold longer than the span of connection starts, every connection is open at once.
    pub hold_us: u64,
    /// Fraction of connections that take the addresses and ports of the connection that closed last
    /// (default 0): a client may reuse its port at once when the server closed first, and a mirror
    /// target must then tell the two connections apart. Their initial sequence numbers are the old
    /// ones advanced by a clock (RFC 6528), so they start just past where the old ones ended.
    pub reuse_ports_fraction: f64,
    /// Time of the first connection's SYN, in microseconds after the Unix epoch.
    pub start_us: u64,
    /// Damage applied to the frames.
    pub impairments: Impairments,
}

impl Default for MixParams {
    fn default() -> Self {
        MixParams {
            seed: 1,
            connections: 100,
            requests_per_conn: 1..=8,
            ipv6_fraction: 0.2,
            encap: MixEncap::Vxlan { vni: 12345 },
            mss: 1448,
            body_max: 300_000,
            large_body_fraction: 0.01,
            chunked_fraction: 0.1,
            http10_fraction: 0.05,
            odd_target_fraction: 0.1,
            pipelined_fraction: 0.05,
            byte_at_a_time_fraction: 0.01,
            wrap_fraction: 0.1,
            vlan_fraction: 0.0,
            ip_extras_fraction: 0.0,
            client_only: false,
            mean_conn_gap_us: 250,
            hold_us: 0,
            reuse_ports_fraction: 0.0,
            start_us: 1_700_000_000_000_000,
            impairments: Impairments::default(),
        }
    }
}

/// One request a decoder of the mix should report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedRequest {
    /// Client address.
    pub src: SocketAddr,
    /// Server address.
    pub dst: SocketAddr,
    /// Method, e.g. `GET`.
    pub method: String,
    /// The request-target exactly as sent (not always UTF-8).
    pub target: Vec<u8>,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The Host header's value, if the request has one.
    pub host: Option<String>,
    /// The body as the application sees it (chunked bodies decoded).
    pub body: Vec<u8>,
    /// Whether the body was sent with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Whether every byte of the request (head and body) reached the capture at least once, untruncated.
    pub intact: bool,
    /// Index of the connection in the mix (0-based, in order of connection start).
    pub conn_index: usize,
    /// Index of the request within its connection (0-based).
    pub seq_in_conn: usize,
    /// Timestamp of the segment carrying the request's first byte.
    pub ts_us: u64,
}

#[derive(Serialize, Deserialize)]
struct ExpectedJson {
    src: String,
    dst: String,
    method: String,
    target: String,
    target_b64: String,
    version: String,
    host: Option<String>,
    body_b64: String,
    body_len: usize,
    chunked: bool,
    intact: bool,
    conn: usize,
    seq: usize,
    ts_us: u64,
}

impl ExpectedRequest {
    /// One JSON object (no newline) with the fields `src`, `dst` (`"10.0.0.1:40000"`,
    /// `"[fd00::1]:40000"`), `method`, `target` (the target as text: exact when it is UTF-8, otherwise
    /// with U+FFFD in place of invalid bytes), `target_b64` (always the exact bytes, standard base64),
    /// `version`, `host` (string or null), `body_b64` (standard base64 of the decoded body), `body_len`,
    /// `chunked`, `intact`, `conn`, `seq` and `ts_us`.
    pub fn to_json_line(&self) -> String {
        let j = ExpectedJson {
            src: self.src.to_string(),
            dst: self.dst.to_string(),
            method: self.method.clone(),
            target: String::from_utf8_lossy(&self.target).into_owned(),
            target_b64: B64.encode(&self.target),
            version: self.version.clone(),
            host: self.host.clone(),
            body_b64: B64.encode(&self.body),
            body_len: self.body.len(),
            chunked: self.chunked,
            intact: self.intact,
            conn: self.conn_index,
            seq: self.seq_in_conn,
            ts_us: self.ts_us,
        };
        serde_json::to_string(&j).expect("plain struct serialises")
    }

    /// Reads a line written by [`to_json_line`](Self::to_json_line).
    pub fn from_json_line(line: &str) -> Result<Self, String> {
        let j: ExpectedJson = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let addr = |s: &str| s.parse::<SocketAddr>().map_err(|e| format!("{s}: {e}"));
        Ok(ExpectedRequest {
            src: addr(&j.src)?,
            dst: addr(&j.dst)?,
            method: j.method,
            target: B64.decode(&j.target_b64).map_err(|e| e.to_string())?,
            version: j.version,
            host: j.host,
            body: B64.decode(&j.body_b64).map_err(|e| e.to_string())?,
            chunked: j.chunked,
            intact: j.intact,
            conn_index: j.conn,
            seq_in_conn: j.seq,
            ts_us: j.ts_us,
        })
    }
}

/// A whole mix held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// `(timestamp in µs, frame)` in capture order, impairments applied.
    pub frames: Vec<(u64, Vec<u8>)>,
    /// Every request, ordered by connection then position in it.
    pub expected: Vec<ExpectedRequest>,
}

/// Generates the whole mix in memory. For large mixes use [`stream_mix`].
pub fn generate_mix(params: &MixParams) -> Mix {
    let mut mix = Mix { frames: Vec::new(), expected: Vec::new() };
    for item in stream_mix(params) {
        match item {
            MixItem::Frame(ts, f) => mix.frames.push((ts, f)),
            MixItem::Expected(e) => mix.expected.push(e),
        }
    }
    mix
}

/// One output of [`MixStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MixItem {
    /// The next frame for the capture file, with its timestamp in µs.
    Frame(u64, Vec<u8>),
    /// The next expected request (in connection order), given once its connection's frames are out of
    /// the generator (some may still be waiting in the reordering window).
    Expected(ExpectedRequest),
}

/// Generates the mix lazily; yields the same frames and requests as [`generate_mix`].
pub fn stream_mix(params: &MixParams) -> MixStream {
    let mut arrivals = Rng::derive(params.seed, u64::MAX);
    let first = params.start_us + arrivals.exp(params.mean_conn_gap_us as f64) as u64;
    MixStream {
        p: params.clone(),
        arrivals,
        next_conn: 0,
        next_conn_start: first,
        active: HashMap::new(),
        heap: BinaryHeap::new(),
        imp: Rng::derive(params.seed, u64::MAX - 1),
        window: VecDeque::new(),
        done: BTreeMap::new(),
        next_flush: 0,
        out: VecDeque::new(),
        finished: false,
        closed_ends: Vec::new(),
    }
}

/// Iterator over a mix's frames and expected requests; see [`stream_mix`].
#[derive(Debug)]
pub struct MixStream {
    p: MixParams,
    arrivals: Rng,
    next_conn: usize,
    next_conn_start: u64,
    active: HashMap<usize, ActiveConn>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    imp: Rng,
    window: VecDeque<(u64, Vec<u8>)>,
    done: BTreeMap<usize, Vec<ExpectedRequest>>,
    next_flush: usize,
    out: VecDeque<MixItem>,
    finished: bool,
    /// The connections that closed most recently, for reuse (last is latest).
    closed_ends: Vec<PortUse>,
}

const REORDER_WINDOW: usize = 6;

/// Closed connections whose addresses a new one may reuse.
const CLOSED_ENDS_KEPT: usize = 64;

/// What a connection that reuses another's addresses and ports takes over from it.
#[derive(Clone, Copy, Debug)]
struct PortUse {
    client: SocketAddr,
    server: SocketAddr,
    /// Initial sequence numbers of the client and the server.
    isns: (u32, u32),
    start_us: u64,
}

/// How fast the clock that numbers connections on the same ports runs (RFC 6528, as Linux does:
/// one per 64 ns), per microsecond, in thousandths.
const ISN_CLOCK_PER_US_MILLI: u64 = 15_625;

#[derive(Debug)]
struct ActiveConn {
    ends: PortUse,
    segments: VecDeque<Segment>,
    encap: Encap,
    vlans: Vec<u16>,
    ip_extras: bool,
    requests: Vec<ExpectedRequest>,
    ranges: Vec<Range<u64>>,
    delivered: Vec<Range<u64>>,
}

impl Iterator for MixStream {
    type Item = MixItem;

    fn next(&mut self) -> Option<MixItem> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Some(item);
            }
            if self.finished {
                return None;
            }
            self.step();
        }
    }
}

impl MixStream {
    fn step(&mut self) {
        let top = self.heap.peek().map(|Reverse((ts, _))| *ts);
        if self.next_conn < self.p.connections && top.is_none_or(|ts| self.next_conn_start <= ts) {
            let i = self.next_conn;
            let reuse = self.p.reuse_ports_fraction;
            let ends = if reuse > 0.0 && self.arrivals.chance(reuse) { self.closed_ends.pop() } else { None };
            let ac = new_connection(&self.p, i, self.next_conn_start, ends);
            if let Some(s) = ac.segments.front() {
                self.heap.push(Reverse((s.ts_us, i)));
            }
            let empty = ac.segments.is_empty();
            self.active.insert(i, ac);
            if empty {
                self.finish(i);
            }
            self.next_conn += 1;
            self.next_conn_start += self.arrivals.exp(self.p.mean_conn_gap_us as f64) as u64 + 1;
            return;
        }
        let Some(Reverse((_, i))) = self.heap.pop() else {
            while !self.window.is_empty() {
                self.emit_front();
            }
            self.finished = true;
            return;
        };
        let ac = self.active.get_mut(&i).expect("active connection");
        let seg = ac.segments.pop_front().expect("queued segment");
        let imp = self.p.impairments;
        let copies =
            if self.imp.chance(imp.loss) { 0 } else { 1 + usize::from(self.imp.chance(imp.duplication)) };
        if copies > 0 {
            let spec = seg.tcp_spec(&ac.vlans, ac.ip_extras);
            let mut inner = frame::inner_ethernet(&spec);
            let mut delivered = seg.payload.len();
            if let Some(n) = imp.truncate_to {
                inner.truncate(n);
                delivered = delivered.min(n.saturating_sub(frame::inner_headers_len(&spec)));
            }
            if seg.from_client && delivered > 0 {
                ac.delivered.push(seg.stream_offset..seg.stream_offset + delivered as u64);
            }
            let bytes = match ac.encap {
                Encap::None => inner,
                e => frame::wrap(e, &inner),
            };
            if copies == 2 {
                self.push_frame(seg.ts_us, bytes.clone());
            }
            self.push_frame(seg.ts_us, bytes);
        }
        let ac = &self.active[&i];
        match ac.segments.front() {
            Some(next) => self.heap.push(Reverse((next.ts_us, i))),
            None => self.finish(i),
        }
    }

    fn push_frame(&mut self, ts: u64, frame: Vec<u8>) {
        self.window.push_back((ts, frame));
        if self.window.len() > REORDER_WINDOW {
            self.emit_front();
        }
    }

    fn emit_front(&mut self) {
        if self.window.len() > 1 && self.imp.chance(self.p.impairments.reorder) {
            let j = self.imp.usize(1, (self.window.len() - 1).min(5));
            let later = std::mem::take(&mut self.window[j].1);
            let front = std::mem::replace(&mut self.window[0].1, later);
            self.window[j].1 = front;
        }
        let (ts, f) = self.window.pop_front().expect("non-empty window");
        self.out.push_back(MixItem::Frame(ts, f));
    }

    fn finish(&mut self, i: usize) {
        let mut ac = self.active.remove(&i).expect("active connection");
        if self.p.reuse_ports_fraction > 0.0 {
            if self.closed_ends.len() == CLOSED_ENDS_KEPT {
                self.closed_ends.remove(0);
            }
            self.closed_ends.push(ac.ends);
        }
        ac.delivered.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::new();
        for r in ac.delivered {
            match merged.last_mut() {
                Some(m) if r.start <= m.end => m.end = m.end.max(r.end),
                _ => merged.push(r),
            }
        }
        for (req, range) in ac.requests.iter_mut().zip(&ac.ranges) {
            req.intact = merged.iter().any(|m| m.start <= range.start && range.end <= m.end);
        }
        self.done.insert(i, ac.requests);
        while let Some(reqs) = self.done.remove(&self.next_flush) {
            self.out.extend(reqs.into_iter().map(MixItem::Expected));
            self.next_flush += 1;
        }
    }
}

const SERVER_PORTS: [u16; 6] = [80, 80, 80, 8080, 8000, 3000];
const HOSTS: [&str; 6] =
    ["api.example.com", "www.example.com", "shop.example.net", "auth.internal", "cdn.example.org", "svc"];

/// Builds connection `i`: addresses, requests, responses and its segments. With `reuse`, a closed
/// connection's, it takes that one's addresses and ports, and initial sequence numbers that a
/// clock advanced since it started, as a stack following RFC 6528 gives them.
fn new_connection(p: &MixParams, i: usize, start_us: u64, reuse: Option<PortUse>) -> ActiveConn {
    let mut rng = Rng::derive(p.seed, i as u64);
    let ipv6 = rng.chance(p.ipv6_fraction);
    let server_idx = rng.below(32) as u16;
    let server_port = SERVER_PORTS[usize::from(server_idx) % SERVER_PORTS.len()];
    // Every connection of a mix has its own client address and port (as two open connections must;
    // one that reuses a closed connection's takes them after this):
    // the IPv4 host part is a permutation of `i mod 65534`, and for each host the port is a
    // permutation of `i / 65534`, unique for the first 65,534 × 28,232 connections.
    let (residue, round) = (i % 65534, i / 65534);
    let client_port = 32768 + ((round + residue * 7919) % 28232) as u16;
    let (client, server) = if ipv6 {
        let c = Ipv6Addr::new(
            0xfd00,
            0,
            0,
            1,
            rng.next_u32() as u16,
            0,
            rng.next_u32() as u16,
            1 + residue as u16,
        );
        let s = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0x10 + server_idx);
        (SocketAddr::new(IpAddr::V6(c), client_port), SocketAddr::new(IpAddr::V6(s), server_port))
    } else {
        // 40503 is prime to 65534, so this is a bijection of 0..65534.
        let h = 1 + (residue * 40503 % 65534) as u16;
        let c = Ipv4Addr::new(10, 0, (h >> 8) as u8, h as u8);
        let s = Ipv4Addr::new(10, 1, 0, 10 + server_idx as u8);
        (SocketAddr::new(IpAddr::V4(c), client_port), SocketAddr::new(IpAddr::V4(s), server_port))
    };
    let (client, server) = reuse.map_or((client, server), |r| (r.client, r.server));
    let ipv6 = client.is_ipv6();
    let host = {
        let name = match rng.below(5) {
            0 => server.ip().to_string(),
            1 if ipv6 => format!("[{}]", server.ip()),
            _ => rng.pick(&HOSTS).to_string(),
        };
        let name = if name.contains(':') && !name.starts_with('[') { format!("[{name}]") } else { name };
        if server.port() == 80 { name } else { format!("{name}:{}", server.port()) }
    };
    let http10 = rng.chance(p.http10_fraction);
    let n = rng.usize(*p.requests_per_conn.start(), *p.requests_per_conn.end());
    let lowercase = rng.chance(0.1);
    // An HTTP/1.1 client sometimes says Connection: close on its last request.
    let close_last = !http10 && rng.chance(0.3);
    let mut exchanges = Vec::with_capacity(n);
    let mut requests = Vec::with_capacity(n);
    for k in 0..n {
        let last = k + 1 == n;
        let conn_hdr = match (http10, last) {
            (true, false) => Some("keep-alive"),
            (false, true) if close_last => Some("close"),
            _ => None,
        };
        let req = build_request(&mut rng, p, http10, &host, conn_hdr, lowercase);
        let response = build_response(&mut rng, req.method, http10, conn_hdr);
        exchanges.push(Exchange { request: req.bytes, response });
        requests.push(ExpectedRequest {
            src: client,
            dst: server,
            method: req.method.to_string(),
            target: req.target,
            version: if http10 { "HTTP/1.0" } else { "HTTP/1.1" }.to_string(),
            host: req.host,
            body: req.body,
            chunked: req.chunked,
            intact: true,
            conn_index: i,
            seq_in_conn: k,
            ts_us: 0,
        });
    }
    let request_bytes: usize = exchanges.iter().map(|e| e.request.len()).sum();
    let mut spec = ConversationSpec::new(client, server, exchanges);
    spec.mss = p.mss;
    spec.seed = rng.next_u64();
    spec.start_us = start_us;
    spec.rtt_us = rng.log_uniform(100, 30_000) as u64;
    spec.server_think_us = rng.log_uniform(200, 20_000) as u64;
    spec.client_think_us = rng.log_uniform(500, 100_000) as u64;
    spec.client_only = p.client_only;
    spec.pipelined = !http10 && n > 1 && rng.chance(p.pipelined_fraction);
    spec.byte_at_a_time = request_bytes <= 4096 && rng.chance(p.byte_at_a_time_fraction);
    spec.server_closes = http10 && n == 1 || close_last;
    spec.wrap_fraction = p.wrap_fraction;
    spec.hold_us = p.hold_us;
    spec.isns = reuse.map(|r| {
        let ticks = (start_us.saturating_sub(r.start_us) * ISN_CLOCK_PER_US_MILLI / 1000) as u32;
        (r.isns.0.wrapping_add(ticks), r.isns.1.wrapping_add(ticks))
    });
    let vlans = if rng.chance(p.vlan_fraction) {
        if rng.chance(0.3) {
            vec![rng.range(1, 4094) as u16, rng.range(1, 4094) as u16]
        } else {
            vec![rng.range(1, 4094) as u16]
        }
    } else {
        Vec::new()
    };
    let ip_extras = rng.chance(p.ip_extras_fraction);
    let conv = conversation::generate(&spec);
    let info = &conv.connections[0];
    let ends = PortUse { client, server, isns: (info.client_isn, info.server_isn), start_us };
    let ranges = info.request_ranges.clone();
    // Timestamp of each request's first byte.
    let mut r = 0;
    for s in conv.segments.iter().filter(|s| s.from_client && !s.payload.is_empty()) {
        let end = s.stream_offset + s.payload.len() as u64;
        while r < ranges.len() && ranges[r].start < end {
            requests[r].ts_us = s.ts_us;
            r += 1;
        }
    }
    let outer_src = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 10 + server_idx as u8));
    let outer_dst = IpAddr::V4(Ipv4Addr::new(10, 201, 0, 10));
    let encap = match p.encap {
        MixEncap::None => Encap::None,
        MixEncap::Vxlan { vni } => {
            // AWS picks the outer source port from a hash of the flow: the same both ways.
            let sport = 49152 + (flow_hash(client, server) % 16384) as u16;
            Encap::Vxlan { vni, outer_src, outer_dst, sport }
        }
        MixEncap::Geneve { vni } => Encap::GeneveVxlan { vni, outer_src, outer_dst },
    };
    ActiveConn {
        ends,
        segments: conv.segments.into(),
        encap,
        vlans,
        ip_extras,
        requests,
        ranges,
        delivered: Vec::new(),
    }
}

fn flow_hash(a: SocketAddr, b: SocketAddr) -> u64 {
    let h = |s: SocketAddr| {
        let ip = match s.ip() {
            IpAddr::V4(v) => u128::from(u32::from(v)),
            IpAddr::V6(v) => u128::from(v),
        };
        (ip as u64 ^ (ip >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(s.port())
    };
    let x = h(a) ^ h(b);
    (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 17
}

struct BuiltRequest {
    bytes: Vec<u8>,
    method: &'static str,
    target: Vec<u8>,
    host: Option<String>,
    body: Vec<u8>,
    chunked: bool,
}

const METHODS: [(&str, u32); 9] = [
    ("GET", 45),
    ("POST", 18),
    ("PUT", 6),
    ("DELETE", 5),
    ("PATCH", 5),
    ("HEAD", 6),
    ("OPTIONS", 5),
    ("PURGE", 3),
    ("PROPFIND", 4),
];

const USER_AGENTS: [&str; 6] = [
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "aws-sdk-java/2.25.1 Linux/6.1 OpenJDK_64-Bit_Server_VM/17.0.10",
];

const WORDS: [&str; 10] =
    ["alpha", "bravo", "charlie", "delta", "echo", "kilo", "lima", "oscar", "tango", "zulu"];

const ALNUM: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn alnum(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    for b in &mut v {
        *b = ALNUM[usize::from(*b & 63)];
    }
    v
}

fn alnum_string(rng: &mut Rng, n: usize) -> String {
    String::from_utf8(alnum(rng, n)).expect("ascii")
}

fn target(rng: &mut Rng, p: &MixParams, method: &str, host: &str) -> Vec<u8> {
    let id = rng.range(1, 999_999);
    if method == "OPTIONS" && rng.chance(0.5) {
        return b"*".to_vec();
    }
    if method == "PROPFIND" {
        return format!("/dav/files/user{}/{}/", id % 100, rng.pick(&WORDS)).into_bytes();
    }
    if method == "PURGE" {
        return format!("/cache/assets/{}.css", alnum_string(rng, 12)).into_bytes();
    }
    if rng.chance(p.odd_target_fraction) {
        return match rng.below(7) {
            0 => format!("http://{host}/api/v1/users/{id}?expand=orders").into_bytes(),
            1 => format!("/files/My%20Document%20{id}.pdf?name=%E2%9C%93%20ok&next=%2Fhome%3Fa%3D1%26b%3D2")
                .into_bytes(),
            2 => {
                let n = rng.log_uniform(1500, 6000);
                format!("/collect?v=1&tid=UA-{id}&data={}", alnum_string(rng, n)).into_bytes()
            }
            3 => format!("/a/./b/../c;jsessionid={}?x=%00y&y=a%2Bb&empty=&flag", alnum_string(rng, 16))
                .into_bytes(),
            4 => "/café/naïve?q=über&ø=1".as_bytes().to_vec(),
            5 => b"/bin/\xff\xfe?x=\x80\x81".to_vec(),
            _ => format!(
                "/search?q={}+{}&q={}&page={}&sort=-date#frag",
                rng.pick(&WORDS),
                rng.pick(&WORDS),
                rng.pick(&WORDS),
                id % 50
            )
            .into_bytes(),
        };
    }
    match rng.below(8) {
        0 => b"/".to_vec(),
        1 => format!("/api/v1/users/{id}").into_bytes(),
        2 => format!("/api/v1/orders?status=open&page={}&limit=50", id % 20).into_bytes(),
        3 => format!("/static/js/app.{:08x}.js", id * 7919).into_bytes(),
        4 => format!("/search?q={}+{}&lang=en", rng.pick(&WORDS), rng.pick(&WORDS)).into_bytes(),
        5 => format!("/images/{id}.png").into_bytes(),
        6 => b"/health".to_vec(),
        _ => format!("/v2/items/{id}/comments?sort=-created_at").into_bytes(),
    }
}

fn body_size(rng: &mut Rng, p: &MixParams) -> usize {
    let r = rng.f64();
    let max = p.body_max;
    let n = if r < p.large_body_fraction {
        rng.log_uniform(65_536, max.max(65_536))
    } else if r < p.large_body_fraction + 0.1 {
        rng.log_uniform(2048, 65_535)
    } else if rng.chance(0.05) {
        0
    } else {
        rng.log_uniform(1, 2047)
    };
    n.min(max)
}

/// A body of the given kind: `n` bytes, or the least that kind's skeleton needs (an empty body stays
/// empty).
fn body_bytes(rng: &mut Rng, kind: &str, n: usize) -> Vec<u8> {
    let fill = |rng: &mut Rng, prefix: String, suffix: &str| {
        if n == 0 {
            return Vec::new();
        }
        let n = n.max(prefix.len() + suffix.len());
        let mut v = prefix.into_bytes();
        let pad = n - v.len() - suffix.len();
        v.extend_from_slice(&alnum(rng, pad));
        v.extend_from_slice(suffix.as_bytes());
        v
    };
    match kind {
        "json" => {
            let pre = format!(
                r#"{{"id":{},"name":"{}","tags":["a","b"],"data":""#,
                rng.range(1, 99999),
                rng.pick(&WORDS)
            );
            fill(rng, pre, r#""}"#)
        }
        "form" => {
            let pre = format!("user={}&action=save&note=hello+world%21&data=", rng.pick(&WORDS));
            fill(rng, pre, "")
        }
        "xml" => fill(
            rng,
            r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:x>"#.to_string(),
            "</D:x></D:prop></D:propfind>",
        ),
        "binary" => {
            let mut v = vec![0u8; n];
            rng.fill(&mut v);
            v
        }
        _ => fill(rng, String::new(), ""),
    }
}

fn chunk_encode(rng: &mut Rng, body: &[u8], lowercase: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut at = 0;
    while at < body.len() {
        let n = rng.log_uniform(1, 16_384).min(body.len() - at);
        let size = if rng.chance(0.5) { format!("{n:x}") } else { format!("{n:X}") };
        out.extend_from_slice(size.as_bytes());
        if rng.chance(0.05) {
            out.extend_from_slice(b";ext=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    out.extend_from_slice(b"0\r\n");
    if rng.chance(0.1) {
        out.extend_from_slice(if lowercase { b"x-checksum: abc123\r\n" } else { b"X-Checksum: abc123\r\n" });
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn header(out: &mut Vec<u8>, lowercase: bool, name: &str, value: &[u8]) {
    if lowercase {
        out.extend_from_slice(name.to_ascii_lowercase().as_bytes());
    } else {
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn build_request(
    rng: &mut Rng,
    p: &MixParams,
    http10: bool,
    host: &str,
    conn_hdr: Option<&str>,
    lowercase: bool,
) -> BuiltRequest {
    let weights: Vec<u32> = METHODS.iter().map(|m| m.1).collect();
    let method = METHODS[rng.weighted(&weights)].0;
    let target = target(rng, p, method, host);
    let body_kind = match method {
        "POST" | "PUT" | "PATCH" => {
            Some(*rng.pick(&["json", "json", "json", "form", "form", "binary", "text"]))
        }
        "PROPFIND" if rng.chance(0.7) => Some("xml"),
        "DELETE" if rng.chance(0.1) => Some("json"),
        _ => None,
    };
    let body = body_kind.map(|k| {
        let n = body_size(rng, p);
        (k, body_bytes(rng, k, n))
    });
    let chunked = !http10 && body.is_some() && rng.chance(p.chunked_fraction);

    let mut out = Vec::with_capacity(256 + body.as_ref().map_or(0, |b| b.1.len()));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(&target);
    out.extend_from_slice(if http10 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    let host = (!http10 || rng.chance(0.7)).then(|| host.to_string());
    if let Some(h) = &host {
        header(&mut out, lowercase, "Host", h.as_bytes());
    }
    header(&mut out, lowercase, "User-Agent", rng.pick(&USER_AGENTS).as_bytes());
    let accept: &[u8] = if rng.chance(0.5) { b"*/*" } else { b"application/json, text/plain;q=0.9" };
    header(&mut out, lowercase, "Accept", accept);
    if rng.chance(0.5) {
        header(&mut out, lowercase, "X-Request-Id", format!("{:016x}", rng.next_u64()).as_bytes());
    }
    if rng.chance(0.1) {
        let n = rng.usize(20, 600);
        header(
            &mut out,
            lowercase,
            "Cookie",
            format!("session={}; theme=dark", alnum_string(rng, n)).as_bytes(),
        );
    }
    if method == "PROPFIND" {
        header(&mut out, lowercase, "Depth", b"1");
    }
    if let Some(c) = conn_hdr {
        header(&mut out, lowercase, "Connection", c.as_bytes());
    }
    let mut decoded = Vec::new();
    if let Some((kind, b)) = body {
        let ct: &[u8] = match kind {
            "json" => b"application/json",
            "form" => b"application/x-www-form-urlencoded",
            "xml" => b"application/xml; charset=utf-8",
            "binary" => b"application/octet-stream",
            _ => b"text/plain; charset=utf-8",
        };
        header(&mut out, lowercase, "Content-Type", ct);
        if chunked {
            header(&mut out, lowercase, "Transfer-Encoding", b"chunked");
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&chunk_encode(rng, &b, lowercase));
        } else {
            header(&mut out, lowercase, "Content-Length", b.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&b);
        }
        decoded = b;
    } else {
        out.extend_from_slice(b"\r\n");
    }
    BuiltRequest { bytes: out, method, target, host, body: decoded, chunked }
}

fn build_response(rng: &mut Rng, method: &str, http10: bool, conn_hdr: Option<&str>) -> Vec<u8> {
    let (status, body): (&str, bool) = match method {
        "GET" => *rng.pick(&[
            ("200 OK", true),
            ("200 OK", true),
            ("200 OK", true),
            ("404 Not Found", true),
            ("304 Not Modified", false),
        ]),
        "POST" => *rng.pick(&[("201 Created", true), ("200 OK", true), ("400 Bad Request", true)]),
        "PUT" | "PATCH" => *rng.pick(&[("200 OK", true), ("204 No Content", false)]),
        "DELETE" => ("204 No Content", false),
        "HEAD" => ("200 OK", false),
        "OPTIONS" => ("204 No Content", false),
        "PROPFIND" => ("207 Multi-Status", true),
        _ => ("200 OK", true),
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nServer: nginx/1.25.3\r\n");
    if let Some(c) = conn_hdr {
        header(&mut out, false, "Connection", c.as_bytes());
    }
    if method == "OPTIONS" {
        out.extend_from_slice(b"Allow: GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS\r\n");
    }
    let n = if rng.chance(0.02) { rng.log_uniform(16_384, 200_000) } else { rng.log_uniform(2, 8000) };
    if method == "HEAD" {
        out.extend_from_slice(format!("Content-Type: text/html\r\nContent-Length: {n}\r\n\r\n").as_bytes());
    } else if !body {
        out.extend_from_slice(b"\r\n");
    } else {
        let xml = method == "PROPFIND";
        let b = body_bytes(rng, if xml { "xml" } else { "json" }, n);
        out.extend_from_slice(if xml {
            b"Content-Type: application/xml\r\n"
        } else {
            b"Content-Type: application/json\r\n"
        });
        if !http10 && rng.chance(0.1) {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            out.extend_from_slice(&chunk_encode(rng, &b, false));
        } else {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
            out.extend_from_slice(&b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::flags;
    use crate::testutil::{Parsed, decode, parse_requests};

    type Key = (SocketAddr, SocketAddr);

    /// A varied mix, small enough for a debug-build test.
    fn params(seed: u64) -> MixParams {
        MixParams {
            seed,
            connections: 150,
            requests_per_conn: 0..=6,
            ipv6_fraction: 0.3,
            body_max: 150_000,
            large_body_fraction: 0.03,
            chunked_fraction: 0.3,
            http10_fraction: 0.15,
            odd_target_fraction: 0.4,
            pipelined_fraction: 0.2,
            byte_at_a_time_fraction: 0.05,
            wrap_fraction: 0.3,
            vlan_fraction: 0.2,
            ip_extras_fraction: 0.2,
            ..MixParams::default()
        }
    }

    /// Client ISNs from the SYNs of `frames`.
    fn isns(frames: &[(u64, Vec<u8>)]) -> HashMap<Key, u32> {
        frames
            .iter()
            .filter_map(|(_, f)| decode(f))
            .filter(|d| d.flags & (flags::SYN | flags::ACK) == flags::SYN)
            .map(|d| ((d.src, d.dst), d.seq))
            .collect()
    }

    /// Each client stream rebuilt from `frames`, with a mask of the bytes seen.
    fn client_streams(
        frames: &[(u64, Vec<u8>)],
        isns: &HashMap<Key, u32>,
    ) -> HashMap<Key, (Vec<u8>, Vec<bool>)> {
        let mut out: HashMap<Key, (Vec<u8>, Vec<bool>)> = HashMap::new();
        for d in frames.iter().filter_map(|(_, f)| decode(f)) {
            let Some(isn) = isns.get(&(d.src, d.dst)) else { continue };
            if d.payload.is_empty() {
                continue;
            }
            let off = d.seq.wrapping_sub(isn.wrapping_add(1)) as usize;
            let (data, mask) = out.entry((d.src, d.dst)).or_default();
            if data.len() < off + d.payload.len() {
                data.resize(off + d.payload.len(), 0);
                mask.resize(off + d.payload.len(), false);
            }
            data[off..off + d.payload.len()].copy_from_slice(&d.payload);
            mask[off..off + d.payload.len()].iter_mut().for_each(|m| *m = true);
        }
        out
    }

    fn by_conn(expected: &[ExpectedRequest]) -> BTreeMap<usize, Vec<&ExpectedRequest>> {
        let mut m: BTreeMap<usize, Vec<&ExpectedRequest>> = BTreeMap::new();
        for e in expected {
            m.entry(e.conn_index).or_default().push(e);
        }
        m
    }

    /// Parses every connection's client stream and checks it against the expected requests; returns
    /// the parsed requests by connection.
    fn check_streams(mix: &Mix) -> BTreeMap<usize, Vec<Parsed>> {
        let streams = client_streams(&mix.frames, &isns(&mix.frames));
        let mut parsed = BTreeMap::new();
        for (conn, exp) in by_conn(&mix.expected) {
            let (data, mask) = &streams[&(exp[0].src, exp[0].dst)];
            assert!(mask.iter().all(|&m| m), "conn {conn}: hole in client stream");
            let got = parse_requests(data);
            assert_eq!(got.len(), exp.len(), "conn {conn}");
            for (k, (g, e)) in got.iter().zip(&exp).enumerate() {
                assert_eq!(e.seq_in_conn, k);
                assert_eq!(g.method, e.method, "conn {conn} req {k}");
                assert_eq!(g.target, e.target, "conn {conn} req {k}");
                assert_eq!(g.version, e.version, "conn {conn} req {k}");
                assert_eq!(g.host, e.host, "conn {conn} req {k}");
                assert_eq!(g.chunked, e.chunked, "conn {conn} req {k}");
                assert!(g.body == e.body, "conn {conn} req {k}: body differs");
                // The request's own bytes, as sent, hold its method, target and (unless chunked) body.
                let raw = &data[g.raw.clone()];
                assert!(raw.starts_with(format!("{} ", e.method).as_bytes()));
                assert!(e.chunked || raw.ends_with(&e.body));
            }
            parsed.insert(conn, got);
        }
        parsed
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate_mix(&params(7));
        let b = generate_mix(&params(7));
        assert_eq!(a, b);
        let c = generate_mix(&params(8));
        assert_ne!(a.frames, c.frames);
        assert_ne!(a.expected, c.expected);
    }

    #[test]
    fn expected_requests_are_in_their_client_streams() {
        for (encap, client_only) in [
            (MixEncap::Vxlan { vni: 77 }, false),
            (MixEncap::Geneve { vni: 78 }, false),
            (MixEncap::None, true),
        ] {
            let p = MixParams { encap, client_only, ..params(3) };
            let mix = generate_mix(&p);
            assert!(mix.frames.windows(2).all(|w| w[0].0 <= w[1].0), "timestamps out of order");
            assert!(mix.expected.iter().all(|e| e.intact));
            if client_only {
                let clients: std::collections::HashSet<SocketAddr> =
                    mix.expected.iter().map(|e| e.src).collect();
                let mut senders = mix.frames.iter().filter_map(|(_, f)| decode(f)).map(|d| d.src);
                assert!(senders.all(|s| clients.contains(&s) || s.port() >= 32768));
            }
            check_streams(&mix);
            // Expected requests come in connection order.
            let order: Vec<(usize, usize)> =
                mix.expected.iter().map(|e| (e.conn_index, e.seq_in_conn)).collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn mix_has_the_advertised_variety() {
        let mix = generate_mix(&params(11));
        let ex = &mix.expected;
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PURGE", "PROPFIND"] {
            assert!(ex.iter().any(|e| e.method == m), "no {m}");
        }
        assert!(ex.iter().any(|e| e.version == "HTTP/1.0"));
        assert!(ex.iter().any(|e| e.version == "HTTP/1.0" && e.host.is_none()));
        assert!(ex.iter().any(|e| e.chunked));
        assert!(ex.iter().any(|e| e.target == b"*" && e.method == "OPTIONS"));
        assert!(ex.iter().any(|e| e.target.starts_with(b"http://")));
        assert!(ex.iter().any(|e| e.target.windows(3).any(|w| w == b"%20")));
        assert!(ex.iter().any(|e| std::str::from_utf8(&e.target).is_err()));
        assert!(ex.iter().any(|e| e.body.len() > 65_536));
        assert!(
            ex.iter().any(|e| e.body.is_empty() && e.method == "POST")
                || ex.iter().any(|e| e.body.len() < 10)
        );
        assert!(ex.iter().any(|e| e.src.is_ipv6()) && ex.iter().any(|e| e.src.is_ipv4()));
        // Several connections are open at once.
        let mut spans: HashMap<usize, (u64, u64)> = HashMap::new();
        for e in ex {
            let s = spans.entry(e.conn_index).or_insert((e.ts_us, e.ts_us));
            s.1 = s.1.max(e.ts_us);
        }
        let t = ex[ex.len() / 2].ts_us;
        assert!(spans.values().filter(|(a, b)| *a <= t && t <= *b).count() >= 5);
        // Some sequence numbers wrap inside a connection.
        let isn = isns(&mix.frames);
        assert!(isn.values().any(|&s| s > u32::MAX - 300_000));
    }

    #[test]
    fn reused_ports_open_only_after_both_ends_closed() {
        let mix = generate_mix(&MixParams { reuse_ports_fraction: 0.5, ..params(8) });
        let mut fins: HashMap<Key, usize> = HashMap::new();
        let mut reused = 0;
        for d in mix.frames.iter().filter_map(|(_, f)| decode(f)) {
            let key = if d.src.port() >= 32768 { (d.src, d.dst) } else { (d.dst, d.src) };
            if d.flags & (flags::SYN | flags::ACK) == flags::SYN {
                if let Some(closed) = fins.insert(key, 0) {
                    assert!(closed >= 2, "{key:?}: a SYN before both FINs");
                    reused += 1;
                }
            } else if d.flags & flags::FIN != 0 {
                *fins.entry(key).or_default() += 1;
            }
        }
        assert!(reused > 20, "{reused} connections reused a port");
    }

    /// Impairments change nothing but the frames and `intact`, and `intact` is exactly "every byte of
    /// the request was captured".
    #[test]
    fn impairments_mark_damaged_requests() {
        let clean = generate_mix(&params(5));
        let parsed = check_streams(&clean);
        let clean_isns = isns(&clean.frames);
        for imp in [
            Impairments { loss: 0.05, duplication: 0.05, reorder: 0.1, truncate_to: None },
            Impairments { loss: 0.0, duplication: 0.0, reorder: 0.3, truncate_to: Some(1000) },
            Impairments { loss: 0.0, duplication: 0.2, reorder: 0.0, truncate_to: None },
        ] {
            let mut p = params(5);
            p.impairments = imp;
            let hurt = generate_mix(&p);
            assert!(hurt.frames.windows(2).all(|w| w[0].0 <= w[1].0), "timestamps out of order");
            let streams = client_streams(&hurt.frames, &clean_isns);
            let (mut whole, mut broken) = (0, 0);
            for (e, c) in hurt.expected.iter().zip(&clean.expected) {
                assert_eq!(ExpectedRequest { intact: true, ..e.clone() }, *c);
                let raw = &parsed[&e.conn_index][e.seq_in_conn].raw;
                let seen = streams
                    .get(&(e.src, e.dst))
                    .is_some_and(|(_, mask)| mask.len() >= raw.end && mask[raw.clone()].iter().all(|&m| m));
                assert_eq!(e.intact, seen, "{imp:?}: conn {} req {}", e.conn_index, e.seq_in_conn);
                if e.intact { whole += 1 } else { broken += 1 }
            }
            assert_eq!(hurt.expected.len(), clean.expected.len());
            if imp.loss > 0.0 || imp.truncate_to.is_some() {
                assert!(whole > 0 && broken > 0, "{imp:?}: {whole} intact, {broken} not");
            } else {
                assert_eq!(broken, 0);
                assert!(hurt.frames.len() > clean.frames.len());
            }
            if imp.truncate_to.is_some() {
                assert_eq!(hurt.frames.len(), clean.frames.len());
            }
        }
    }

    #[test]
    fn json_lines_round_trip() {
        let mix = generate_mix(&params(9));
        for e in &mix.expected {
            let line = e.to_json_line();
            assert!(!line.contains('\n'));
            assert_eq!(ExpectedRequest::from_json_line(&line).unwrap(), *e);
        }
        let odd = mix.expected.iter().find(|e| std::str::from_utf8(&e.target).is_err()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&odd.to_json_line()).unwrap();
        assert!(v["target"].as_str().unwrap().contains('\u{fffd}'));
        assert_eq!(v["body_len"].as_u64().unwrap() as usize, odd.body.len());
    }
}
