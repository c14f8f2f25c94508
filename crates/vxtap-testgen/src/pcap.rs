//! A classic (libpcap 2.4) capture file writer with microsecond timestamps, and a reader for checking
//! what it wrote. Hand-written: no libpcap needed.

use std::io::{self, Write};

/// Link type of Ethernet frames (`DLT_EN10MB`).
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Magic number of a microsecond-resolution file, as written (little-endian) by [`PcapWriter`].
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;

/// Writes a classic pcap file: the 24-byte global header on creation, then one record per [`write`].
///
/// [`write`]: PcapWriter::write
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
    cut: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (version 2.4, microsecond timestamps, little-endian) to `out`.
    /// Records are written whole unless [`cut_at_snaplen`](Self::cut_at_snaplen) is turned on.
    pub fn new(mut out: W, linktype: u32, snaplen: u32) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay zero.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&linktype.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, snaplen, cut: false })
    }

    /// When `on`, frames longer than the snaplen are stored cut to it, with their original length kept
    /// in the record header (as a capture with `-s snaplen` would store them).
    pub fn cut_at_snaplen(mut self, on: bool) -> Self {
        self.cut = on;
        self
    }

    /// Appends one record stamped `ts_micros` microseconds after the Unix epoch.
    pub fn write(&mut self, ts_micros: u64, frame: &[u8]) -> io::Result<()> {
        let orig = u32::try_from(frame.len()).map_err(|_| io::Error::other("frame longer than 4 GiB"))?;
        let incl = if self.cut { orig.min(self.snaplen) } else { orig };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_micros / 1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_micros % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&incl.to_le_bytes());
        h[12..16].copy_from_slice(&orig.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..incl as usize])
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The global header of a pcap file, as [`parse`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcapHeader {
    /// Major version (2).
    pub version_major: u16,
    /// Minor version (4).
    pub version_minor: u16,
    /// Largest record length the file promises.
    pub snaplen: u32,
    /// Link type of every record.
    pub linktype: u32,
    /// Whether timestamps are in nanoseconds (magic `0xa1b23c4d`) rather than microseconds.
    pub nanos: bool,
}

/// One record of a pcap file, as [`parse`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapRecord {
    /// Timestamp in microseconds after the Unix epoch (nanosecond files are rounded down).
    pub ts_micros: u64,
    /// Length of the frame on the wire, which may exceed `data.len()`.
    pub orig_len: u32,
    /// The stored bytes.
    pub data: Vec<u8>,
}

/// Reads a whole classic pcap file (either byte order, micro- or nanosecond timestamps).
pub fn parse(bytes: &[u8]) -> io::Result<(PcapHeader, Vec<PcapRecord>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if bytes.len() < 24 {
        return Err(bad("shorter than a pcap header"));
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let (le, nanos) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
        (0xa1b2_c3d4, _) => (true, false),
        (0xa1b2_3c4d, _) => (true, true),
        (_, 0xa1b2_c3d4) => (false, false),
        (_, 0xa1b2_3c4d) => (false, true),
        _ => return Err(bad("not a classic pcap file")),
    };
    let u16_at = |i: usize| {
        let b = [bytes[i], bytes[i + 1]];
        if le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) }
    };
    let u32_at = |i: usize| {
        let b = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }
    };
    let header = PcapHeader {
        version_major: u16_at(4),
        version_minor: u16_at(6),
        snaplen: u32_at(16),
        linktype: u32_at(20),
        nanos,
    };
    let mut records = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        if bytes.len() - at < 16 {
            return Err(bad("truncated record header"));
        }
        let (secs, frac, incl, orig) = (u32_at(at), u32_at(at + 4), u32_at(at + 8), u32_at(at + 12));
        let data = bytes.get(at + 16..at + 16 + incl as usize).ok_or_else(|| bad("truncated record"))?;
        let frac = if nanos { u64::from(frac) / 1000 } else { u64::from(frac) };
        records.push(PcapRecord {
            ts_micros: u64::from(secs) * 1_000_000 + frac,
            orig_len: orig,
            data: data.to_vec(),
        });
        at += 16 + incl as usize;
    }
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_header_and_records() {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 100).unwrap().cut_at_snaplen(true);
        w.write(1_700_000_000_123_456, &[7u8; 60]).unwrap();
        w.write(1_700_000_001_000_000, &[9u8; 150]).unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(bytes.len(), 24 + 16 + 60 + 16 + 100);
        let (h, recs) = parse(&bytes).unwrap();
        assert_eq!(
            h,
            PcapHeader { version_major: 2, version_minor: 4, snaplen: 100, linktype: 1, nanos: false }
        );
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].ts_micros, 1_700_000_000_123_456);
        assert_eq!((recs[0].orig_len, recs[0].data.len()), (60, 60));
        assert_eq!(recs[1].ts_micros, 1_700_000_001_000_000);
        assert_eq!((recs[1].orig_len, recs[1].data.len()), (150, 100));
    }

    #[test]
    fn writes_whole_frames_unless_cutting() {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 64).unwrap();
        w.write(5, &[1u8; 80]).unwrap();
        let (h, recs) = parse(&w.into_inner().unwrap()).unwrap();
        assert_eq!(h.snaplen, 64);
        assert_eq!((recs[0].ts_micros, recs[0].orig_len, recs[0].data.len()), (5, 80, 80));
    }
}
