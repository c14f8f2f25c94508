//! PROXY protocol v1 (text) and v2 (binary) headers, which a load balancer (AWS NLB/ELB, HAProxy)
//! puts at the start of a connection to say who the real client was.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 line is at most 107 bytes with its CRLF.
const V1_MAX: usize = 107;
/// Largest v2 header vxtap accepts (16 bytes plus addresses and TLVs).
pub(crate) const V2_MAX: usize = 16 + 1024;

/// The addresses a PROXY protocol header carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// The real client.
    pub source: SocketAddr,
    /// The address the client connected to (the load balancer's listener).
    pub destination: SocketAddr,
}

/// What the first bytes of a stream say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Too few bytes to tell.
    NeedMore,
    /// Not a PROXY header.
    Absent,
    /// A header of `len` bytes; `None` when it carries no addresses (v1 UNKNOWN, v2 LOCAL or a
    /// non-TCP family).
    Header(Option<ProxyHeader>, usize),
    /// Looks like a PROXY header but is not a valid one.
    Malformed,
}

/// Examines the start of a stream.
pub(crate) fn probe(buf: &[u8]) -> Probe {
    let v1 = &V1_PREFIX[..buf.len().min(V1_PREFIX.len())];
    let v2 = &V2_SIGNATURE[..buf.len().min(V2_SIGNATURE.len())];
    if buf.starts_with(v1) {
        if buf.len() < V1_PREFIX.len() {
            return Probe::NeedMore;
        }
        return probe_v1(buf);
    }
    if buf.starts_with(v2) {
        if buf.len() < 16 {
            return Probe::NeedMore;
        }
        return probe_v2(buf);
    }
    Probe::Absent
}

fn probe_v1(buf: &[u8]) -> Probe {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX { Probe::Malformed } else { Probe::NeedMore };
    };
    if end + 2 > V1_MAX {
        return Probe::Malformed;
    }
    let Ok(line) = std::str::from_utf8(&buf[V1_PREFIX.len()..end]) else { return Probe::Malformed };
    let fields: Vec<&str> = line.split(' ').collect();
    let parsed = match fields.as_slice() {
        ["UNKNOWN", ..] => return Probe::Header(None, end + 2),
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| s.parse::<IpAddr>().ok().filter(|ip| ip.is_ipv4() == (*proto == "TCP4"));
            let port = |s: &str| s.parse::<u16>().ok().filter(|_| !s.starts_with('0') || s == "0");
            match (ip(src), ip(dst), port(sport), port(dport)) {
                (Some(s), Some(d), Some(sp), Some(dp)) => {
                    Some(ProxyHeader { source: SocketAddr::new(s, sp), destination: SocketAddr::new(d, dp) })
                }
                _ => None,
            }
        }
        _ => None,
    };
    match parsed {
        Some(header) => Probe::Header(Some(header), end + 2),
        None => Probe::Malformed,
    }
}

fn probe_v2(buf: &[u8]) -> Probe {
    let (ver_cmd, family) = (buf[12], buf[13]);
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 || len > V2_MAX {
        return Probe::Malformed;
    }
    if buf.len() < len {
        return Probe::NeedMore;
    }
    if ver_cmd & 0x0f == 0 {
        return Probe::Header(None, len);
    }
    let a = &buf[16..len];
    let header = match family {
        0x11 if a.len() >= 12 => {
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some(ProxyHeader {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        0x21 if a.len() >= 36 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some(ProxyHeader {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        0x11 | 0x21 => return Probe::Malformed,
        _ => None,
    };
    Probe::Header(header, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET";
        let want = ProxyHeader { source: addr("192.0.2.7:56324"), destination: addr("10.0.0.1:443") };
        assert_eq!(probe(line), Probe::Header(Some(want), line.len() - 3));
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 80\r\n";
        assert!(matches!(probe(line), Probe::Header(Some(h), 41) if h.source == addr("[2001:db8::1]:1")));
        assert_eq!(probe(b"PROXY UNKNOWN\r\n"), Probe::Header(None, 15));
        assert_eq!(probe(b"PROXY TCP4 1.2.3.4"), Probe::NeedMore);
        assert_eq!(probe(b"PROX"), Probe::NeedMore);
        assert_eq!(probe(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"), Probe::Malformed);
        assert_eq!(probe(b"PROXY TCP4 ::1 5.6.7.8 1 1\r\n"), Probe::Malformed);
        assert_eq!(probe(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'x'].repeat(20)), Probe::Malformed);
        assert_eq!(probe(b"GET / HTTP/1.1\r\n"), Probe::Absent);
        assert_eq!(probe(b"PUT / HTTP/1.1\r\n"), Probe::Absent);
    }

    #[test]
    fn v2_tcp4_tcp6_local() {
        let mut v4 = V2_SIGNATURE.to_vec();
        v4.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 10, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb]);
        v4.extend_from_slice(b"GET");
        let want = ProxyHeader { source: addr("192.0.2.7:56324"), destination: addr("10.0.0.1:443") };
        assert_eq!(probe(&v4), Probe::Header(Some(want), 28));
        assert_eq!(probe(&v4[..20]), Probe::NeedMore);
        assert_eq!(probe(&v4[..5]), Probe::NeedMore);
        let mut v6 = V2_SIGNATURE.to_vec();
        v6.extend_from_slice(&[0x21, 0x21, 0, 36]);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(4));
        v6.extend_from_slice(&[0; 16]);
        v6.extend_from_slice(&[0, 80, 0, 81]);
        assert!(matches!(probe(&v6), Probe::Header(Some(h), 52) if h.source.port() == 80));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(probe(&local), Probe::Header(None, 16));
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0, 12]);
        assert_eq!(probe(&bad), Probe::Malformed);
    }
}
