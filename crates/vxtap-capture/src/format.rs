//! pcap and pcapng framing without I/O: bytes in, records (as offsets into those bytes) out.
//!
//! [`Parser::next`] looks at the front of the bytes it is given and says what is there: a record, a
//! block with nothing to deliver, or how many bytes it needs first. The file layer
//! ([`crate::PcapFile`]) owns the buffer and the reads, so records are handed on without a copy.
//! Limits follow libpcap's: a record holds at most [`MAX_RECORD`] captured bytes, a pcapng block
//! at most [`MAX_BLOCK`] bytes, a section at most [`MAX_INTERFACES`] interfaces; anything beyond is a
//! corrupt file, not a reason to allocate.

use std::ops::Range;

/// The most captured bytes one record may hold (libpcap's maximum snapshot length).
pub(crate) const MAX_RECORD: usize = 262_144;
/// The largest pcapng block accepted (libpcap's bound).
pub(crate) const MAX_BLOCK: usize = 16 << 20;
/// The most interfaces one pcapng section may describe.
pub(crate) const MAX_INTERFACES: usize = 1 << 16;

const PCAP_HEADER: usize = 24;
const PCAP_RECORD_HEADER: usize = 16;
const NG_SECTION: u32 = 0x0a0d_0d0a;
const NG_BYTE_ORDER: u32 = 0x1a2b_3c4d;
const NG_INTERFACE: u32 = 1;
const NG_OBSOLETE_PACKET: u32 = 2;
const NG_SIMPLE_PACKET: u32 = 3;
const NG_ENHANCED_PACKET: u32 = 6;

/// What the front of the given bytes holds. Ranges and counts are relative to those bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A captured frame; `used` bytes (header, data, padding) are consumed.
    Record { ts_micros: u64, data: Range<usize>, orig_len: u32, used: usize },
    /// Something with nothing to deliver (statistics, names, an interface description).
    Skip { used: usize },
    /// At least `total` bytes must be at the front before anything can be said.
    NeedMore { total: usize },
}

/// Why the bytes are not a readable capture; the file layer adds the file name.
pub(crate) type FormatError = String;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(v),
            Endian::Big => u16::from_be_bytes(v),
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(v),
            Endian::Big => u32::from_be_bytes(v),
        }
    }

    fn u64_hi_lo(self, b: &[u8], at: usize) -> u64 {
        u64::from(self.u32(b, at)) << 32 | u64::from(self.u32(b, at + 4))
    }

    fn i64(self, b: [u8; 8]) -> i64 {
        match self {
            Endian::Little => i64::from_le_bytes(b),
            Endian::Big => i64::from_be_bytes(b),
        }
    }
}

/// One pcapng interface: how its timestamps count and how much of a frame it keeps.
#[derive(Clone, Copy, Debug)]
struct Interface {
    /// Timestamp units per second (10^n or 2^n).
    units: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset: i64,
    snaplen: u32,
}

/// A capture file's framing state.
#[derive(Debug)]
pub(crate) struct Parser(Format);

#[derive(Debug)]
enum Format {
    /// Classic pcap: one header, then records.
    Pcap { endian: Endian, nanos: bool, link: u32 },
    /// pcapng: sections of blocks; `link` is the first interface's link type once one was seen.
    Pcapng(Pcapng),
}

#[derive(Debug)]
struct Pcapng {
    endian: Endian,
    interfaces: Vec<Interface>,
    link: Option<u32>,
}

impl Parser {
    /// Recognises the file from its first bytes: the parser and the bytes its header used, or
    /// `Ok(None)` when more bytes are needed (see [`Parser::HEADER_BYTES`]).
    pub(crate) fn start(bytes: &[u8]) -> Result<Option<(Parser, usize)>, FormatError> {
        let Some(magic) = bytes.first_chunk::<4>() else { return Ok(None) };
        if u32::from_le_bytes(*magic) == NG_SECTION {
            // The section header block is read by `next` like any later one.
            let ng = Pcapng { endian: Endian::Little, interfaces: Vec::new(), link: None };
            return Ok(Some((Parser(Format::Pcapng(ng)), 0)));
        }
        let (endian, nanos) = match u32::from_le_bytes(*magic) {
            0xa1b2_c3d4 => (Endian::Little, false),
            0xd4c3_b2a1 => (Endian::Big, false),
            0xa1b2_3c4d => (Endian::Little, true),
            0x4d3c_b2a1 => (Endian::Big, true),
            other => return Err(format!("not a pcap or pcapng file (magic number {other:#010x})")),
        };
        if bytes.len() < PCAP_HEADER {
            return Ok(None);
        }
        let (major, minor) = (endian.u16(bytes, 4), endian.u16(bytes, 6));
        if major != 2 {
            return Err(format!("unsupported pcap format version {major}.{minor}"));
        }
        // The upper bits carry FCS information, not the link type.
        let link = endian.u32(bytes, 20) & 0x03ff_ffff;
        Ok(Some((Parser(Format::Pcap { endian, nanos, link }), PCAP_HEADER)))
    }

    /// The most bytes [`Parser::start`] may need.
    pub(crate) const HEADER_BYTES: usize = PCAP_HEADER;

    /// The file's link type: from the pcap header, or from the first pcapng interface.
    pub(crate) fn link(&self) -> Option<u32> {
        match &self.0 {
            Format::Pcap { link, .. } => Some(*link),
            Format::Pcapng(ng) => ng.link,
        }
    }

    /// What the front of `bytes` holds.
    pub(crate) fn next(&mut self, bytes: &[u8]) -> Result<Step, FormatError> {
        match &mut self.0 {
            Format::Pcap { endian, nanos, .. } => pcap_record(*endian, *nanos, bytes),
            Format::Pcapng(ng) => ng.block(bytes),
        }
    }
}

impl Pcapng {
    fn block(&mut self, bytes: &[u8]) -> Result<Step, FormatError> {
        let Pcapng { endian, interfaces, link } = self;
        if bytes.len() < 8 {
            return Ok(Step::NeedMore { total: 8 });
        }
        let kind = endian.u32(bytes, 0);
        if kind == NG_SECTION {
            if bytes.len() < 12 {
                return Ok(Step::NeedMore { total: 12 });
            }
            *endian = match u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) {
                NG_BYTE_ORDER => Endian::Little,
                m if m.swap_bytes() == NG_BYTE_ORDER => Endian::Big,
                m => return Err(format!("pcapng section header with a bad byte-order magic {m:#010x}")),
            };
        }
        let total = endian.u32(bytes, 4) as usize;
        if total < 12 || total % 4 != 0 || total > MAX_BLOCK {
            return Err(format!("pcapng block of type {kind:#x} with an invalid length {total}"));
        }
        if bytes.len() < total {
            return Ok(Step::NeedMore { total });
        }
        if endian.u32(bytes, total - 4) as usize != total {
            return Err(format!("pcapng block of type {kind:#x}: its two lengths differ"));
        }
        let body = &bytes[8..total - 4];
        let endian = *endian;
        let short = || format!("pcapng block of type {kind:#x} too short ({total} bytes)");
        match kind {
            NG_SECTION => {
                if body.len() < 16 {
                    return Err(short());
                }
                let major = endian.u16(body, 4);
                if major != 1 {
                    return Err(format!("unsupported pcapng version {major}.{}", endian.u16(body, 6)));
                }
                interfaces.clear();
                Ok(Step::Skip { used: total })
            }
            NG_INTERFACE => {
                if body.len() < 8 {
                    return Err(short());
                }
                let if_link = u32::from(endian.u16(body, 0));
                match *link {
                    None => *link = Some(if_link),
                    Some(first) if first != if_link => {
                        return Err(format!(
                            "interface {} has link type {if_link}, unlike the file's first interface ({first})",
                            interfaces.len()
                        ));
                    }
                    Some(_) => {}
                }
                if interfaces.len() == MAX_INTERFACES {
                    return Err(format!("more than {MAX_INTERFACES} interfaces in one pcapng section"));
                }
                interfaces.push(interface(endian, body)?);
                Ok(Step::Skip { used: total })
            }
            NG_ENHANCED_PACKET | NG_OBSOLETE_PACKET => {
                if body.len() < 20 {
                    return Err(short());
                }
                let id = if kind == NG_ENHANCED_PACKET {
                    endian.u32(body, 0) as usize
                } else {
                    usize::from(endian.u16(body, 0))
                };
                let iface = interfaces.get(id).ok_or_else(|| no_interface(id))?;
                let caplen = endian.u32(body, 12) as usize;
                if caplen > body.len() - 20 || caplen > MAX_RECORD {
                    return Err(format!(
                        "packet block with {caplen} captured bytes, more than the block holds"
                    ));
                }
                let ts_micros = micros(iface, endian.u64_hi_lo(body, 4));
                let data = 28..28 + caplen;
                Ok(Step::Record { ts_micros, data, orig_len: endian.u32(body, 16), used: total })
            }
            NG_SIMPLE_PACKET => {
                if body.len() < 4 {
                    return Err(short());
                }
                let iface = interfaces.first().ok_or_else(|| no_interface(0))?;
                let orig_len = endian.u32(body, 0);
                let mut caplen = (orig_len as usize).min(body.len() - 4).min(MAX_RECORD);
                if iface.snaplen > 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                // Simple packet blocks carry no timestamp.
                Ok(Step::Record { ts_micros: 0, data: 12..12 + caplen, orig_len, used: total })
            }
            _ => Ok(Step::Skip { used: total }),
        }
    }
}

fn no_interface(id: usize) -> FormatError {
    format!("packet block for interface {id}, which no interface description block described")
}

/// An interface description block's body: link type, snaplen, then options (`if_tsresol`,
/// `if_tsoffset`).
fn interface(endian: Endian, body: &[u8]) -> Result<Interface, FormatError> {
    let mut iface = Interface { units: 1_000_000, offset: 0, snaplen: endian.u32(body, 4) };
    let mut at = 8;
    while at + 4 <= body.len() {
        let (code, len) = (endian.u16(body, at), usize::from(endian.u16(body, at + 2)));
        let value = body.get(at + 4..at + 4 + len).ok_or("interface option runs past its block")?;
        match (code, len) {
            (0, _) => break,
            (9, 1..) => {
                let n = u32::from(value[0] & 0x7f);
                let units = if value[0] & 0x80 == 0 { 10u64.checked_pow(n) } else { 2u64.checked_pow(n) };
                iface.units =
                    units.ok_or_else(|| format!("timestamp resolution {:#04x} too fine", value[0]))?;
            }
            (14, 8) => {
                // One 64-bit value in the section's byte order (not two halves, as timestamps are).
                let mut raw = [0; 8];
                raw.copy_from_slice(value);
                iface.offset = endian.i64(raw);
            }
            _ => {}
        }
        at += 4 + len.next_multiple_of(4);
    }
    Ok(iface)
}

/// An interface's timestamp in microseconds since the epoch (0 before it), truncated as libpcap does.
fn micros(iface: &Interface, ts: u64) -> u64 {
    let secs = (ts / iface.units).saturating_add_signed(iface.offset);
    let frac = u128::from(ts % iface.units) * 1_000_000 / u128::from(iface.units);
    secs.saturating_mul(1_000_000).saturating_add(frac as u64)
}

fn pcap_record(endian: Endian, nanos: bool, bytes: &[u8]) -> Result<Step, FormatError> {
    if bytes.len() < PCAP_RECORD_HEADER {
        return Ok(Step::NeedMore { total: PCAP_RECORD_HEADER });
    }
    let caplen = endian.u32(bytes, 8) as usize;
    if caplen > MAX_RECORD {
        return Err(format!("record of {caplen} captured bytes, more than the {MAX_RECORD} maximum"));
    }
    let used = PCAP_RECORD_HEADER + caplen;
    if bytes.len() < used {
        return Ok(Step::NeedMore { total: used });
    }
    let (secs, frac) = (u64::from(endian.u32(bytes, 0)), u64::from(endian.u32(bytes, 4)));
    let sub_micros = if nanos { frac / 1000 } else { frac };
    let ts_micros = secs * 1_000_000 + sub_micros;
    Ok(Step::Record { ts_micros, data: PCAP_RECORD_HEADER..used, orig_len: endian.u32(bytes, 12), used })
}
