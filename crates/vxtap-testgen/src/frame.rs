//! Byte-exact frames: Ethernet, VLAN tags, IPv4 (with options) / IPv6 (with a hop-by-hop header), TCP,
//! wrapped in VXLAN or GENEVE (+VXLAN) the way AWS mirroring sends them. Checksums are computed so that
//! other tools (tshark, the kernel) accept the frames.

use std::net::{IpAddr, SocketAddr};

/// TCP flag bits as they sit in the header's flags byte.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// How the inner frame is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// Plain Ethernet, no tunnel.
    None,
    /// Outer Ethernet/IP/UDP(4789)/VXLAN.
    Vxlan {
        /// VXLAN network identifier.
        vni: u32,
        /// Outer source (mirror source).
        outer_src: IpAddr,
        /// Outer destination (mirror target).
        outer_dst: IpAddr,
        /// Outer UDP source port (AWS: a hash of the inner flow).
        sport: u16,
    },
    /// GENEVE (6081, with one AWS-style option) around IPv4/UDP/VXLAN, as a Gateway Load Balancer sends.
    GeneveVxlan {
        /// VXLAN network identifier of the mirror session.
        vni: u32,
        /// Outer source.
        outer_src: IpAddr,
        /// Outer destination.
        outer_dst: IpAddr,
    },
}

/// One TCP segment to put on the wire.
#[derive(Clone, Debug)]
pub struct TcpSpec<'a> {
    /// Inner source.
    pub src: SocketAddr,
    /// Inner destination (must be the same IP version as `src`).
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag bits from [`flags`].
    pub flags: u8,
    /// Payload.
    pub payload: &'a [u8],
    /// VLAN ids to tag the inner frame with, outermost first.
    pub vlans: &'a [u16],
    /// Add IPv4 options (a NOP-padded record-route) or an IPv6 hop-by-hop header.
    pub ip_extras: bool,
}

/// Builds the whole frame (outer Ethernet first) for `tcp` carried by `encap`.
pub fn build(encap: Encap, tcp: &TcpSpec<'_>) -> Vec<u8> {
    let inner = inner_ethernet(tcp);
    match encap {
        Encap::None => inner,
        _ => wrap(encap, &inner),
    }
}

/// Wraps an already built inner Ethernet frame (possibly cut short, as a mirror session with a packet
/// length does) in `encap`'s outer headers. The outer lengths and checksums describe `inner` as given;
/// nothing inside `inner` is touched. With [`Encap::None`] this is a copy of `inner`.
pub fn wrap(encap: Encap, inner: &[u8]) -> Vec<u8> {
    match encap {
        Encap::None => inner.to_vec(),
        Encap::Vxlan { vni, outer_src, outer_dst, sport } => {
            let vxlan = vxlan_payload(vni, inner);
            udp_frame(outer_src, outer_dst, sport, 4789, &vxlan)
        }
        Encap::GeneveVxlan { vni, outer_src, outer_dst } => {
            let vxlan = vxlan_payload(vni, inner);
            let mid = ip_packet(
                outer_src,
                outer_dst,
                17,
                &udp_segment(outer_src, outer_dst, 49152, 4789, &vxlan),
                false,
            );
            let mut geneve = vec![0x02, 0x00, 0x08, 0x00, 0, 0, 0, 0];
            // One option of class 0x0108 (AWS), type 1, 4 bytes of data.
            geneve.extend_from_slice(&[0x01, 0x08, 0x01, 0x01, 0xde, 0xad, 0xbe, 0xef]);
            geneve.extend_from_slice(&mid);
            udp_frame(outer_src, outer_dst, 50000, 6081, &geneve)
        }
    }
}

/// Length of the headers [`inner_ethernet`] puts before `tcp.payload`: Ethernet and VLAN tags, IP (with
/// its extras) and the 32-byte TCP header.
pub fn inner_headers_len(tcp: &TcpSpec<'_>) -> usize {
    let ip = match (tcp.src.ip().is_ipv4(), tcp.ip_extras) {
        (true, false) => 20,
        (true, true) => 28,
        (false, false) => 40,
        (false, true) => 48,
    };
    14 + 4 * tcp.vlans.len() + ip + 32
}

/// The VXLAN header (I flag set) followed by `inner`.
pub fn vxlan_payload(vni: u32, inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut out = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
    out.extend_from_slice(inner);
    out
}

/// The inner Ethernet frame of a TCP segment.
pub fn inner_ethernet(tcp: &TcpSpec<'_>) -> Vec<u8> {
    let segment = tcp_segment(tcp);
    let ip = ip_packet(tcp.src.ip(), tcp.dst.ip(), 6, &segment, tcp.ip_extras);
    ethernet(ethertype_of(tcp.src.ip()), tcp.vlans, &ip)
}

/// An Ethernet/IP/UDP frame around `payload`.
pub fn udp_frame(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp = udp_segment(src, dst, sport, dport, payload);
    ethernet(ethertype_of(src), &[], &ip_packet(src, dst, 17, &udp, false))
}

fn ethertype_of(ip: IpAddr) -> u16 {
    if ip.is_ipv4() { 0x0800 } else { 0x86dd }
}

fn ethernet(ethertype: u16, vlans: &[u16], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + 4 * vlans.len() + payload.len());
    out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
    for (i, vlan) in vlans.iter().enumerate() {
        let tpid: u16 = if i == 0 && vlans.len() > 1 { 0x88a8 } else { 0x8100 };
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8], extras: bool) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let options: &[u8] = if extras { &[0x01, 0x07, 0x07, 0x04, 0, 0, 0, 0] } else { &[] };
            let header_len = 20 + options.len();
            let total = (header_len + payload.len()).min(usize::from(u16::MAX)) as u16;
            let mut h = vec![0x40 | (header_len / 4) as u8, 0];
            h.extend_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(options);
            let sum = checksum(&h, 0);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            h.extend_from_slice(payload);
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ext: &[u8] = if extras { &[proto, 0, 0x01, 0x04, 0, 0, 0, 0] } else { &[] };
            let next = if extras { 0 } else { proto };
            let len = (ext.len() + payload.len()).min(usize::from(u16::MAX)) as u16;
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[next, 64]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(ext);
            h.extend_from_slice(payload);
            h
        }
        _ => panic!("mixed IP versions in one packet"),
    }
}

fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut bytes = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed IP versions in one packet"),
    }
    bytes.extend_from_slice(&[0, proto]);
    bytes.extend_from_slice(&(len as u32).to_be_bytes()[2..]);
    sum_words(&bytes)
}

fn udp_segment(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut out = Vec::with_capacity(usize::from(len));
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    if src.is_ipv6() {
        // IPv6 requires a UDP checksum; IPv4 tunnels send zero, as Linux VXLAN does.
        let sum = checksum(&out, pseudo_header_sum(src, dst, 17, out.len()));
        out[6..8].copy_from_slice(&if sum == 0 { 0xffff } else { sum }.to_be_bytes());
    }
    out
}

fn tcp_segment(t: &TcpSpec<'_>) -> Vec<u8> {
    // 20-byte header plus 12 bytes of options (NOP, NOP, timestamps), as Linux sends.
    let mut out = Vec::with_capacity(32 + t.payload.len());
    out.extend_from_slice(&t.src.port().to_be_bytes());
    out.extend_from_slice(&t.dst.port().to_be_bytes());
    out.extend_from_slice(&t.seq.to_be_bytes());
    out.extend_from_slice(&t.ack.to_be_bytes());
    out.extend_from_slice(&[8 << 4, t.flags, 0xff, 0xff, 0, 0, 0, 0]);
    out.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(t.payload);
    let sum = checksum(&out, pseudo_header_sum(t.src.ip(), t.dst.ip(), 6, out.len()));
    out[16..18].copy_from_slice(&sum.to_be_bytes());
    out
}

fn sum_words(bytes: &[u8]) -> u32 {
    bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial) + u64::from(sum_words(bytes));
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Splits an Ethernet/IPv4 frame into IP fragments carrying at most `size` payload bytes each (`size` a
/// multiple of 8), as a router on a path with a small MTU does.
pub fn fragment_ipv4(frame: &[u8], size: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let (eth, ip_header, payload) = (&frame[..14], &frame[14..14 + ihl], &frame[14 + ihl..]);
    payload
        .chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let mut h = ip_header.to_vec();
            let total = (ihl + chunk.len()) as u16;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            let more = if (i + 1) * size < payload.len() { 0x2000 } else { 0 };
            let word = more | ((i * size / 8) as u16);
            h[6..8].copy_from_slice(&word.to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum(&h, 0);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            [eth, &h, chunk].concat()
        })
        .collect()
}
