//! Independent decoding of generated frames and HTTP streams, for the crate's own tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

/// A decoded inner TCP segment; `payload` is what the frame actually holds (after any truncation).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

fn be16(b: &[u8], i: usize) -> usize {
    usize::from(u16::from_be_bytes([b[i], b[i + 1]]))
}

/// Decodes an outer frame (plain, VXLAN or GENEVE+VXLAN) down to the inner TCP segment.
pub fn decode(frame: &[u8]) -> Option<Decoded> {
    let (_, proto, l4) = ip_layer(frame)?;
    if proto == 17 {
        let dport = be16(l4, 2);
        let payload = l4.get(8..)?;
        return match dport {
            4789 => decode_inner(payload.get(8..)?),
            6081 => {
                let opt_len = usize::from(payload[0] & 0x3f) * 4;
                let mid = payload.get(8 + opt_len..)?;
                // GENEVE carries IPv4 directly (protocol type 0x0800): make it look like Ethernet.
                let mut eth = vec![0u8; 12];
                eth.extend_from_slice(&[0x08, 0x00]);
                eth.extend_from_slice(mid);
                decode(&eth)
            }
            _ => None,
        };
    }
    decode_inner(frame)
}

fn decode_inner(eth: &[u8]) -> Option<Decoded> {
    let (ip, proto, l4) = ip_layer(eth)?;
    if proto != 6 {
        return None;
    }
    let (src_ip, dst_ip) = ip;
    let off = usize::from(l4[12] >> 4) * 4;
    Some(Decoded {
        src: SocketAddr::new(src_ip, be16(l4, 0) as u16),
        dst: SocketAddr::new(dst_ip, be16(l4, 2) as u16),
        seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
        flags: l4[13],
        payload: l4.get(off..).unwrap_or(&[]).to_vec(),
    })
}

/// Skips Ethernet and VLAN tags, parses IP; returns addresses, protocol and the layer-4 bytes.
fn ip_layer(eth: &[u8]) -> Option<((IpAddr, IpAddr), u8, &[u8])> {
    let mut at = 12;
    let mut et = be16(eth, at);
    while et == 0x8100 || et == 0x88a8 {
        at += 4;
        et = be16(eth, at);
    }
    let ip = eth.get(at + 2..)?;
    match et {
        0x0800 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            Some(((src.into(), dst.into()), ip[9], ip.get(ihl..)?))
        }
        0x86dd => {
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
            let (mut next, mut rest) = (ip[6], ip.get(40..)?);
            if next == 0 {
                next = rest[0];
                rest = rest.get((usize::from(rest[1]) + 1) * 8..)?;
            }
            Some(((src.into(), dst.into()), next, rest))
        }
        _ => None,
    }
}

/// A request parsed from a client stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub raw: Range<usize>,
    pub method: String,
    pub target: Vec<u8>,
    pub version: String,
    pub host: Option<String>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses consecutive HTTP/1.x requests from `stream` (panics on malformed input).
pub fn parse_requests(stream: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let start = at;
        let head_end = at + find(&stream[at..], b"\r\n\r\n").expect("end of head") + 4;
        let head = &stream[at..head_end - 4];
        let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let line = lines.next().unwrap();
        let sp1 = line.iter().position(|&b| b == b' ').unwrap();
        let sp2 = line.iter().rposition(|&b| b == b' ').unwrap();
        let (mut host, mut len, mut chunked) = (None, 0usize, false);
        for l in lines {
            let colon = l.iter().position(|&b| b == b':').unwrap();
            let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
            let value = String::from_utf8_lossy(&l[colon + 1..]).trim().to_string();
            match name.as_str() {
                "host" => host = Some(value),
                "content-length" => len = value.parse().unwrap(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        at = head_end;
        let mut body = Vec::new();
        if chunked {
            loop {
                let eol = at + find(&stream[at..], b"\r\n").unwrap();
                let size_txt = String::from_utf8_lossy(&stream[at..eol]).to_string();
                let size = usize::from_str_radix(size_txt.split(';').next().unwrap(), 16).unwrap();
                at = eol + 2;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let eol = at + find(&stream[at..], b"\r\n").unwrap();
                        let empty = eol == at;
                        at = eol + 2;
                        if empty {
                            break;
                        }
                    }
                    break;
                }
                body.extend_from_slice(&stream[at..at + size]);
                assert_eq!(&stream[at + size..at + size + 2], b"\r\n");
                at += size + 2;
            }
        } else {
            body.extend_from_slice(&stream[at..at + len]);
            at += len;
        }
        out.push(Parsed {
            raw: start..at,
            method: String::from_utf8(line[..sp1].to_vec()).unwrap(),
            target: line[sp1 + 1..sp2].to_vec(),
            version: String::from_utf8(line[sp2 + 1..].to_vec()).unwrap(),
            host,
            body,
            chunked,
        });
    }
    out
}
