//! A minimal JSON writer for events: byte strings that are not UTF-8 are written byte by byte as
//! `\u00XX` escapes (the contract's rule), which serde_json cannot do for `&[u8]`.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Room for the longest event key with its quotes and colon.
const KEY_ROOM: usize = 48;

/// Appends JSON to a byte buffer. The caller writes keys and values in order; commas are automatic.
pub(crate) struct Json<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next member of the current object or array needs a leading comma.
    need_comma: bool,
}

impl<'a> Json<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Json { out, need_comma: false }
    }

    fn sep(&mut self) {
        if self.need_comma {
            self.out.push(b',');
        }
        self.need_comma = true;
    }

    pub(crate) fn open(&mut self) {
        self.out.push(b'{');
        self.need_comma = false;
    }

    pub(crate) fn close(&mut self) {
        self.out.push(b'}');
        self.need_comma = true;
    }

    pub(crate) fn open_array(&mut self) {
        self.out.push(b'[');
        self.need_comma = false;
    }

    pub(crate) fn close_array(&mut self) {
        self.out.push(b']');
        self.need_comma = true;
    }

    /// Writes `"key":` and leaves the writer ready for the value. Keys are the event format's own
    /// names, plain ASCII, so they are copied without escaping (a third of an event's strings).
    /// The key's length is a constant, so `"key":` is put together on the stack in a few moves and
    /// appended with one capacity check (three appends showed in the profile).
    pub(crate) fn key<const N: usize>(&mut self, key: &[u8; N]) {
        debug_assert_eq!(plain_run_end(key, 0), N, "key needs escaping: {key:?}");
        const { assert!(N + 3 <= KEY_ROOM, "key too long") };
        self.sep();
        let mut quoted = [b'"'; KEY_ROOM];
        quoted[1..=N].copy_from_slice(key);
        quoted[N + 2] = b':';
        self.out.extend_from_slice(&quoted[..N + 3]);
        self.need_comma = false;
    }

    /// Starts an array element or nested object inside an array.
    pub(crate) fn element(&mut self) {
        self.sep();
        self.need_comma = false;
    }

    pub(crate) fn str<const N: usize>(&mut self, key: &[u8; N], value: &[u8]) {
        self.key(key);
        write_string(self.out, value);
        self.need_comma = true;
    }

    pub(crate) fn num<const N: usize>(&mut self, key: &[u8; N], value: u64) {
        self.key(key);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self.need_comma = true;
    }

    pub(crate) fn bool<const N: usize>(&mut self, key: &[u8; N], value: bool) {
        self.key(key);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
        self.need_comma = true;
    }

    pub(crate) fn base64<const N: usize>(&mut self, key: &[u8; N], value: &[u8]) {
        self.key(key);
        self.out.push(b'"');
        // SIMD base64: bodies are most of an event's bytes (measured 4% of a no-detect run scalar),
        // encoded straight into the spare capacity (zero-filling it first cost 2.5% of a run).
        base64_simd::STANDARD.encode_append(value, self.out);
        self.out.push(b'"');
        self.need_comma = true;
    }

    /// Writes an IP address as text (the same text as `Display`), without allocating: addresses are
    /// in every event, and `to_string` showed in the profile.
    pub(crate) fn ip<const N: usize>(&mut self, key: &[u8; N], ip: IpAddr) {
        self.key(key);
        self.out.push(b'"');
        match ip {
            IpAddr::V4(v4) => write_ipv4(self.out, v4),
            IpAddr::V6(v6) => write_ipv6(self.out, v6),
        }
        self.out.push(b'"');
        self.need_comma = true;
    }

    /// Writes a value with `write` (after [`Json::key`]), for values this writer has no method for.
    pub(crate) fn raw(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(self.out);
        self.need_comma = true;
    }

    /// Writes a bare string as an array element.
    pub(crate) fn str_element(&mut self, value: &[u8]) {
        self.sep();
        write_string(self.out, value);
    }
}

/// Dotted-quad text, put together on the stack and appended with one capacity check: an event has up
/// to four addresses, and appending each octet and dot on its own showed in the profile.
fn write_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    out.extend_from_slice(&text[..len]);
}

/// RFC 5952 text, as `Ipv6Addr`'s `Display` writes it: lower-case hex groups, the longest run of two
/// or more zero groups (the first of equal runs) as `::`, IPv4-mapped addresses as `::ffff:a.b.c.d`.
fn write_ipv6(out: &mut Vec<u8>, ip: Ipv6Addr) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        return write_ipv4(out, v4);
    }
    let groups = ip.segments();
    let (mut best_start, mut best_len, mut run_start, mut run_len) = (0, 0, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best_start, best_len) = (run_start, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    let write_groups = |out: &mut Vec<u8>, groups: &[u16]| {
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            write_hex_group(out, g);
        }
    };
    if best_len > 1 {
        write_groups(out, &groups[..best_start]);
        out.extend_from_slice(b"::");
        write_groups(out, &groups[best_start + best_len..]);
    } else {
        write_groups(out, &groups);
    }
}

fn write_hex_group(out: &mut Vec<u8>, group: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (4 - group.leading_zeros() as usize / 4).max(1);
    for shift in (0..digits).rev() {
        out.push(HEX[usize::from(group >> (shift * 4)) & 0xf]);
    }
}

/// Bytes that JSON strings carry as they are: printable ASCII except `"` and `\`.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table
};

/// The end of the run of [`PLAIN`] bytes that starts at `i`: sixteen bytes at a time while none of
/// them is a control byte, `"`, `\\`, DEL or non-ASCII (most of a header or a URL), then byte by byte.
fn plain_run_end(bytes: &[u8], mut i: usize) -> usize {
    // Without branches, so that the compiler makes it a few vector compares (SSE2 on x86-64).
    let needs_care = |chunk: &[u8; 16]| {
        chunk.iter().fold(false, |any, &b| any | (b.wrapping_sub(0x20) >= 0x5f) | (b == b'"') | (b == b'\\'))
    };
    while let Some(chunk) = bytes.get(i..).and_then(|rest| rest.first_chunk::<16>()) {
        if needs_care(chunk) {
            break;
        }
        i += 16;
    }
    while i < bytes.len() && PLAIN[usize::from(bytes[i])] {
        i += 1;
    }
    i
}

/// Writes `bytes` as a JSON string: valid UTF-8 as is (escaped as JSON requires), every byte of an
/// invalid sequence as `\u00XX`. Runs of plain ASCII are copied whole.
pub(crate) fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        i = plain_run_end(bytes, i);
        out.extend_from_slice(&bytes[start..i]);
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x80.. => {
                let len = match b {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf4 => 4,
                    _ => 0,
                };
                let sequence = bytes.get(i..i + len).filter(|s| len > 0 && std::str::from_utf8(s).is_ok());
                if let Some(sequence) = sequence {
                    out.extend_from_slice(sequence);
                    i += len;
                    continue;
                }
                escape_byte(out, b);
            }
            _ => escape_byte(out, b),
        }
        i += 1;
    }
    out.push(b'"');
}

fn escape_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u00");
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0xf)]);
}

/// Formats microseconds since the Unix epoch as Suricata does: `2026-11-24T10:00:00.123456+0000`.
/// The date and time of day are the same for every event of a second (nearly all of a worker's
/// consecutive events), so each thread keeps the text of its latest second.
pub(crate) fn timestamp(out: &mut Vec<u8>, micros: u64) {
    thread_local! {
        static LATEST_SECOND: RefCell<(Option<u64>, Vec<u8>)> = const { RefCell::new((None, Vec::new())) };
    }
    let secs = micros / 1_000_000;
    LATEST_SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != Some(secs) {
            text.clear();
            date_and_time(text, secs);
            *cached = Some(secs);
        }
        out.extend_from_slice(text);
    });
    write_padded(out, micros % 1_000_000, 6);
    out.extend_from_slice(b"+0000");
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` since the Unix epoch: a timestamp up to its microseconds.
fn date_and_time(out: &mut Vec<u8>, secs: u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let fields = [
        (year as u64, 4, b'-'),
        (u64::from(month), 2, b'-'),
        (u64::from(day), 2, b'T'),
        (rem / 3600, 2, b':'),
        (rem % 3600 / 60, 2, b':'),
        (rem % 60, 2, b'.'),
    ];
    for (value, width, separator) in fields {
        write_padded(out, value, width);
        out.push(separator);
    }
}

/// `value` in decimal, zero-padded to at least `width` digits.
fn write_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let start = out.len();
    let digits = value.checked_ilog10().map_or(1, |d| d as usize + 1);
    out.resize(start + width.max(digits), b'0');
    let mut rest = value;
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_json_and_invalid_bytes() {
        let mut out = Vec::new();
        write_string(&mut out, b"a\"b\\c\n\x01\xff\xc3\xa9/\xe2\x82");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\n\u0001\u00ffé/\u00e2\u0082""#);
    }

    /// The reference: valid UTF-8 runs as they are, invalid bytes escaped one by one.
    fn reference(bytes: &[u8]) -> String {
        let mut s = String::new();
        for chunk in bytes.utf8_chunks() {
            s.push_str(chunk.valid());
            s.extend(chunk.invalid().iter().map(|&b| char::from(b)));
        }
        s
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip_to_the_reference(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            write_string(&mut out, &bytes);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert_eq!(parsed, reference(&bytes));
        }
    }

    #[test]
    fn strings_match_the_per_chunk_definition_for_any_bytes() {
        let samples: [&[u8]; 6] = [
            b"plain ascii",
            b"\xf0\x9f\x98\x80 emoji \xed\xa0\x80 surrogate \xc0\xaf overlong",
            b"\xe2\x82",
            b"\xf4\x90\x80\x80 above U+10FFFF",
            b"ctl \x00\x1f\x7f \"q\" \\",
            b"\xc3",
        ];
        for bytes in samples {
            let mut out = Vec::new();
            write_string(&mut out, bytes);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed, reference(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn every_special_byte_is_seen_at_every_position_of_a_long_plain_run() {
        for special in (0u8..0x20).chain([b'"', b'\\', 0x7f, 0x80, 0xc3, 0xff]) {
            for pos in 0..40 {
                let mut bytes = b"GET /plain/ascii/path?with=a&long=query-string".to_vec();
                bytes[pos] = special;
                let mut out = Vec::new();
                write_string(&mut out, &bytes);
                let parsed: String = serde_json::from_slice(&out).unwrap();
                assert_eq!(parsed, reference(&bytes), "{special:#x} at {pos}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn long_mostly_plain_strings_round_trip(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![8 => 0x20u8..0x7f, 1 => proptest::prelude::any::<u8>()], 0..300)
        ) {
            let mut out = Vec::new();
            write_string(&mut out, &bytes);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert_eq!(parsed, reference(&bytes));
        }
    }

    #[test]
    fn output_parses_as_json() {
        let mut out = Vec::new();
        let mut j = Json::new(&mut out);
        j.open();
        j.str(b"s", b"x\xfe");
        j.num(b"n", 42);
        j.key(b"list");
        j.open_array();
        j.element();
        j.open();
        j.bool(b"b", true);
        j.close();
        j.str_element(b"e");
        j.close_array();
        j.base64(b"b64", b"hello");
        j.close();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["s"], "x\u{fe}");
        assert_eq!(v["list"][0]["b"], true);
        assert_eq!(v["list"][1], "e");
        assert_eq!(v["b64"], "aGVsbG8=");
    }

    fn ip_text(ip: IpAddr) -> String {
        let mut out = Vec::new();
        let mut j = Json::new(&mut out);
        j.open();
        j.ip(b"ip", ip);
        j.close();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["ip"].as_str().unwrap().to_owned()
    }

    #[test]
    fn ip_text_matches_display_on_edge_cases() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.210.85",
            "::",
            "::1",
            "1::",
            "fd00::1:2348:0:d123:2",
            "1:0:0:2:0:0:0:3",
            "1:0:0:2:0:0:3:4",
            "0:1:0:1:0:1:0:1",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "2001:db8:0:0:1:0:0:1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "64:ff9b::c000:221",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string(), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn ip_text_matches_display(
            groups in proptest::array::uniform8(proptest::prop_oneof![3 => proptest::strategy::Just(0u16), 1 => 1u16..16, 1 => proptest::prelude::any::<u16>()]),
            v4 in proptest::prelude::any::<u32>(),
        ) {
            let v6 = IpAddr::from(Ipv6Addr::from(groups));
            proptest::prop_assert_eq!(ip_text(v6), v6.to_string());
            let v4 = IpAddr::from(Ipv4Addr::from(v4));
            proptest::prop_assert_eq!(ip_text(v4), v4.to_string());
        }
    }

    #[test]
    fn timestamps_match_suricata_format() {
        let mut out = Vec::new();
        timestamp(&mut out, 1_795_514_400_123_456);
        assert_eq!(String::from_utf8(out).unwrap(), "2026-11-24T10:00:00.123456+0000");
        let mut out = Vec::new();
        timestamp(&mut out, 951_782_400_000_000);
        assert_eq!(String::from_utf8(out).unwrap(), "2000-02-29T00:00:00.000000+0000");
        let mut out = Vec::new();
        timestamp(&mut out, 253_402_300_800_000_001);
        assert_eq!(String::from_utf8(out).unwrap(), "10000-01-01T00:00:00.000001+0000");
        // the same second again (from the thread's cache), then the second before it
        let mut out = Vec::new();
        timestamp(&mut out, 253_402_300_800_999_999);
        timestamp(&mut out, 253_402_300_799_000_000);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "10000-01-01T00:00:00.999999+00009999-12-31T23:59:59.000000+0000"
        );
    }
}
