//! CIDR blocks, real client/server address resolution from trusted proxies' headers, and the
//! `hostname` of a copy. Pure functions: no I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use vxtap_http::Header;

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or a single address
/// (`127.0.0.1`, `::1`, meaning `/32` or `/128`).
///
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers) are
/// matched as the IPv4 address they carry, both as blocks and as addresses tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR block did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR block {input:?}: {reason}")]
pub struct CidrError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Cidr {
    /// The block `addr/prefix`; host bits of `addr` are cleared. `None` when `prefix` is longer than
    /// the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let (addr, prefix) = match addr {
            // An IPv4-mapped block (::ffff:10.0.0.0/104) is the IPv4 block it maps.
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (addr.to_canonical(), prefix - 96)
            }
            _ => (addr, prefix),
        };
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => IpAddr::V4(Ipv4Addr::from(mask32(u32::from(a), prefix))),
            IpAddr::V6(a) if prefix <= 128 => IpAddr::V6(Ipv6Addr::from(mask128(u128::from(a), prefix))),
            _ => return None,
        };
        Some(Cidr { addr, prefix })
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask32(u32::from(ip), self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask128(u128::from(ip), self.prefix) == u128::from(net),
            _ => false,
        }
    }

    /// Parses a comma-separated list (`10.0.0.0/8, 127.0.0.1,::1`); empty items are skipped.
    pub fn parse_list(list: &str) -> Result<Vec<Cidr>, CidrError> {
        list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect()
    }
}

/// Whether any block of `list` contains `ip`.
pub(crate) fn any_contains(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

fn mask32(v: u32, prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { v & (u32::MAX << (32 - u32::from(prefix))) }
}

fn mask128(v: u128, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { v & (u128::MAX << (128 - u32::from(prefix))) }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = |reason| CidrError { input: s.to_owned(), reason };
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| err("not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| err("prefix length out of range"))?
            }
            Some(_) => return Err(err("prefix length is not a number")),
        };
        if prefix > max {
            return Err(err("prefix length out of range"));
        }
        Cidr::new(ip, prefix).ok_or_else(|| err("prefix length out of range"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Client and server of a copy as resolved from the peer and its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub trusted: bool,
}

/// Resolves the original client and server of a copy.
///
/// From a peer outside `trusted`, nothing in the headers is believed: the client is `peer`, the
/// server `local`. From a trusted peer:
/// - client IP: the rightmost `X-Forwarded-For` address that is not itself in `trusted` (all lines
///   joined in order; if every address is trusted, the leftmost). Only when the copy carries no
///   usable `X-Forwarded-For`: the same walk over RFC 7239 `Forwarded: for=`, then `X-Real-IP`. When
///   none yields an address, the client is the peer (address and port).
/// - client port: `X-Forwarded-Port`, else the port written in the chosen forwarded element
///   (`1.2.3.4:5678`, `for="[2001:db8::1]:4711"`), else 0 (unknown).
/// - server: IP from `X-Server-Addr`, port from `X-Server-Port`, each falling back to `local`'s.
pub(crate) fn resolve(peer: SocketAddr, local: SocketAddr, headers: &[Header], trusted: &[Cidr]) -> Resolved {
    let peer = canonical(peer);
    let local = canonical(local);
    if !any_contains(trusted, peer.ip()) {
        return Resolved { client: peer, server: local, trusted: false };
    }
    let client = forwarded_client(headers, trusted).map_or(peer, |(ip, port)| {
        let port = header_port(headers, b"x-forwarded-port").or(port).unwrap_or(0);
        SocketAddr::new(ip.to_canonical(), port)
    });
    let server_ip = find_all(headers, b"x-server-addr")
        .next()
        .and_then(|v| parse_addr_element(v).map(|(ip, _)| ip.to_canonical()))
        .unwrap_or(local.ip());
    let server_port = header_port(headers, b"x-server-port").unwrap_or(local.port());
    Resolved { client, server: SocketAddr::new(server_ip, server_port), trusted: true }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The client from X-Forwarded-For, else Forwarded, else X-Real-IP: (ip, port written in the element).
fn forwarded_client(headers: &[Header], trusted: &[Cidr]) -> Option<(IpAddr, Option<u16>)> {
    let xff = find_all(headers, b"x-forwarded-for").flat_map(|v| v.split(|&b| b == b','));
    if let Some(found) = walk(xff, trusted) {
        return Some(found);
    }
    let fwd = find_all(headers, b"forwarded").flat_map(|v| v.split(|&b| b == b',')).map(forwarded_for);
    if let Some(found) = walk(fwd, trusted) {
        return Some(found);
    }
    find_all(headers, b"x-real-ip").next().and_then(parse_addr_element)
}

/// nginx `real_ip_recursive on`: from the right, skip trusted addresses; the first untrusted one is
/// the client; when all are trusted, the leftmost. An element that is not an address (`unknown`,
/// an obfuscated identifier, garbage) ends the walk: the header is not usable then, unless a trusted
/// address was already passed, which is then the answer (nginx's behaviour is to keep the address
/// it had).
fn walk<'a>(
    elements: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[Cidr],
) -> Option<(IpAddr, Option<u16>)> {
    let mut last = None;
    for el in elements.rev() {
        let el = el.trim_ascii();
        if el.is_empty() {
            continue;
        }
        let Some((ip, port)) = parse_addr_element(el) else {
            return last;
        };
        if !any_contains(trusted, ip) {
            return Some((ip, port));
        }
        last = Some((ip, port));
    }
    last
}

/// The `for=` value of one RFC 7239 `Forwarded` element (`for=1.2.3.4;proto=http`), unquoted; an
/// element without `for=` yields an empty slice (skipped).
fn forwarded_for(element: &[u8]) -> &[u8] {
    for pair in element.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        if pair.len() > 4 && pair[..4].eq_ignore_ascii_case(b"for=") {
            let v = pair[4..].trim_ascii();
            return v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
        }
    }
    b""
}

/// One address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, possibly quoted.
pub(crate) fn parse_addr_element(v: &[u8]) -> Option<(IpAddr, Option<u16>)> {
    let v = v.trim_ascii();
    let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
    let s = std::str::from_utf8(v).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip.to_canonical(), None));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip().to_canonical(), Some(sa.port())));
    }
    // `[v6]` without a port.
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(|ip| (IpAddr::V6(ip).to_canonical(), None))
}

fn header_port(headers: &[Header], name: &[u8]) -> Option<u16> {
    let v = find_all(headers, name).next()?;
    // A list (`443, 80`) as some chains append: the first element is what the outermost proxy saw.
    let first = v.split(|&b| b == b',').next()?.trim_ascii();
    if first.is_empty() || first.len() > 5 || !first.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(first).ok()?.parse().ok()
}

pub(crate) fn find_all<'h>(
    headers: &'h [Header],
    name: &'h [u8],
) -> impl DoubleEndedIterator<Item = &'h [u8]> {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
}

/// The `hostname` of a copy: the first `Host` header (for HTTP/2 copies, `:authority` presented as
/// `Host`), else the authority of an absolute-form target, without the port and without a trailing
/// `-shadow` (any case) that Envoy, Istio before 1.28 and Google Cloud add to mirrored copies. IPv6
/// literals keep their brackets. Empty when there is no host at all.
pub fn mirror_hostname(headers: &[Header], target: &[u8]) -> Vec<u8> {
    let host = find_all(headers, b"host").next().or_else(|| absolute_authority(target)).unwrap_or(b"");
    let host = vxtap_http::host_without_port(host);
    let host = match host.len().checked_sub(7) {
        Some(cut) if cut > 0 && host[cut..].eq_ignore_ascii_case(b"-shadow") => &host[..cut],
        _ => host,
    };
    host.to_vec()
}

fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let sep = memchr::memmem::find(target, b"://")?;
    let rest = &target[sep + 3..];
    let end = rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Drop userinfo.
    Some(match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header { name: name.as_bytes().to_vec(), value: value.as_bytes().to_vec() }
    }

    fn cidrs(s: &str) -> Vec<Cidr> {
        Cidr::parse_list(s).unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(host.prefix(), 32);
        assert!(host.contains("127.0.0.1".parse().unwrap()) && !host.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains("fe80::1".parse().unwrap()));
        let mapped: Cidr = "::ffff:192.168.0.0/112".parse().unwrap();
        assert_eq!(mapped.to_string(), "192.168.0.0/16");
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/", "10.0.0.0/-1", "1.2.3.4/08a"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(cidrs(" 10.0.0.0/8, ,::1 ").len(), 2);
        assert!(Cidr::parse_list("10.0.0.0/8,nope").is_err());
    }

    #[test]
    fn untrusted_peer_headers_are_never_believed() {
        let hs = [
            h("X-Forwarded-For", "1.2.3.4"),
            h("X-Forwarded-Port", "1234"),
            h("X-Server-Addr", "5.6.7.8"),
            h("X-Server-Port", "443"),
            h("Forwarded", "for=9.9.9.9"),
            h("X-Real-IP", "8.8.8.8"),
        ];
        let r = resolve(sa("192.0.2.1:40000"), sa("192.0.2.9:8445"), &hs, &cidrs("10.0.0.0/8"));
        assert_eq!(
            r,
            Resolved { client: sa("192.0.2.1:40000"), server: sa("192.0.2.9:8445"), trusted: false }
        );
        // No trusted proxies at all: same.
        let r = resolve(sa("10.0.0.1:40000"), sa("10.0.0.9:8445"), &hs, &[]);
        assert!(!r.trusted);
        assert_eq!(r.client, sa("10.0.0.1:40000"));
    }

    #[test]
    fn trusted_peer_reference_nginx_headers() {
        let hs = [
            h("X-SERVER-PORT", "80"),
            h("X-SERVER-ADDR", "10.77.1.1"),
            h("HOST", "shop.example"),
            h("X-Forwarded-For", "198.51.100.7"),
            h("X-Forwarded-Port", "51234"),
        ];
        let r = resolve(sa("10.0.0.5:33000"), sa("10.0.0.9:8445"), &hs, &cidrs("10.0.0.0/24"));
        assert!(r.trusted);
        assert_eq!(r.client, sa("198.51.100.7:51234"));
        assert_eq!(r.server, sa("10.77.1.1:80"));
    }

    #[test]
    fn rightmost_untrusted_xff_wins() {
        let trusted = cidrs("10.0.0.0/8,192.0.2.10");
        // Client spoofs 6.6.6.6; the edge appended the real client 203.0.113.5; an inner proxy 10.1.1.1.
        let hs = [h("X-Forwarded-For", "6.6.6.6, 203.0.113.5"), h("x-forwarded-for", "10.1.1.1")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("203.0.113.5:0"));
        // All trusted: the leftmost.
        let hs = [h("X-Forwarded-For", "10.2.2.2, 192.0.2.10")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client.ip(), "10.2.2.2".parse::<IpAddr>().unwrap());
        // Garbage ends the walk; with nothing passed, the header is unusable → Forwarded / X-Real-IP / peer.
        let hs = [h("X-Forwarded-For", "nonsense"), h("X-Real-IP", "203.0.113.9")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("203.0.113.9:0"));
        let hs = [h("X-Forwarded-For", "unknown")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("10.0.0.5:1"));
        // Ports and IPv6 forms in elements.
        let hs = [h("X-Forwarded-For", "[2001:db8::7]:4711, 10.0.0.1:999")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("[2001:db8::7]:4711"));
        let hs = [h("X-Forwarded-For", "2001:db8::8"), h("X-Forwarded-Port", "5555")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("[2001:db8::8]:5555"));
        let hs = [h("X-Forwarded-For", "::ffff:203.0.113.1")];
        let r = resolve(sa("[::ffff:10.0.0.5]:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert!(r.trusted);
        assert_eq!(r.client, sa("203.0.113.1:0"));
    }

    #[test]
    fn forwarded_and_x_real_ip_when_no_xff() {
        let trusted = cidrs("10.0.0.0/8");
        let hs =
            [h("Forwarded", "for=198.51.100.1;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("[2001:db8:cafe::17]:4711"));
        let hs = [h("Forwarded", "for=198.51.100.1, for=10.3.3.3")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("198.51.100.1:0"));
        let hs = [h("Forwarded", "for=_hidden, for=10.3.3.3")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("10.3.3.3:0"));
        // XFF takes precedence over Forwarded and X-Real-IP.
        let hs = [h("X-Real-IP", "1.1.1.1"), h("Forwarded", "for=2.2.2.2"), h("X-Forwarded-For", "3.3.3.3")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("3.3.3.3:0"));
        let hs = [h("X-Real-IP", "1.1.1.1")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("1.1.1.1:0"));
        // No forwarding header: the peer, port included; bad server headers fall back to local.
        let hs = [h("X-Server-Addr", "not-an-ip"), h("X-Server-Port", "99999"), h("X-Forwarded-Port", "7")];
        let r = resolve(sa("10.0.0.5:1"), sa("10.0.0.9:8445"), &hs, &trusted);
        assert_eq!(r.client, sa("10.0.0.5:1"));
        assert_eq!(r.server, sa("10.0.0.9:8445"));
        assert!(r.trusted);
    }

    #[test]
    fn hostname_drops_port_and_shadow() {
        let host = |v: &str| mirror_hostname(&[h("Host", v)], b"/");
        assert_eq!(host("shop.example-shadow:8080"), b"shop.example");
        assert_eq!(host("shop.example-SHADOW"), b"shop.example");
        assert_eq!(host("shop.example:443"), b"shop.example");
        assert_eq!(host("shop.example"), b"shop.example");
        assert_eq!(host("[2001:db8::1]:8080"), b"[2001:db8::1]");
        assert_eq!(host("-shadow"), b"-shadow");
        assert_eq!(host("a-shadow-shadow"), b"a-shadow");
        assert_eq!(mirror_hostname(&[], b"http://user@api.example-shadow:81/x?y"), b"api.example");
        assert_eq!(mirror_hostname(&[], b"/x"), b"");
        let two = [h("host", "first.example"), h("Host", "second.example")];
        assert_eq!(mirror_hostname(&two, b"/"), b"first.example");
    }
}
