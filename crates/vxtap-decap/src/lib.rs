//! Packet decapsulation for vxtap: outer tunnel layers (VXLAN, GENEVE) down to one inner TCP segment.
//!
//! Sans-IO: bytes in, a borrowed [`Segment`] view out. Nothing here allocates, reads a clock or panics on
//! any input; every malformed layer is a [`DecapError`] whose [`DecapError::kind`] names a counter.
//!
//! ```
//! use vxtap_decap::{decode_frame, DecapConfig, Decoded, LinkType};
//!
//! // A frame that is too short to hold an Ethernet header is a counted error, not a panic.
//! let err = decode_frame(LinkType::Ethernet, &[0u8; 6], &DecapConfig::default()).unwrap_err();
//! assert_eq!(err.kind(), "ethernet_truncated");
//! # let _ = Decoded::Skipped(vxtap_decap::SkipReason::NotTcp);
//! ```

use std::net::{IpAddr, SocketAddr};

use etherparse::{IpNumber, LaxIpSlice, TcpSlice};

/// How many tunnel headers may be nested (GENEVE around VXLAN is two) before a packet is refused.
const MAX_TUNNEL_DEPTH: u8 = 4;
/// VLAN tag ethertypes: 802.1Q, 802.1ad (QinQ outer) and the legacy 0x9100.
const VLAN_ETHERTYPES: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// GENEVE protocol type for an Ethernet payload (Transparent Ethernet Bridging).
const ETHERTYPE_TEB: u16 = 0x6558;

/// Link-layer framing of a captured frame, as pcap link types name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II (DLT_EN10MB).
    Ethernet,
    /// Linux "cooked" capture v1 (DLT_LINUX_SLL).
    LinuxSll,
    /// Linux "cooked" capture v2 (DLT_LINUX_SLL2).
    LinuxSll2,
    /// Raw IPv4 or IPv6, version taken from the first nibble (DLT_RAW and friends).
    RawIp,
}

impl LinkType {
    /// Maps a pcap/pcapng link-type number to a supported [`LinkType`], if vxtap reads that framing.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            12 | 14 | 101 | 228 | 229 => Some(LinkType::RawIp),
            _ => None,
        }
    }
}

/// Which tunnel carried the inner frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TunnelKind {
    /// VXLAN (RFC 7348), as AWS VPC traffic mirroring sends it.
    Vxlan,
    /// GENEVE (RFC 8926), as an AWS Gateway Load Balancer sends it.
    Geneve,
}

impl TunnelKind {
    /// The lower-case name used in events and metrics (`"vxlan"`, `"geneve"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
        }
    }
}

/// The innermost tunnel around a segment: its kind, VNI and outer endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tunnel {
    /// VXLAN or GENEVE.
    pub kind: TunnelKind,
    /// The 24-bit virtual network identifier (a mirror session's VNI).
    pub vni: u32,
    /// Outer source address (the mirror source).
    pub src: IpAddr,
    /// Outer destination address (the mirror target).
    pub dst: IpAddr,
}

/// TCP flags vxtap acts on, as a small bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// Synchronise: the segment opens a connection.
    pub const SYN: TcpFlags = TcpFlags(0x01);
    /// Finish: the sender has no more data.
    pub const FIN: TcpFlags = TcpFlags(0x02);
    /// Reset: the connection is aborted.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// The acknowledgment number is valid.
    pub const ACK: TcpFlags = TcpFlags(0x08);

    /// True when every flag in `other` is set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two flag sets.
    pub fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

/// Everything about a TCP segment except its payload: small, `Copy`, cheap to queue between threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The innermost tunnel, or `None` for plain (un-tunnelled) traffic.
    pub tunnel: Option<Tunnel>,
    /// The outermost inner VLAN id, if the inner frame was tagged.
    pub vlan: Option<u16>,
    /// Inner source address and port.
    pub src: SocketAddr,
    /// Inner destination address and port.
    pub dst: SocketAddr,
    /// TCP sequence number of the first payload byte (or of the SYN).
    pub seq: u32,
    /// TCP acknowledgment number (meaningful when [`TcpFlags::ACK`] is set).
    pub ack: u32,
    /// The flags that matter for reassembly.
    pub flags: TcpFlags,
    /// Payload bytes the IP header declares but the capture does not hold (mirror packet length,
    /// snaplen). They follow the present payload and must be treated as a gap, never read.
    pub missing: u32,
}

/// A decoded TCP segment: header fields plus a view of the payload bytes that are present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Addressing and TCP fields.
    pub header: SegmentHeader,
    /// The TCP payload present in the capture.
    pub payload: &'a [u8],
}

/// Why a well-formed packet carried nothing for vxtap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The inner packet is not TCP (UDP, ICMP, ARP, ...).
    NotTcp,
    /// The tunnel's VNI is not in the configured filter.
    VniFiltered,
    /// An IP fragment of the outer tunnel datagram; it needs reassembly before decoding.
    OuterFragment,
    /// A fragment of an inner IP packet; TCP over fragmented IP is not reassembled.
    InnerFragment,
}

impl SkipReason {
    /// Every reason, for pre-registering counters.
    pub const ALL: [SkipReason; 4] =
        [SkipReason::NotTcp, SkipReason::VniFiltered, SkipReason::OuterFragment, SkipReason::InnerFragment];

    /// Counter name for this reason.
    pub fn kind(self) -> &'static str {
        match self {
            SkipReason::NotTcp => "not_tcp",
            SkipReason::VniFiltered => "vni_filtered",
            SkipReason::OuterFragment => "outer_fragment",
            SkipReason::InnerFragment => "inner_fragment",
        }
    }
}

/// The result of decoding one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// An inner TCP segment.
    Tcp(Segment<'a>),
    /// A valid packet that carries nothing to reassemble.
    Skipped(SkipReason),
}

/// A malformed or unsupported layer. [`DecapError::kind`] is a stable counter name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecapError {
    /// Fewer bytes than an Ethernet header.
    #[error("ethernet header truncated")]
    EthernetTruncated,
    /// Fewer bytes than a Linux cooked-capture header.
    #[error("linux cooked capture header truncated")]
    SllTruncated,
    /// A VLAN tag cut short.
    #[error("vlan tag truncated")]
    VlanTruncated,
    /// An IP header that is truncated or invalid.
    #[error("ip header truncated or malformed")]
    IpMalformed,
    /// Not IPv4 nor IPv6 where IP was expected (raw IP link, GENEVE payload).
    #[error("unknown network protocol")]
    UnknownNetwork,
    /// A UDP header cut short.
    #[error("udp header truncated")]
    UdpTruncated,
    /// A VXLAN header cut short or without the valid-VNI flag.
    #[error("vxlan header truncated or invalid")]
    VxlanMalformed,
    /// A GENEVE header cut short, of an unknown version, or with an unknown payload type.
    #[error("geneve header truncated or invalid")]
    GeneveMalformed,
    /// A TCP header cut short or with a data offset below 5.
    #[error("tcp header truncated or malformed")]
    TcpMalformed,
    /// More nested tunnels than vxtap follows.
    #[error("too many nested tunnels")]
    TooManyTunnels,
}

impl DecapError {
    /// Counter name for this error kind.
    pub fn kind(self) -> &'static str {
        match self {
            DecapError::EthernetTruncated => "ethernet_truncated",
            DecapError::SllTruncated => "sll_truncated",
            DecapError::VlanTruncated => "vlan_truncated",
            DecapError::IpMalformed => "ip_malformed",
            DecapError::UnknownNetwork => "unknown_network",
            DecapError::UdpTruncated => "udp_truncated",
            DecapError::VxlanMalformed => "vxlan_malformed",
            DecapError::GeneveMalformed => "geneve_malformed",
            DecapError::TcpMalformed => "tcp_malformed",
            DecapError::TooManyTunnels => "too_many_tunnels",
        }
    }

    /// Every kind, for pre-registering counters.
    pub const ALL: [DecapError; 10] = [
        DecapError::EthernetTruncated,
        DecapError::SllTruncated,
        DecapError::VlanTruncated,
        DecapError::IpMalformed,
        DecapError::UnknownNetwork,
        DecapError::UdpTruncated,
        DecapError::VxlanMalformed,
        DecapError::GeneveMalformed,
        DecapError::TcpMalformed,
        DecapError::TooManyTunnels,
    ];
}

/// Which tunnels to recognise and which VNIs to accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecapConfig {
    /// UDP destination port of VXLAN (default 4789).
    pub vxlan_port: u16,
    /// UDP destination port of GENEVE (default 6081).
    pub geneve_port: u16,
    /// Accept only these VNIs (VXLAN or GENEVE, innermost tunnel); empty accepts all.
    pub vnis: Vec<u32>,
}

impl Default for DecapConfig {
    fn default() -> Self {
        DecapConfig { vxlan_port: 4789, geneve_port: 6081, vnis: Vec::new() }
    }
}

/// Decodes a captured frame (pcap file or live interface) down to its innermost TCP segment.
///
/// Tunnelled traffic (UDP to the VXLAN or GENEVE port) is unwrapped; plain TCP is returned as is.
pub fn decode_frame<'a>(
    link: LinkType,
    frame: &'a [u8],
    cfg: &DecapConfig,
) -> Result<Decoded<'a>, DecapError> {
    let cx = Context { cfg, tunnel: None, depth: 0 };
    let (ethertype, packet, vlan) = link_payload(link, frame)?;
    cx.network(ethertype, packet, vlan)
}

/// The network-layer packet of a captured frame, after its link header and VLAN tags.
pub(crate) fn network_layer(link: LinkType, frame: &[u8]) -> Result<&[u8], DecapError> {
    Ok(link_payload(link, frame)?.1)
}

/// Splits a captured frame into (ethertype, network-layer bytes, outermost VLAN id).
fn link_payload(link: LinkType, frame: &[u8]) -> Result<(u16, &[u8], Option<u16>), DecapError> {
    match link {
        LinkType::Ethernet => ethernet_payload(frame),
        LinkType::LinuxSll => {
            let proto = read_u16(frame, 14).ok_or(DecapError::SllTruncated)?;
            strip_vlans(proto, &frame[16..])
        }
        LinkType::LinuxSll2 => {
            let proto = read_u16(frame, 0).ok_or(DecapError::SllTruncated)?;
            let rest = frame.get(20..).ok_or(DecapError::SllTruncated)?;
            strip_vlans(proto, rest)
        }
        LinkType::RawIp => match frame.first().map(|b| b >> 4) {
            Some(6) => Ok((ETHERTYPE_IPV6, frame, None)),
            _ => Ok((ETHERTYPE_IPV4, frame, None)),
        },
    }
}

fn ethernet_payload(frame: &[u8]) -> Result<(u16, &[u8], Option<u16>), DecapError> {
    let ethertype = read_u16(frame, 12).ok_or(DecapError::EthernetTruncated)?;
    strip_vlans(ethertype, &frame[14..])
}

/// Skips 802.1Q/802.1ad tags, returning the inner ethertype, the rest and the outermost VLAN id.
fn strip_vlans(mut ethertype: u16, mut rest: &[u8]) -> Result<(u16, &[u8], Option<u16>), DecapError> {
    let mut vlan = None;
    while VLAN_ETHERTYPES.contains(&ethertype) {
        let tci = read_u16(rest, 0).ok_or(DecapError::VlanTruncated)?;
        ethertype = read_u16(rest, 2).ok_or(DecapError::VlanTruncated)?;
        vlan.get_or_insert(tci & 0x0fff);
        rest = &rest[4..];
    }
    Ok((ethertype, rest, vlan))
}

/// Decodes the payload of a UDP datagram received on a tunnel socket (VXLAN header onwards).
///
/// `local_port` says which tunnel the socket speaks: the GENEVE port means GENEVE, anything else VXLAN.
/// `outer_src` and `outer_dst` are the datagram's addresses, reported in [`Tunnel`].
pub fn decode_udp_payload<'a>(
    outer_src: IpAddr,
    outer_dst: IpAddr,
    local_port: u16,
    payload: &'a [u8],
    cfg: &DecapConfig,
) -> Result<Decoded<'a>, DecapError> {
    let cx = Context { cfg, tunnel: None, depth: 0 };
    if local_port == cfg.geneve_port {
        cx.geneve(payload, outer_src, outer_dst)
    } else {
        cx.vxlan(payload, outer_src, outer_dst)
    }
}

/// State carried down the layers of one frame.
#[derive(Clone, Copy)]
struct Context<'c> {
    cfg: &'c DecapConfig,
    tunnel: Option<Tunnel>,
    depth: u8,
}

impl<'c> Context<'c> {
    fn ethernet<'a>(self, frame: &'a [u8]) -> Result<Decoded<'a>, DecapError> {
        let (ethertype, packet, vlan) = ethernet_payload(frame)?;
        self.network(ethertype, packet, vlan)
    }

    fn network<'a>(
        self,
        ethertype: u16,
        packet: &'a [u8],
        vlan: Option<u16>,
    ) -> Result<Decoded<'a>, DecapError> {
        match ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => self.ip(packet, vlan),
            _ => Ok(Decoded::Skipped(SkipReason::NotTcp)),
        }
    }

    fn ip<'a>(self, packet: &'a [u8], vlan: Option<u16>) -> Result<Decoded<'a>, DecapError> {
        match packet.first().map(|b| b >> 4) {
            Some(4) | Some(6) => {}
            _ => return Err(DecapError::UnknownNetwork),
        }
        let ip = match plain_ipv4(packet) {
            Some(ip) => ip,
            None => IpPayload::parse(packet)?,
        };
        if ip.fragmented {
            let reason = match self.tunnel {
                None if ip.protocol == IpNumber::UDP => SkipReason::OuterFragment,
                _ => SkipReason::InnerFragment,
            };
            return Ok(Decoded::Skipped(reason));
        }
        match ip.protocol {
            IpNumber::TCP => self.tcp(ip.payload, ip.src, ip.dst, vlan, ip.missing),
            IpNumber::UDP => self.udp(ip.payload, ip.src, ip.dst),
            _ => Ok(Decoded::Skipped(SkipReason::NotTcp)),
        }
    }

    fn udp<'a>(self, datagram: &'a [u8], src: IpAddr, dst: IpAddr) -> Result<Decoded<'a>, DecapError> {
        let dst_port = read_u16(datagram, 2).ok_or(DecapError::UdpTruncated)?;
        if datagram.len() < 8 {
            return Err(DecapError::UdpTruncated);
        }
        let payload = &datagram[8..];
        if dst_port == self.cfg.vxlan_port {
            self.vxlan(payload, src, dst)
        } else if dst_port == self.cfg.geneve_port {
            self.geneve(payload, src, dst)
        } else {
            Ok(Decoded::Skipped(SkipReason::NotTcp))
        }
    }

    fn enter(self, kind: TunnelKind, vni: u32, src: IpAddr, dst: IpAddr) -> Result<Self, DecapError> {
        if self.depth >= MAX_TUNNEL_DEPTH {
            return Err(DecapError::TooManyTunnels);
        }
        Ok(Context { tunnel: Some(Tunnel { kind, vni, src, dst }), depth: self.depth + 1, ..self })
    }

    fn vxlan<'a>(self, payload: &'a [u8], src: IpAddr, dst: IpAddr) -> Result<Decoded<'a>, DecapError> {
        // flags(1) reserved(3) vni(3) reserved(1); the I flag (0x08) says the VNI is valid.
        match payload.first() {
            Some(flags) if payload.len() >= 8 && flags & 0x08 != 0 => {}
            _ => return Err(DecapError::VxlanMalformed),
        }
        let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
        let inner = self.enter(TunnelKind::Vxlan, vni, src, dst)?;
        inner.ethernet(&payload[8..])
    }

    fn geneve<'a>(self, payload: &'a [u8], src: IpAddr, dst: IpAddr) -> Result<Decoded<'a>, DecapError> {
        // ver(2 bits) opt_len(6 bits, in 4-byte words), flags, protocol type(2), vni(3), reserved(1).
        let first = *payload.first().ok_or(DecapError::GeneveMalformed)?;
        let header_len = 8 + usize::from(first & 0x3f) * 4;
        if first >> 6 != 0 || payload.len() < header_len {
            return Err(DecapError::GeneveMalformed);
        }
        let protocol = u16::from_be_bytes([payload[2], payload[3]]);
        let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
        let inner = self.enter(TunnelKind::Geneve, vni, src, dst)?;
        let rest = &payload[header_len..];
        match protocol {
            ETHERTYPE_TEB => inner.ethernet(rest),
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => inner.ip(rest, None),
            _ => Err(DecapError::GeneveMalformed),
        }
    }

    fn tcp<'a>(
        self,
        bytes: &'a [u8],
        src: IpAddr,
        dst: IpAddr,
        vlan: Option<u16>,
        missing: usize,
    ) -> Result<Decoded<'a>, DecapError> {
        if let Some(tunnel) = self.tunnel {
            if !self.cfg.vnis.is_empty() && !self.cfg.vnis.contains(&tunnel.vni) {
                return Ok(Decoded::Skipped(SkipReason::VniFiltered));
            }
        }
        let tcp = TcpSlice::from_slice(bytes).map_err(|_| DecapError::TcpMalformed)?;
        let mut flags = TcpFlags::default();
        for (set, flag) in [
            (tcp.syn(), TcpFlags::SYN),
            (tcp.fin(), TcpFlags::FIN),
            (tcp.rst(), TcpFlags::RST),
            (tcp.ack(), TcpFlags::ACK),
        ] {
            if set {
                flags = flags.union(flag);
            }
        }
        let header = SegmentHeader {
            tunnel: self.tunnel,
            vlan,
            src: SocketAddr::new(src, tcp.source_port()),
            dst: SocketAddr::new(dst, tcp.destination_port()),
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            flags,
            missing: u32::try_from(missing).unwrap_or(u32::MAX),
        };
        Ok(Decoded::Tcp(Segment { header, payload: tcp.payload() }))
    }
}

/// What the IP layer of a packet carries.
#[derive(Debug, PartialEq, Eq)]
struct IpPayload<'a> {
    protocol: IpNumber,
    src: IpAddr,
    dst: IpAddr,
    /// The payload present (cut to the declared length when the packet carries more).
    payload: &'a [u8],
    /// Declared payload bytes the capture cut off.
    missing: usize,
    /// A fragment of a larger packet (more fragments follow, or not the first).
    fragmented: bool,
}

impl<'a> IpPayload<'a> {
    /// Any IPv4 or IPv6 packet, extension headers and truncation included (etherparse, lax).
    fn parse(packet: &'a [u8]) -> Result<Self, DecapError> {
        let (ip, _ext_err) = LaxIpSlice::from_slice(packet).map_err(|_| DecapError::IpMalformed)?;
        let payload = ip.payload();
        Ok(IpPayload {
            protocol: payload.ip_number,
            src: ip.source_addr(),
            dst: ip.destination_addr(),
            payload: payload.payload,
            missing: declared_payload_len(&ip).saturating_sub(payload.payload.len()),
            fragmented: payload.fragmented,
        })
    }
}

/// The common case read directly: IPv4 without options or fragmentation, its total length at least
/// a header. Both IP layers of every mirrored frame go through here, and the general parser was
/// ~5% of a run; anything else returns `None` for [`IpPayload::parse`], which gives the same result
/// for what this accepts (property test).
fn plain_ipv4(packet: &[u8]) -> Option<IpPayload<'_>> {
    let header: &[u8; 20] = packet.get(..20)?.try_into().ok()?;
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let fragment = u16::from_be_bytes([header[6], header[7]]) & 0x3fff;
    if header[0] != 0x45 || total < 20 || fragment != 0 {
        return None;
    }
    let end = total.min(packet.len());
    let src: [u8; 4] = header[12..16].try_into().ok()?;
    let dst: [u8; 4] = header[16..20].try_into().ok()?;
    Some(IpPayload {
        protocol: IpNumber(header[9]),
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        payload: &packet[20..end],
        missing: total - end,
        fragmented: false,
    })
}

/// The IP payload length the header declares (IPv4 total length minus header, IPv6 payload length
/// minus extension headers), which exceeds the bytes present when the capture cut the packet.
fn declared_payload_len(ip: &LaxIpSlice<'_>) -> usize {
    match ip {
        LaxIpSlice::Ipv4(v4) => {
            let header = v4.header();
            usize::from(header.total_len()).saturating_sub(header.slice().len())
        }
        LaxIpSlice::Ipv6(v6) => {
            let declared = usize::from(v6.header().payload_length());
            declared.saturating_sub(v6.extensions().slice().len())
        }
    }
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

mod defrag;

pub use defrag::{DefragConfig, DefragStats, Defragmenter};

#[cfg(test)]
mod tests;
