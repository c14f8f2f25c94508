//! Realistic TCP: HTTP/1.1 conversations between real [smoltcp] TCP sockets over a lossy, reordering,
//! duplicating virtual link, captured the way a mirror at the server's interface sees them.
//!
//! The hand-made segments of [`conversation`](crate::conversation) follow rules the generator's author
//! wrote down; here the retransmissions, re-segmentation, window updates, delayed and duplicate ACKs,
//! fast retransmits, slow start and go-back-N recovery are whatever smoltcp's TCP actually does when
//! frames go missing, arrive late or arrive twice.
//!
//! # The set-up
//!
//! ```text
//!  client Interface ── Tap ── FaultInjector ── Port ═╗                 ╔═ Port ── PcapWriter ── Tap ── server Interface
//!   (N tcp sockets)                                  ╚═ Wire (seeded) ═╝       (MirrorSink)           (N+ tcp sockets)
//! ```
//!
//! - Two smoltcp [`Interface`]s on Ethernet, each with one IPv4 and one IPv6 address (ARP and NDP run
//!   for real over the same link), driven by a simulated clock ([`smoltcp::time::Instant`]): nothing
//!   sleeps, the run is fast and the same seed gives the same bytes.
//! - The **wire** carries frames both ways with a latency, a link rate and seeded impairments: loss,
//!   duplication (the copy arrives right after the original) and reordering (a frame held back for up to
//!   [`Channel::reorder_max_us`] so later ones overtake it). The client's device is also wrapped in
//!   smoltcp's own [`FaultInjector`] (drops in both directions, seeded).
//! - The **capture** is smoltcp's [`PcapWriter`] around the server's device, in [`PcapMode::Both`]: it
//!   sees exactly the frames that reached the server (duplicates and out-of-order arrivals included) and
//!   every frame the server sent (even those the wire then loses on the way to the client), which is what
//!   a traffic mirror on the server's network interface sends. Frames lost before the server are not in
//!   the capture; their retransmissions are. Its sink ([`MirrorSink`]) wraps each frame in VXLAN with
//!   [`frame::wrap`] and may drop a share of them ([`SmolParams::mirror_loss`]): a lossy mirror session,
//!   whose losses TCP never repairs.
//! - The run ends when every connection has closed, or when every exchange is over and nothing is left
//!   to happen: smoltcp 0.12 cancels a LAST-ACK socket's FIN retransmission when an ACK that does not
//!   cover the FIN arrives (fixed in later smoltcp), so a lost server FIN can leave the server in
//!   LAST-ACK and the client in FIN-WAIT-2 for ever ([`SmolStats::unclosed_connections`]).
//! - The **applications**: each client connection sends 1..=k HTTP/1.1 keep-alive requests (GET, DELETE,
//!   POST, PUT, PATCH; bodies from a few bytes to over 100 KB), one at a time after each response, or
//!   all at once (pipelined); the server parses each request (`Content-Length`) and answers it. The client
//!   closes when it has every response; the server closes after the client's FIN.
//!
//! # What comes out
//!
//! [`generate`] returns a [`SmolRun`]: a [`Mix`] (VXLAN frames with their timestamps, and one
//! [`ExpectedRequest`] per request the client sent, in connection order), the same capture as pcap bytes
//! written through smoltcp's [`PcapSink`] machinery, and [`SmolStats`] (retransmissions, duplicates and
//! out-of-order arrivals seen in the capture, and more).
//!
//! A request is `intact` when every one of its bytes is in some client→server frame of the capture:
//! always so without [`mirror_loss`](SmolParams::mirror_loss), since TCP repairs every loss before the
//! server; with it, a request is intact only if the frames the mirror kept still cover it, computed from
//! the sequence numbers of what the capture holds.
//!
//! ```
//! use vxtap_testgen::smol::{generate, Channel, SmolParams};
//!
//! let run = generate(&SmolParams {
//!     connections: 4,
//!     channel: Channel { loss: 0.05, reorder: 0.05, duplication: 0.02, ..Channel::default() },
//!     ..SmolParams::default()
//! });
//! assert!(run.stats.server_streams_match);
//! assert!(run.mix.expected.iter().all(|e| e.intact));
//! assert_eq!(run.mix.frames.len(), run.stats.frames_in_capture);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::rc::Rc;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, FaultInjector, Medium, PcapMode, PcapSink, PcapWriter};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpCidr, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpPacket,
};

use crate::frame::{self, Encap};
use crate::mix::{ExpectedRequest, Mix};
use crate::rng::Rng;

/// Client addresses: every connection comes from one of these (IPv4 or IPv6), on its own port.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The client's IPv6 address.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
/// The server's IPv4 address.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The server's IPv6 address.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);

const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x77, 0x00, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x77, 0x00, 0x02];
const SERVER_PORTS: [u16; 4] = [80, 80, 80, 8080];
/// Ethernet MTU as smoltcp counts it for an Ethernet medium (header included).
const ETHERNET_MTU: usize = 1514;
/// Simulated time after which [`generate`] gives up (the conversations are stuck).
const VIRTUAL_TIME_LIMIT_US: u64 = 600_000_000;

/// Impairments of the virtual link, applied to every frame in both directions with the run's seed.
///
/// Client→server damage happens before the server (and its mirror) see the frame; server→client damage
/// after the mirror has seen it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Channel {
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame (not lost) is delivered twice.
    pub duplication: f64,
    /// Probability that a frame is held back by 1..=[`reorder_max_us`](Self::reorder_max_us) µs, so
    /// that frames sent after it overtake it.
    pub reorder: f64,
    /// Longest hold-back of a reordered frame (default 3,000 µs).
    pub reorder_max_us: u64,
    /// One-way latency (default 1,000 µs).
    pub latency_us: u64,
    /// Link rate in bits per second, each direction (default 200 Mbit/s): frames queue behind each
    /// other, so a window's worth of segments spreads over time as on a real link.
    pub rate_bps: u64,
    /// Drop probability, in percent, of smoltcp's [`FaultInjector`] on the client's device: a drop on
    /// the client's transmit side happens before the server, one on its receive side after it.
    pub client_fault_drop_pct: u8,
}

impl Default for Channel {
    fn default() -> Self {
        Channel {
            loss: 0.0,
            duplication: 0.0,
            reorder: 0.0,
            reorder_max_us: 3_000,
            latency_us: 1_000,
            rate_bps: 200_000_000,
            client_fault_drop_pct: 0,
        }
    }
}

/// What [`generate`] runs. [`Default`] gives 8 clean connections; every field may be changed.
#[derive(Clone, Debug, PartialEq)]
pub struct SmolParams {
    /// Seed of everything (requests, timing, impairments, the interfaces' own randomness such as ISNs).
    pub seed: u64,
    /// Number of TCP connections, all open concurrently once started.
    pub connections: usize,
    /// Requests on each connection, drawn uniformly from this range (default `1..=5`).
    pub requests_per_conn: RangeInclusive<usize>,
    /// Fraction of connections over IPv6 (default 0.3).
    pub ipv6_fraction: f64,
    /// Fraction of connections with more than one request that pipeline them: every request is written
    /// at once, before any response (default 0.25).
    pub pipelined_fraction: f64,
    /// Fraction of requests that carry a body (POST, PUT, PATCH; default 0.5).
    pub body_fraction: f64,
    /// Fraction of bodies drawn from [`large_body`](Self::large_body) (default 0.15); the others are
    /// 1 to 4,000 bytes.
    pub large_body_fraction: f64,
    /// Size range of large bodies (default 100,000..=250,000 bytes).
    pub large_body: RangeInclusive<usize>,
    /// Mean gap between connection starts (exponential; default 1,500 µs).
    pub mean_conn_gap_us: u64,
    /// The virtual link.
    pub channel: Channel,
    /// Probability that the mirror loses a frame the server received or sent (default 0).
    pub mirror_loss: f64,
    /// VXLAN network identifier of the mirror session (default 4242).
    pub vni: u32,
    /// Time of the simulation's start, in microseconds after the Unix epoch.
    pub start_us: u64,
}

impl Default for SmolParams {
    fn default() -> Self {
        SmolParams {
            seed: 1,
            connections: 8,
            requests_per_conn: 1..=5,
            ipv6_fraction: 0.3,
            pipelined_fraction: 0.25,
            body_fraction: 0.5,
            large_body_fraction: 0.15,
            large_body: 100_000..=250_000,
            mean_conn_gap_us: 1_500,
            channel: Channel::default(),
            mirror_loss: 0.0,
            vni: 4242,
            start_us: 1_700_000_000_000_000,
        }
    }
}

/// What happened during a run. "In the capture" means in the frames the mirror kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmolStats {
    /// TCP connections.
    pub connections: usize,
    /// Of which over IPv6.
    pub ipv6_connections: usize,
    /// Of which pipelined.
    pub pipelined_connections: usize,
    /// Requests sent by the clients.
    pub requests: usize,
    /// Requests with a body of 100,000 bytes or more.
    pub large_bodies: usize,
    /// Requests the capture holds whole ([`ExpectedRequest::intact`]).
    pub intact_requests: usize,
    /// Frames sent by the client's and the server's interfaces (before any loss).
    pub frames_sent: usize,
    /// Frames the wire lost (both directions).
    pub wire_lost: usize,
    /// Extra copies the wire delivered.
    pub wire_duplicated: usize,
    /// Frames the wire held back (reordered).
    pub wire_reordered: usize,
    /// Frames smoltcp's fault injector dropped on the client (transmit and receive).
    pub injector_dropped: usize,
    /// TCP data segments the client sent again (starting below the highest sequence number it had
    /// sent): retransmissions, whether or not they reached the server.
    pub client_retransmissions: usize,
    /// TCP data segments the server sent again.
    pub server_retransmissions: usize,
    /// Frames that reached or left the server (what a lossless mirror would send).
    pub frames_at_server: usize,
    /// Of those, frames the mirror lost.
    pub mirror_lost: usize,
    /// Frames in the capture.
    pub frames_in_capture: usize,
    /// Client→server data segments in the capture that are retransmissions.
    pub client_retransmissions_in_capture: usize,
    /// Server→client data segments in the capture that are retransmissions.
    pub server_retransmissions_in_capture: usize,
    /// Frames in the capture that are the wire's second copies.
    pub duplicates_in_capture: usize,
    /// Client→server data segments in the capture that start beyond a hole (bytes after them arrived
    /// before bytes before them).
    pub out_of_order_in_capture: usize,
    /// Client→server data segments in the capture that repeat bytes already captured (retransmissions
    /// and duplicates as the capture shows them).
    pub repeated_in_capture: usize,
    /// Connections whose close handshake never finished (every exchange did; see smoltcp 0.12's
    /// LAST-ACK behaviour in the module documentation).
    pub unclosed_connections: usize,
    /// Simulated duration of the run, in µs.
    pub virtual_duration_us: u64,
    /// Whether each server socket received exactly the bytes its client wrote (smoltcp's TCP did its
    /// job; a `false` here is a generator or smoltcp bug, not a vxtap one).
    pub server_streams_match: bool,
}

/// The result of [`generate`].
#[derive(Clone, Debug)]
pub struct SmolRun {
    /// VXLAN-wrapped frames of the capture, in capture order with their timestamps (µs after the Unix
    /// epoch), and the requests the clients sent (every one intact unless the mirror lost frames).
    pub mix: Mix,
    /// The same capture as a classic pcap (Ethernet link type, microsecond timestamps, native byte
    /// order), written by smoltcp's [`PcapWriter`] through [`MirrorSink`].
    pub pcap: Vec<u8>,
    /// Figures of the run.
    pub stats: SmolStats,
}

/// Runs the conversations described by `params` to completion in simulated time and returns their
/// capture and requests.
///
/// # Panics
///
/// If the conversations do not finish within ten simulated minutes (impossible impairments such as a
/// loss of 1.0) or `params` is inconsistent (no connections' worth of client ports, an empty range).
pub fn generate(params: &SmolParams) -> SmolRun {
    Sim::new(params).run()
}

// ---------------------------------------------------------------------------------------------------
// Frames on the wire and what we know about them.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Client = 0,
    Server = 1,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// What the sender's view says about a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tag {
    /// A TCP segment carrying payload.
    data: bool,
    /// A data segment starting below the highest sequence number its sender had sent.
    retransmit: bool,
    /// The wire's second copy of a frame.
    duplicate: bool,
}

/// The TCP parts of a frame.
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    syn: bool,
    /// Where the payload sits in the frame.
    payload: Range<usize>,
}

fn parse_seg(frame: &[u8]) -> Option<Seg> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, ip_off, ip_len) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let hl = usize::from(ip.header_len());
            let total = usize::from(ip.total_len());
            (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()), 14 + hl, total - hl)
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()), 14 + 40, usize::from(ip.payload_len()))
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(frame.get(ip_off..ip_off + ip_len)?).ok()?;
    let start = ip_off + usize::from(tcp.header_len());
    Some(Seg {
        src: SocketAddr::new(src, tcp.src_port()),
        dst: SocketAddr::new(dst, tcp.dst_port()),
        seq: tcp.seq_number().0 as u32,
        syn: tcp.syn(),
        payload: start..ip_off + ip_len,
    })
}

/// Offset of `seq` in the byte stream that follows the SYN numbered `isn`.
fn stream_offset(isn: u32, seq: u32) -> u64 {
    u64::from(seq.wrapping_sub(isn.wrapping_add(1)))
}

/// Each sender's highest sequence number, to tell retransmissions from new data.
#[derive(Default)]
struct SendTracker {
    /// (src, dst) → (ISN, end of the highest byte sent, as a stream offset).
    flows: HashMap<(SocketAddr, SocketAddr), (u32, u64)>,
}

impl SendTracker {
    fn classify(&mut self, frame: &[u8]) -> Tag {
        let Some(seg) = parse_seg(frame) else { return Tag::default() };
        if seg.syn {
            self.flows.entry((seg.src, seg.dst)).or_insert((seg.seq, 0));
        }
        let len = seg.payload.len() as u64;
        if len == 0 {
            return Tag::default();
        }
        let Some((isn, max_end)) = self.flows.get_mut(&(seg.src, seg.dst)) else {
            return Tag { data: true, ..Tag::default() };
        };
        let start = stream_offset(*isn, seg.seq);
        let retransmit = start < *max_end;
        *max_end = (*max_end).max(start + len);
        Tag { data: true, retransmit, duplicate: false }
    }

    fn isn(&self, src: SocketAddr, dst: SocketAddr) -> Option<u32> {
        self.flows.get(&(src, dst)).map(|f| f.0)
    }
}

/// Frames in flight towards one side: (arrival µs, sequence) → frame and tag.
type InFlight = BTreeMap<(u64, u64), (Vec<u8>, Tag)>;

/// The virtual link: one queue of frames in flight per destination, ordered by arrival time.
struct Wire {
    rng: Rng,
    ch: Channel,
    /// Indexed by destination side.
    queues: [InFlight; 2],
    /// When each direction's link is free again (indexed by destination).
    link_free: [u64; 2],
    next_id: u64,
}

impl Wire {
    fn send(&mut self, stats: &mut SmolStats, from: Side, now: u64, frame: Vec<u8>, tag: Tag) {
        stats.frames_sent += 1;
        if self.rng.chance(self.ch.loss) {
            stats.wire_lost += 1;
            return;
        }
        let to = from.other() as usize;
        let copies = if self.rng.chance(self.ch.duplication) { 2 } else { 1 };
        let ser = (frame.len() as u64 * 8 * 1_000_000).div_ceil(self.ch.rate_bps.max(1)).max(1);
        let start = now.max(self.link_free[to]);
        self.link_free[to] = start + ser;
        let arrival = start + ser + self.ch.latency_us;
        for copy in 0..copies {
            let mut at = arrival + copy * ser;
            if self.rng.chance(self.ch.reorder) {
                at += self.rng.range(1, self.ch.reorder_max_us.max(1));
                stats.wire_reordered += 1;
            }
            let tag = Tag { duplicate: copy == 1, ..tag };
            self.next_id += 1;
            self.queues[to].insert((at, self.next_id), (frame.clone(), tag));
        }
        stats.wire_duplicated += copies as usize - 1;
    }

    fn next_arrival(&self) -> Option<u64> {
        self.queues.iter().filter_map(|q| q.keys().next().map(|k| k.0)).min()
    }
}

/// One frame that reached or left the server.
struct CapturedFrame {
    ts_us: u64,
    inner: Vec<u8>,
    tag: Tag,
    /// The VXLAN frame, if the mirror kept it.
    wrapped: Option<Vec<u8>>,
}

/// State shared by the devices, the wire and the capture sink (all run on one thread).
struct Shared {
    wire: Wire,
    tracker: SendTracker,
    stats: SmolStats,
    /// Tag of the frame the server's port is handing up (set while its receive token is consumed,
    /// which is also when smoltcp sends any immediate reply).
    rx_tag: Option<Tag>,
    /// Per side, tag of the frame being transmitted: set by the [`Tap`] once the interface has written
    /// the frame, taken by the [`Port`] that puts it on the wire (a frame the fault injector drops
    /// never gets there; the next one overwrites its tag).
    tx_tag: [Option<Tag>; 2],
    /// Frames handled by each port, transmit and receive: anything here is progress.
    port_events: u64,
    client_port_tx: usize,
    client_port_rx: usize,
    client_tap_tx: usize,
    client_tap_rx: usize,
    mirror_rng: Rng,
    mirror_loss: f64,
    vni: u32,
    start_us: u64,
    captured: Vec<CapturedFrame>,
    pcap: Vec<u8>,
}

type SharedRef = Rc<RefCell<Shared>>;

// ---------------------------------------------------------------------------------------------------
// Devices.

/// One end of the wire, as a smoltcp device.
struct Port {
    side: Side,
    shared: SharedRef,
}

struct PortRx {
    frame: Vec<u8>,
    tag: Tag,
    shared: SharedRef,
}

struct PortTx {
    side: Side,
    now: u64,
    shared: SharedRef,
}

impl Device for Port {
    type RxToken<'a> = PortRx;
    type TxToken<'a> = PortTx;

    fn receive(&mut self, timestamp: Instant) -> Option<(PortRx, PortTx)> {
        let now = timestamp.total_micros() as u64;
        let mut sh = self.shared.borrow_mut();
        let queue = &mut sh.wire.queues[self.side as usize];
        let (&key, _) = queue.first_key_value()?;
        if key.0 > now {
            return None;
        }
        let (frame, tag) = queue.remove(&key).expect("first key present");
        sh.port_events += 1;
        if self.side == Side::Client {
            sh.client_port_rx += 1;
        }
        drop(sh);
        let shared = self.shared.clone();
        Some((PortRx { frame, tag, shared: shared.clone() }, PortTx { side: self.side, now, shared }))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<PortTx> {
        Some(PortTx { side: self.side, now: timestamp.total_micros() as u64, shared: self.shared.clone() })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = ETHERNET_MTU;
        caps
    }
}

impl phy::RxToken for PortRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        self.shared.borrow_mut().rx_tag = Some(self.tag);
        let r = f(&self.frame);
        self.shared.borrow_mut().rx_tag = None;
        r
    }
}

impl phy::TxToken for PortTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        let mut guard = self.shared.borrow_mut();
        let sh = &mut *guard;
        let tag = sh.tx_tag[self.side as usize].take().unwrap_or_default();
        sh.port_events += 1;
        if self.side == Side::Client {
            sh.client_port_tx += 1;
        }
        sh.wire.send(&mut sh.stats, self.side, self.now, frame, tag);
        r
    }
}

/// Classifies every frame its interface transmits (new data or retransmission) before anything below
/// it (fault injector, capture) sees or drops it.
struct Tap<D> {
    inner: D,
    side: Side,
    shared: SharedRef,
}

struct TapTx<T> {
    inner: T,
    side: Side,
    shared: SharedRef,
}

impl<D: Device> Device for Tap<D> {
    type RxToken<'a>
        = D::RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TapTx<D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (side, shared) = (self.side, self.shared.clone());
        let (rx, tx) = self.inner.receive(timestamp)?;
        if side == Side::Client {
            shared.borrow_mut().client_tap_rx += 1;
        }
        Some((rx, TapTx { inner: tx, side, shared }))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let (side, shared) = (self.side, self.shared.clone());
        self.inner.transmit(timestamp).map(|inner| TapTx { inner, side, shared })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

impl<T: phy::TxToken> phy::TxToken for TapTx<T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let (side, shared) = (self.side, self.shared);
        self.inner.consume(len, |buf| {
            let r = f(buf);
            let mut guard = shared.borrow_mut();
            let sh = &mut *guard;
            let tag = sh.tracker.classify(buf);
            if tag.retransmit {
                match side {
                    Side::Client => sh.stats.client_retransmissions += 1,
                    Side::Server => sh.stats.server_retransmissions += 1,
                }
            }
            if side == Side::Client {
                sh.client_tap_tx += 1;
            }
            sh.tx_tag[side as usize] = Some(tag);
            r
        })
    }
}

/// The sink of the server's [`PcapWriter`]: the traffic mirror. Each frame the server receives or sends
/// is kept or lost (with [`SmolParams::mirror_loss`]), wrapped in VXLAN, and written as a pcap record.
pub struct MirrorSink {
    shared: SharedRef,
}

impl std::fmt::Debug for MirrorSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSink").finish_non_exhaustive()
    }
}

impl PcapSink for MirrorSink {
    fn write(&mut self, data: &[u8]) {
        self.shared.borrow_mut().pcap.extend_from_slice(data);
    }

    fn packet(&mut self, timestamp: Instant, packet: &[u8]) {
        let record = {
            let mut guard = self.shared.borrow_mut();
            let sh = &mut *guard;
            // A frame the server is sending has just been classified by its tap (possibly while a
            // received frame is being handled: smoltcp answers from within its receive path); any
            // other frame is one the port is handing up, with the wire's tag.
            let tag = sh.tx_tag[Side::Server as usize].or(sh.rx_tag).unwrap_or_default();
            let ts_us = sh.start_us + timestamp.total_micros() as u64;
            let keep = !sh.mirror_rng.chance(sh.mirror_loss);
            let wrapped = keep.then(|| wrap_vxlan(sh.vni, packet));
            let record = wrapped.as_ref().map(|w| (ts_us, w.clone()));
            sh.captured.push(CapturedFrame { ts_us, inner: packet.to_vec(), tag, wrapped });
            record
        };
        if let Some((ts_us, wrapped)) = record {
            self.packet_header(Instant::from_micros(ts_us as i64), wrapped.len());
            self.write(&wrapped);
        }
    }
}

/// Wraps an inner Ethernet frame as the mirror session sends it: outer IPv4/UDP 4789/VXLAN, the outer
/// source port a hash of the inner flow (the same both ways), as AWS does.
fn wrap_vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let sport = match parse_seg(inner) {
        Some(s) => {
            let h = |a: SocketAddr| {
                let ip = match a.ip() {
                    IpAddr::V4(v) => u128::from(u32::from(v)),
                    IpAddr::V6(v) => u128::from(v),
                };
                (ip as u64 ^ (ip >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(a.port())
            };
            let x = h(s.src) ^ h(s.dst);
            49152 + ((x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 17) as u16 % 16384
        }
        None => 49152,
    };
    let encap = Encap::Vxlan {
        vni,
        outer_src: IpAddr::V4(Ipv4Addr::new(10, 200, 0, 77)),
        outer_dst: IpAddr::V4(Ipv4Addr::new(10, 201, 0, 10)),
        sport,
    };
    frame::wrap(encap, inner)
}

// ---------------------------------------------------------------------------------------------------
// Applications.

/// Splits a byte stream into HTTP/1.1 messages framed by `Content-Length` (no chunking, no bodies on
/// responses to HEAD: the generator never sends those).
#[derive(Default)]
struct MessageReader {
    buf: Vec<u8>,
    /// Start of the next message in `buf`.
    start: usize,
    /// End of the current message once its head is complete.
    end: Option<usize>,
}

impl MessageReader {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if there is one.
    fn next_message(&mut self) -> Option<Vec<u8>> {
        if self.end.is_none() {
            let head_len = self.buf[self.start..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
            let head = &self.buf[self.start..self.start + head_len];
            self.end = Some(self.start + head_len + content_length(head));
        }
        let end = self.end.expect("set above");
        if self.buf.len() < end {
            return None;
        }
        let msg = self.buf[self.start..end].to_vec();
        self.start = end;
        self.end = None;
        if self.start > 65_536 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Some(msg)
    }
}

fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            name.eq_ignore_ascii_case(b"content-length")
                .then(|| std::str::from_utf8(&value[1..]).ok()?.trim().parse().ok())?
        })
        .next()
        .unwrap_or(0)
}

/// One request as the client writes it.
struct PlannedRequest {
    method: &'static str,
    target: String,
    host: String,
    body: Vec<u8>,
    bytes: Vec<u8>,
}

struct ClientConn {
    handle: SocketHandle,
    local: SocketAddr,
    remote: SocketAddr,
    start_at: u64,
    started: bool,
    pipelined: bool,
    requests: Vec<PlannedRequest>,
    /// Requests appended to `out` so far.
    queued: usize,
    out: Vec<u8>,
    out_pos: usize,
    next_send_at: u64,
    think_rng: Rng,
    responses: MessageReader,
    responses_done: usize,
    closing: bool,
}

impl ClientConn {
    fn done(&self, sockets: &SocketSet<'_>) -> bool {
        self.closing
            && matches!(
                sockets.get::<tcp::Socket>(self.handle).state(),
                tcp::State::Closed | tcp::State::TimeWait
            )
    }

    /// Moves the connection forward at `now`; returns whether anything happened.
    fn step(&mut self, now: u64, iface: &mut Interface, sockets: &mut SocketSet<'_>) -> bool {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        let mut progress = false;
        if !self.started {
            if now < self.start_at {
                return false;
            }
            socket.connect(iface.context(), self.remote, self.local).expect("connect");
            self.started = true;
            progress = true;
        }
        if socket.may_send() && self.queued < self.requests.len() {
            let take = if self.pipelined {
                self.requests.len() - self.queued
            } else if self.responses_done == self.queued && now >= self.next_send_at {
                1
            } else {
                0
            };
            for _ in 0..take {
                self.out.extend_from_slice(&self.requests[self.queued].bytes);
                self.queued += 1;
                progress = true;
            }
        }
        while self.out_pos < self.out.len() && socket.can_send() {
            let n = socket.send_slice(&self.out[self.out_pos..]).expect("send");
            if n == 0 {
                break;
            }
            self.out_pos += n;
            progress = true;
        }
        let mut buf = [0u8; 16_384];
        while socket.can_recv() {
            let n = socket.recv_slice(&mut buf).expect("recv");
            if n == 0 {
                break;
            }
            self.responses.push(&buf[..n]);
            progress = true;
        }
        while self.responses.next_message().is_some() {
            self.responses_done += 1;
            self.next_send_at = now + self.think_rng.range(0, 3_000);
            progress = true;
        }
        if !self.closing && self.responses_done == self.requests.len() && self.out_pos == self.out.len() {
            socket.close();
            self.closing = true;
            progress = true;
        }
        progress
    }
}

struct ServerConn {
    handle: SocketHandle,
    requests: MessageReader,
    /// Every byte received, with the client it came from.
    received: Vec<u8>,
    peer: Option<SocketAddr>,
    out: Vec<u8>,
    out_pos: usize,
    rng: Rng,
    closed: bool,
}

impl ServerConn {
    fn step(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        let mut progress = false;
        let mut buf = [0u8; 16_384];
        while socket.can_recv() {
            let n = socket.recv_slice(&mut buf).expect("recv");
            if n == 0 {
                break;
            }
            if self.peer.is_none() {
                self.peer = socket.remote_endpoint().map(|e| SocketAddr::new(e.addr.into(), e.port));
            }
            self.requests.push(&buf[..n]);
            self.received.extend_from_slice(&buf[..n]);
            progress = true;
        }
        while let Some(request) = self.requests.next_message() {
            let status = if request.starts_with(b"POST ") { "201 Created" } else { "200 OK" };
            let len = match self.rng.below(20) {
                0 => self.rng.usize(40_000, 90_000),
                1..=5 => self.rng.usize(2_000, 20_000),
                _ => self.rng.usize(0, 1_500),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nServer: smoltcp-sim\r\nContent-Type: text/plain\r\nContent-Length: \
                 {len}\r\n\r\n"
            );
            self.out.extend_from_slice(head.as_bytes());
            self.out.extend((0..len).map(|i| b"abcdefghijklmnopqrstuvwxyz012345\n"[i % 33]));
            progress = true;
        }
        while self.out_pos < self.out.len() && socket.can_send() {
            let n = socket.send_slice(&self.out[self.out_pos..]).expect("send");
            if n == 0 {
                break;
            }
            self.out_pos += n;
            progress = true;
        }
        if !self.closed && socket.state() == tcp::State::CloseWait && self.out_pos == self.out.len() {
            socket.close();
            self.closed = true;
            progress = true;
        }
        progress
    }
}

// ---------------------------------------------------------------------------------------------------
// Request generation.

const USER_AGENTS: [&str; 4] =
    ["curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1", "okhttp/4.12.0"];
const WORDS: [&str; 8] = ["alpha", "bravo", "charlie", "delta", "echo", "kilo", "lima", "tango"];

fn plan_request(rng: &mut Rng, p: &SmolParams, host: &str) -> PlannedRequest {
    let with_body = rng.chance(p.body_fraction);
    let method = if with_body {
        *rng.pick(&["POST", "POST", "PUT", "PATCH"])
    } else {
        *rng.pick(&["GET", "GET", "GET", "DELETE"])
    };
    let id = rng.range(1, 999_999);
    let target = match rng.below(4) {
        0 => format!("/api/v1/items/{id}"),
        1 => format!("/search?q={}+{}&page={}", rng.pick(&WORDS), rng.pick(&WORDS), rng.range(1, 50)),
        2 => format!("/upload/{}/{id}.bin", rng.pick(&WORDS)),
        _ => format!("/users/{id}/orders?expand=lines&limit={}", rng.range(1, 100)),
    };
    let (body, content_type) = if !with_body {
        (Vec::new(), "")
    } else if rng.chance(p.large_body_fraction) {
        let mut b = vec![0u8; rng.usize(*p.large_body.start(), *p.large_body.end())];
        rng.fill(&mut b);
        (b, "application/octet-stream")
    } else {
        let n = rng.usize(1, 4_000);
        let mut b = format!("{{\"id\":{id},\"name\":\"{}\",\"data\":\"", rng.pick(&WORDS)).into_bytes();
        while b.len() + 2 < n {
            b.push(b'a' + rng.below(26) as u8);
        }
        b.extend_from_slice(b"\"}");
        (b, "application/json")
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {}\r\nAccept: */*\r\n",
        rng.pick(&USER_AGENTS)
    );
    if with_body {
        head.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    PlannedRequest { method, target, host: host.to_string(), body, bytes }
}

// ---------------------------------------------------------------------------------------------------
// The simulation.

type ClientDevice = Tap<FaultInjector<Port>>;
type ServerDevice = Tap<PcapWriter<Port, MirrorSink>>;

struct Sim<'s> {
    shared: SharedRef,
    client_dev: ClientDevice,
    server_dev: ServerDevice,
    client_iface: Interface,
    server_iface: Interface,
    client_sockets: SocketSet<'s>,
    server_sockets: SocketSet<'s>,
    clients: Vec<ClientConn>,
    servers: Vec<ServerConn>,
}

fn seed32(rng: &mut Rng) -> u32 {
    rng.next_u32() | 1
}

impl Sim<'_> {
    fn new(p: &SmolParams) -> Self {
        assert!(p.connections <= 20_000, "at most 20,000 connections (client ports)");
        let mut rng = Rng::derive(p.seed, 0x5_0117);
        let shared = Rc::new(RefCell::new(Shared {
            wire: Wire {
                rng: Rng::derive(p.seed, 0x5_0118),
                ch: p.channel,
                queues: [BTreeMap::new(), BTreeMap::new()],
                link_free: [0, 0],
                next_id: 0,
            },
            tracker: SendTracker::default(),
            stats: SmolStats::default(),
            rx_tag: None,
            tx_tag: [None, None],
            port_events: 0,
            client_port_tx: 0,
            client_port_rx: 0,
            client_tap_tx: 0,
            client_tap_rx: 0,
            mirror_rng: Rng::derive(p.seed, 0x5_0119),
            mirror_loss: p.mirror_loss,
            vni: p.vni,
            start_us: p.start_us,
            captured: Vec::new(),
            pcap: Vec::new(),
        }));

        let mut injector =
            FaultInjector::new(Port { side: Side::Client, shared: shared.clone() }, seed32(&mut rng));
        injector.set_drop_chance(p.channel.client_fault_drop_pct);
        let mut client_dev = Tap { inner: injector, side: Side::Client, shared: shared.clone() };
        let sink = MirrorSink { shared: shared.clone() };
        let writer =
            PcapWriter::new(Port { side: Side::Server, shared: shared.clone() }, sink, PcapMode::Both);
        let mut server_dev = Tap { inner: writer, side: Side::Server, shared: shared.clone() };

        let zero = Instant::from_micros(0);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC)));
        config.random_seed = rng.next_u64();
        let mut client_iface = Interface::new(config, &mut client_dev, zero);
        client_iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(CLIENT_V4.into(), 24)).expect("room for v4");
            a.push(IpCidr::new(CLIENT_V6.into(), 64)).expect("room for v6");
        });
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(SERVER_MAC)));
        config.random_seed = rng.next_u64();
        let mut server_iface = Interface::new(config, &mut server_dev, zero);
        server_iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(SERVER_V4.into(), 24)).expect("room for v4");
            a.push(IpCidr::new(SERVER_V6.into(), 64)).expect("room for v6");
        });

        let mut client_sockets = SocketSet::new(Vec::new());
        let mut server_sockets = SocketSet::new(Vec::new());
        let mut clients = Vec::with_capacity(p.connections);
        let mut servers = Vec::new();
        let mut listeners: BTreeMap<u16, usize> = BTreeMap::new();
        let port_base = 32_768 + rng.below(8_000) as u16;
        let mut start_at = 0u64;
        for i in 0..p.connections {
            let mut crng = Rng::derive(p.seed, i as u64);
            start_at += crng.exp(p.mean_conn_gap_us as f64) as u64 + 1;
            let ipv6 = crng.chance(p.ipv6_fraction);
            let server_port = *crng.pick(&SERVER_PORTS);
            let (local, remote) = if ipv6 {
                (IpAddr::V6(CLIENT_V6), IpAddr::V6(SERVER_V6))
            } else {
                (IpAddr::V4(CLIENT_V4), IpAddr::V4(SERVER_V4))
            };
            let local = SocketAddr::new(local, port_base + i as u16);
            let remote = SocketAddr::new(remote, server_port);
            let host = match (crng.below(3), ipv6) {
                (0, false) => SERVER_V4.to_string(),
                (0, true) => format!("[{SERVER_V6}]"),
                _ => "api.example.com".to_string(),
            };
            let host = if server_port == 80 { host } else { format!("{host}:{server_port}") };
            let n = crng.usize(*p.requests_per_conn.start(), *p.requests_per_conn.end());
            let requests: Vec<_> = (0..n).map(|_| plan_request(&mut crng, p, &host)).collect();
            let pipelined = n > 1 && crng.chance(p.pipelined_fraction);

            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 32_768]),
                tcp::SocketBuffer::new(vec![0; 65_536]),
            );
            socket.set_congestion_control(if crng.chance(0.5) {
                tcp::CongestionControl::Cubic
            } else {
                tcp::CongestionControl::Reno
            });
            let handle = client_sockets.add(socket);
            clients.push(ClientConn {
                handle,
                local,
                remote,
                start_at,
                started: false,
                pipelined,
                requests,
                queued: 0,
                out: Vec::new(),
                out_pos: 0,
                next_send_at: 0,
                think_rng: Rng::derive(p.seed, (1 << 32) + i as u64),
                responses: MessageReader::default(),
                responses_done: 0,
                closing: false,
            });
            *listeners.entry(server_port).or_default() += 1;
        }
        // One listening socket per connection, plus a spare per port so that a stray late SYN (a
        // duplicate delivered after its connection is gone) cannot starve a real one. Sockets that
        // accept first come first in the set, so a retransmitted SYN finds its own connection first.
        for (&port, &count) in &listeners {
            for _ in 0..=count {
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; 98_304]),
                    tcp::SocketBuffer::new(vec![0; 65_536]),
                );
                socket.listen(port).expect("listen");
                let handle = server_sockets.add(socket);
                let seed = rng.next_u64();
                servers.push(ServerConn {
                    handle,
                    requests: MessageReader::default(),
                    received: Vec::new(),
                    peer: None,
                    out: Vec::new(),
                    out_pos: 0,
                    rng: Rng::new(seed),
                    closed: false,
                });
            }
        }
        Sim {
            shared,
            client_dev,
            server_dev,
            client_iface,
            server_iface,
            client_sockets,
            server_sockets,
            clients,
            servers,
        }
    }

    fn finished(&self) -> bool {
        self.clients.iter().all(|c| c.done(&self.client_sockets))
            && self.servers.iter().all(|s| {
                !matches!(
                    self.server_sockets.get::<tcp::Socket>(s.handle).state(),
                    tcp::State::Established
                        | tcp::State::FinWait1
                        | tcp::State::FinWait2
                        | tcp::State::CloseWait
                        | tcp::State::Closing
                        | tcp::State::LastAck
                )
            })
    }

    /// Polls both interfaces and runs the applications at `now` until nothing more happens.
    fn settle(&mut self, now: u64) {
        let t = Instant::from_micros(now as i64);
        for _ in 0..100_000 {
            let before = self.shared.borrow().port_events;
            self.client_iface.poll(t, &mut self.client_dev, &mut self.client_sockets);
            self.server_iface.poll(t, &mut self.server_dev, &mut self.server_sockets);
            let mut progress = false;
            for c in &mut self.clients {
                progress |= c.step(now, &mut self.client_iface, &mut self.client_sockets);
            }
            for s in &mut self.servers {
                progress |= s.step(&mut self.server_sockets);
            }
            if !progress && self.shared.borrow().port_events == before {
                return;
            }
        }
        panic!("no quiet point at t={now} µs");
    }

    fn next_time(&mut self, now: u64) -> u64 {
        let t = Instant::from_micros(now as i64);
        let mut next = u64::MAX;
        let polls = [
            self.client_iface.poll_at(t, &self.client_sockets),
            self.server_iface.poll_at(t, &self.server_sockets),
        ];
        for at in polls.into_iter().flatten() {
            let at = at.total_micros() as u64;
            // A socket asking for "now" after a quiet poll has nothing to send yet: look again soon.
            next = next.min(if at <= now { now + 100 } else { at });
        }
        if let Some(at) = self.shared.borrow().wire.next_arrival() {
            next = next.min(at.max(now + 1));
        }
        for c in &self.clients {
            if !c.started {
                next = next.min(c.start_at.max(now + 1));
            } else if c.next_send_at > now && c.queued == c.responses_done && c.queued < c.requests.len() {
                // Thinking before the next request.
                next = next.min(c.next_send_at);
            }
        }
        next
    }

    /// Why the run cannot go on: the connections that have not finished.
    fn stuck(&self, now: u64) -> String {
        let mut msg = format!("smoltcp conversations stuck at t={now} µs;");
        for c in self.clients.iter().filter(|c| !c.done(&self.client_sockets)) {
            let client = self.client_sockets.get::<tcp::Socket>(c.handle);
            let server = self.servers.iter().find(|s| s.peer == Some(c.local)).map(|s| {
                let socket = self.server_sockets.get::<tcp::Socket>(s.handle);
                (socket.state(), s.received.len(), s.out_pos, s.out.len())
            });
            msg += &format!(
                " client {} state {} sent {}/{} requests {}/{} responses {}, server (state, received, \
                 sent, to send) {server:?};",
                c.local,
                client.state(),
                c.out_pos,
                c.out.len(),
                c.queued,
                c.requests.len(),
                c.responses_done
            );
        }
        msg
    }

    fn run(mut self) -> SmolRun {
        let mut now = 0u64;
        loop {
            self.settle(now);
            if self.finished() {
                break;
            }
            let next = self.next_time(now);
            if next == u64::MAX && self.clients.iter().all(|c| c.responses_done == c.requests.len()) {
                // Every exchange is over and nothing will ever happen again: a close handshake is
                // stuck. smoltcp 0.12 cancels the FIN retransmission of a LAST-ACK socket when an
                // ACK that does not cover the FIN arrives; if the FIN was lost, the server waits in
                // LAST-ACK and the client in FIN-WAIT-2 for ever. The capture simply ends there.
                break;
            }
            assert!(next != u64::MAX && next <= VIRTUAL_TIME_LIMIT_US, "{}", self.stuck(now));
            now = next;
        }
        self.report(now)
    }

    fn report(self, end: u64) -> SmolRun {
        let unclosed = self.clients.iter().filter(|c| !c.done(&self.client_sockets)).count();
        let Sim { shared, clients, servers, client_dev, server_dev, .. } = self;
        drop((client_dev, server_dev));
        let sh = Rc::try_unwrap(shared).ok().expect("devices dropped").into_inner();
        let mut stats = sh.stats;
        stats.virtual_duration_us = end;
        stats.unclosed_connections = unclosed;
        stats.injector_dropped =
            (sh.client_tap_tx - sh.client_port_tx) + (sh.client_port_rx - sh.client_tap_rx);
        stats.frames_at_server = sh.captured.len();

        // Which client bytes the capture holds, per client flow, and capture-side figures.
        let mut held: HashMap<SocketAddr, Vec<Range<u64>>> = HashMap::new();
        let mut first_ts: HashMap<SocketAddr, Vec<(u64, Range<u64>)>> = HashMap::new();
        let mut max_end: HashMap<SocketAddr, u64> = HashMap::new();
        let client_ends: HashMap<SocketAddr, SocketAddr> =
            clients.iter().map(|c| (c.local, c.remote)).collect();
        let mut frames = Vec::new();
        for f in &sh.captured {
            let Some(wrapped) = &f.wrapped else {
                stats.mirror_lost += 1;
                continue;
            };
            frames.push((f.ts_us, wrapped.clone()));
            if f.tag.duplicate {
                stats.duplicates_in_capture += 1;
            }
            let Some(seg) = parse_seg(&f.inner) else { continue };
            let from_client = client_ends.get(&seg.src) == Some(&seg.dst);
            if f.tag.retransmit {
                if from_client {
                    stats.client_retransmissions_in_capture += 1;
                } else {
                    stats.server_retransmissions_in_capture += 1;
                }
            }
            if !from_client || seg.payload.is_empty() {
                continue;
            }
            let Some(isn) = sh.tracker.isn(seg.src, seg.dst) else { continue };
            let start = stream_offset(isn, seg.seq);
            let range = start..start + seg.payload.len() as u64;
            let seen = max_end.entry(seg.src).or_insert(0);
            if range.start > *seen {
                stats.out_of_order_in_capture += 1;
            } else if range.start < *seen {
                stats.repeated_in_capture += 1;
            }
            *seen = (*seen).max(range.end);
            first_ts.entry(seg.src).or_default().push((f.ts_us, range.clone()));
            held.entry(seg.src).or_default().push(range);
        }
        stats.frames_in_capture = frames.len();

        let by_peer: HashMap<SocketAddr, &ServerConn> =
            servers.iter().filter_map(|s| s.peer.map(|peer| (peer, s))).collect();
        let mut streams_match = true;
        let mut expected = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            stats.connections += 1;
            stats.ipv6_connections += usize::from(c.local.is_ipv6());
            stats.pipelined_connections += usize::from(c.pipelined);
            let sent: Vec<u8> = c.requests.iter().flat_map(|r| r.bytes.iter().copied()).collect();
            streams_match &= by_peer.get(&c.local).is_some_and(|s| s.received == sent);
            let mut ranges = held.remove(&c.local).unwrap_or_default();
            ranges.sort_by_key(|r| r.start);
            let mut merged: Vec<Range<u64>> = Vec::new();
            for r in ranges {
                match merged.last_mut() {
                    Some(m) if r.start <= m.end => m.end = m.end.max(r.end),
                    _ => merged.push(r),
                }
            }
            let seen = first_ts.remove(&c.local).unwrap_or_default();
            let mut offset = 0u64;
            for (k, r) in c.requests.iter().enumerate() {
                let range = offset..offset + r.bytes.len() as u64;
                offset = range.end;
                let intact = merged.iter().any(|m| m.start <= range.start && range.end <= m.end);
                let ts_us = seen.iter().find(|(_, s)| s.contains(&range.start)).map_or(0, |(ts, _)| *ts);
                stats.requests += 1;
                stats.large_bodies += usize::from(r.body.len() >= 100_000);
                stats.intact_requests += usize::from(intact);
                expected.push(ExpectedRequest {
                    src: c.local,
                    dst: c.remote,
                    method: r.method.to_string(),
                    target: r.target.clone().into_bytes(),
                    version: "HTTP/1.1".to_string(),
                    host: Some(r.host.clone()),
                    body: r.body.clone(),
                    chunked: false,
                    intact,
                    conn_index: i,
                    seq_in_conn: k,
                    ts_us,
                });
            }
        }
        stats.server_streams_match = streams_match;
        SmolRun { mix: Mix { frames, expected }, pcap: sh.pcap, stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap;

    #[test]
    fn clean_run_is_deterministic_and_consistent() {
        let p = SmolParams { connections: 6, seed: 3, ..SmolParams::default() };
        let a = generate(&p);
        let b = generate(&p);
        assert_eq!(a.mix, b.mix);
        assert_eq!(a.pcap, b.pcap);
        assert!(a.stats.server_streams_match);
        assert_eq!(a.stats.connections, 6);
        assert!(a.mix.expected.iter().all(|e| e.intact));
        assert_eq!(a.stats.wire_lost + a.stats.client_retransmissions + a.stats.mirror_lost, 0);
        let reader = Box::new(std::io::Cursor::new(a.pcap.clone()));
        let mut file = vxtap_capture::PcapFile::from_reader("smol", reader).unwrap();
        assert_eq!(file.dlt(), pcap::LINKTYPE_ETHERNET as i32);
        let mut from_pcap = Vec::new();
        file.for_each(|r| from_pcap.push((r.ts_micros, r.data.to_vec()))).unwrap();
        assert_eq!(from_pcap, a.mix.frames);
    }

    #[test]
    fn lossy_run_retransmits_and_still_delivers() {
        let p = SmolParams {
            connections: 6,
            seed: 4,
            channel: Channel {
                loss: 0.08,
                duplication: 0.05,
                reorder: 0.1,
                client_fault_drop_pct: 2,
                ..Channel::default()
            },
            ..SmolParams::default()
        };
        let run = generate(&p);
        assert!(run.stats.server_streams_match, "{:?}", run.stats);
        assert!(
            run.stats.client_retransmissions > 0 && run.stats.duplicates_in_capture > 0,
            "{:?}",
            run.stats
        );
        assert!(run.mix.expected.iter().all(|e| e.intact));
    }

    #[test]
    fn mirror_loss_marks_requests_not_intact() {
        let p = SmolParams { connections: 10, seed: 5, mirror_loss: 0.05, ..SmolParams::default() };
        let run = generate(&p);
        assert!(run.stats.mirror_lost > 0);
        assert!(run.mix.expected.iter().any(|e| !e.intact), "{:?}", run.stats);
        assert_eq!(run.stats.frames_in_capture + run.stats.mirror_lost, run.stats.frames_at_server);
    }
}
