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

#[cfg(test)]
mod tests {
    use super::*;

    /// (ts, original length, captured bytes) of every record, read back with vxtap's own reader.
    fn read_back(bytes: Vec<u8>) -> Vec<(u64, u32, Vec<u8>)> {
        let mut file =
            vxtap_capture::PcapFile::from_reader("test", Box::new(io::Cursor::new(bytes))).unwrap();
        assert_eq!(file.dlt(), LINKTYPE_ETHERNET as i32);
        let mut records = Vec::new();
        file.for_each(|r| records.push((r.ts_micros, r.orig_len, r.data.to_vec()))).unwrap();
        records
    }

    #[test]
    fn round_trips_header_and_records() {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 100).unwrap().cut_at_snaplen(true);
        w.write(1_700_000_000_123_456, &[7u8; 60]).unwrap();
        w.write(1_700_000_001_000_000, &[9u8; 150]).unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(bytes.len(), 24 + 16 + 60 + 16 + 100);
        assert_eq!(&bytes[4..8], &[2, 0, 4, 0], "version 2.4");
        assert_eq!(&bytes[16..20], &100u32.to_le_bytes(), "snaplen");
        let records = read_back(bytes);
        assert_eq!(
            records,
            vec![(1_700_000_000_123_456, 60, vec![7; 60]), (1_700_000_001_000_000, 150, vec![9; 100])]
        );
    }

    #[test]
    fn writes_whole_frames_unless_cutting() {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 64).unwrap();
        w.write(5, &[1u8; 80]).unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(&bytes[16..20], &64u32.to_le_bytes(), "snaplen");
        assert_eq!(read_back(bytes), vec![(5, 80, vec![1; 80])]);
    }
}
