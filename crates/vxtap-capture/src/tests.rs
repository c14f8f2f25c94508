use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

// ---------------------------------------------------------------------------------------------------
// Hand-written capture files.

/// One record to write: (seconds, sub-second units, captured bytes, original length).
type Rec<'a> = (u32, u32, &'a [u8], u32);

fn pcap_bytes(magic: u32, dlt: u32, recs: &[Rec<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&262_144u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&dlt.to_le_bytes());
    for &(sec, frac, data, orig) in recs {
        out.extend_from_slice(&sec.to_le_bytes());
        out.extend_from_slice(&frac.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&orig.to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

fn pcap_micro(dlt: u32, recs: &[Rec<'_>]) -> Vec<u8> {
    pcap_bytes(0xa1b2_c3d4, dlt, recs)
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// A pcapng block: type, total length, body, total length.
fn ng_block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

/// SHB + IDB (with `if_tsresol` = 10^-`tsresol`) + one EPB per record, timestamps `(sec, frac)` in the
/// interface's resolution.
fn pcapng_bytes(dlt: u16, tsresol: u8, recs: &[Rec<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    ng_block(&mut out, 0x0a0d_0d0a, &shb);

    let mut idb = Vec::new();
    idb.extend_from_slice(&dlt.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    idb.extend_from_slice(&9u16.to_le_bytes()); // if_tsresol
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&[tsresol, 0, 0, 0]);
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    ng_block(&mut out, 1, &idb);

    let units = 10u64.pow(u32::from(tsresol));
    for &(sec, frac, data, orig) in recs {
        let ts = u64::from(sec) * units + u64::from(frac);
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&orig.to_le_bytes());
        epb.extend_from_slice(data);
        pad4(&mut epb);
        ng_block(&mut out, 6, &epb);
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// An owned copy of a record: (ts, data, orig_len).
type OwnedRec = (u64, Vec<u8>, u32);

/// Reads every record of a file, plus the outcome.
fn read_all(path: &Path) -> (Vec<OwnedRec>, Result<FileStats, CaptureError>) {
    let mut file = PcapFile::open(path).unwrap();
    let mut got = Vec::new();
    let res = file.for_each(|r| got.push((r.ts_micros, r.data.to_vec(), r.orig_len)));
    (got, res)
}

fn frame(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn classic_pcap_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (frame(60, 1), frame(1514, 2), frame(9001, 3));
    let recs =
        [(1_700_000_000, 123_456, &a[..], 60), (1_700_000_001, 0, &b[..], 1514), (5, 999_999, &c[..], 9100)];
    let path = write(dir.path(), "a.pcap", &pcap_micro(1, &recs));
    let file = PcapFile::open(&path).unwrap();
    assert_eq!(file.link_type(), LinkType::Ethernet);
    assert_eq!(file.dlt(), 1);
    assert_eq!(file.path(), path);
    let (got, res) = read_all(&path);
    let stats = res.unwrap();
    assert_eq!(stats, FileStats { records: 3, bytes: 60 + 1514 + 9001, truncated: 1 });
    assert_eq!(got[0], (1_700_000_000_123_456, a, 60));
    assert_eq!(got[1], (1_700_000_001_000_000, b, 1514));
    assert_eq!(got[2], (5_999_999, c, 9100));
}

#[test]
fn nanosecond_pcap_is_reported_in_micros() {
    let dir = tempfile::tempdir().unwrap();
    let a = frame(40, 7);
    let path = write(dir.path(), "ns.pcap", &pcap_bytes(0xa1b2_3c4d, 101, &[(10, 123_456_789, &a[..], 40)]));
    assert_eq!(PcapFile::open(&path).unwrap().link_type(), LinkType::RawIp);
    let (got, res) = read_all(&path);
    assert_eq!(res.unwrap().records, 1);
    assert_eq!(got, vec![(10_123_456, a, 40)]);
}

#[test]
fn pcapng_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (frame(61, 4), frame(3, 5), frame(8950, 6));
    let recs =
        [(1_700_000_000, 987_654_321, &a[..], 61), (1_700_000_002, 1_000, &b[..], 3), (7, 5, &c[..], 9000)];
    // Nanosecond resolution, SLL2 link type.
    let path = write(dir.path(), "a.pcapng", &pcapng_bytes(276, 9, &recs));
    let mut file = PcapFile::open(&path).unwrap();
    assert_eq!(file.link_type(), LinkType::LinuxSll2);
    let mut got = Vec::new();
    while let Some(r) = file.next_record().unwrap() {
        got.push((r.ts_micros, r.data.to_vec(), r.orig_len));
    }
    assert_eq!(file.next_record().unwrap(), None, "stays finished");
    assert_eq!(file.stats(), FileStats { records: 3, bytes: 61 + 3 + 8950, truncated: 1 });
    assert_eq!(got[0], (1_700_000_000_987_654, a, 61));
    assert_eq!(got[1], (1_700_000_002_000_001, b, 3));
    assert_eq!(got[2], (7_000_000, c, 9000));

    // Microsecond resolution, Ethernet.
    let d = frame(100, 8);
    let path = write(dir.path(), "b.pcapng", &pcapng_bytes(1, 6, &[(3, 42, &d[..], 100)]));
    let (got, res) = read_all(&path);
    assert_eq!(res.unwrap().records, 1);
    assert_eq!(got, vec![(3_000_042, d, 100)]);
}

#[test]
fn truncated_last_record_delivers_then_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (frame(100, 1), frame(200, 2), frame(300, 3));
    let full = pcap_micro(1, &[(1, 0, &a[..], 100), (2, 0, &b[..], 200), (3, 0, &c[..], 300)]);
    // Cut inside the last record's data, then inside the last record's header.
    for (cut, name) in [(full.len() - 150, "cut_data.pcap"), (24 + 16 + 100 + 16 + 200 + 7, "cut_hdr.pcap")] {
        let path = write(dir.path(), name, &full[..cut]);
        let (got, res) = read_all(&path);
        assert_eq!(got.len(), 2, "{name}");
        assert_eq!(got[1].1, b);
        let err = res.unwrap_err();
        assert!(matches!(err, CaptureError::FileRead { records: 2, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains("truncated"), "{msg}");
    }

    let full = pcapng_bytes(1, 6, &[(1, 0, &a[..], 100), (2, 0, &b[..], 200)]);
    let path = write(dir.path(), "cut.pcapng", &full[..full.len() - 10]);
    let (got, res) = read_all(&path);
    assert_eq!(got.len(), 1);
    let err = res.unwrap_err();
    assert!(matches!(err, CaptureError::FileRead { records: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("cut.pcapng"), "{err}");
}

#[test]
fn corrupt_record_midway_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (frame(64, 1), frame(64, 2));
    let mut bytes = pcap_micro(1, &[(1, 0, &a[..], 64), (2, 0, &b[..], 64)]);
    // Second record's caplen: absurd.
    let off = 24 + 16 + 64 + 8;
    bytes[off..off + 4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let path = write(dir.path(), "corrupt.pcap", &bytes);
    let (got, res) = read_all(&path);
    assert_eq!(got.len(), 1);
    let err = res.unwrap_err();
    assert!(matches!(err, CaptureError::FileRead { records: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("corrupt.pcap"), "{err}");
}

#[test]
fn bad_files_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(dir.path(), "notes.txt", b"this is not a capture file, just some text\n");
    let empty = write(dir.path(), "empty.pcap", b"");
    let missing = dir.path().join("missing.pcap");
    let sub = dir.path().join("subdir.pcap");
    std::fs::create_dir(&sub).unwrap();
    for path in [&text, &empty, &missing, &sub] {
        let err = PcapFile::open(path).unwrap_err();
        assert!(matches!(err, CaptureError::FileOpen { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
        println!("{msg}");
    }
}

#[test]
fn unsupported_link_type_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = frame(30, 1);
    // 105 = IEEE 802.11.
    let path = write(dir.path(), "wifi.pcap", &pcap_micro(105, &[(1, 0, &a[..], 30)]));
    let err = PcapFile::open(&path).unwrap_err();
    assert!(matches!(err, CaptureError::FileLinkType { dlt: 105, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("wifi.pcap") && msg.contains("105") && msg.contains("IEEE802_11"), "{msg}");

    let path = write(dir.path(), "wifi.pcapng", &pcapng_bytes(105, 6, &[(1, 0, &a[..], 30)]));
    let err = PcapFile::open(&path).unwrap_err();
    assert!(matches!(err, CaptureError::FileLinkType { dlt: 105, .. }), "{err:?}");
}

/// A pcapng writer in either byte order, for shapes `pcapng_bytes` does not make.
struct Ng {
    big: bool,
    out: Vec<u8>,
}

impl Ng {
    fn new(big: bool) -> Ng {
        Ng { big, out: Vec::new() }
    }

    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big { v.to_be_bytes() } else { v.to_le_bytes() }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big { v.to_be_bytes() } else { v.to_le_bytes() }
    }

    fn block(&mut self, kind: u32, body: &[u8]) -> &mut Ng {
        let mut body = body.to_vec();
        pad4(&mut body);
        let total = self.u32((12 + body.len()) as u32);
        let kind = self.u32(kind);
        self.out.extend_from_slice(&kind);
        self.out.extend_from_slice(&total);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&total);
        self
    }

    fn section(&mut self) -> &mut Ng {
        let mut body = self.u32(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body)
    }

    /// An interface; `options` are (code, value) pairs.
    fn interface(&mut self, link: u16, snaplen: u32, options: &[(u16, Vec<u8>)]) -> &mut Ng {
        let mut body = self.u16(link).to_vec();
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32(snaplen));
        for (code, value) in options {
            body.extend_from_slice(&self.u16(*code));
            body.extend_from_slice(&self.u16(value.len() as u16));
            body.extend_from_slice(value);
            pad4(&mut body);
        }
        body.extend_from_slice(&[0; 4]);
        self.block(1, &body)
    }

    fn enhanced(&mut self, iface: u32, ts: u64, data: &[u8], orig: u32) -> &mut Ng {
        let mut body = self.u32(iface).to_vec();
        for v in [(ts >> 32) as u32, ts as u32, data.len() as u32, orig] {
            body.extend_from_slice(&self.u32(v));
        }
        body.extend_from_slice(data);
        self.block(6, &body)
    }

    fn simple(&mut self, data: &[u8], orig: u32) -> &mut Ng {
        let mut body = self.u32(orig).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body)
    }

    fn obsolete(&mut self, iface: u16, ts: u64, data: &[u8], orig: u32) -> &mut Ng {
        let mut body = self.u16(iface).to_vec();
        body.extend_from_slice(&self.u16(0));
        for v in [(ts >> 32) as u32, ts as u32, data.len() as u32, orig] {
            body.extend_from_slice(&self.u32(v));
        }
        body.extend_from_slice(data);
        self.block(2, &body)
    }
}

fn pcap_big_endian(magic: u32, dlt: u32, recs: &[Rec<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [magic, 0x0002_0004, 0, 0, 262_144, dlt] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for &(sec, frac, data, orig) in recs {
        for v in [sec, frac, data.len() as u32, orig] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(data);
    }
    out
}

/// A record in short: (ts, captured length, a digest of the bytes, original length).
type RecSummary = (u64, usize, u64, u32);

fn summary(r: &Record<'_>) -> RecSummary {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    r.data.hash(&mut h);
    (r.ts_micros, r.data.len(), h.finish(), r.orig_len)
}

/// Every record as libpcap reads it, and whether reading ended in an error (`None`: it refused the file).
fn read_with_libpcap(path: &Path) -> Option<(Vec<RecSummary>, bool)> {
    let mut cap = pcap::Capture::from_file(path).ok()?;
    let mut got = Vec::new();
    loop {
        match cap.next_packet() {
            Ok(p) => got.push(summary(&Record::from_packet(&p))),
            Err(pcap::Error::NoMorePackets) => return Some((got, false)),
            Err(e) => {
                println!("libpcap on {}: {e}", path.display());
                return Some((got, true));
            }
        }
    }
}

#[test]
fn records_match_libpcap_on_every_file_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (frame(60, 1), frame(1514, 2), frame(9001, 3));
    let recs = [(1_700_000_000, 999_999, &a[..], 60), (2_000_000_000, 7, &b[..], 1600), (0, 0, &c[..], 9001)];
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("le-us.pcap", pcap_micro(1, &recs)),
        ("le-ns.pcap", pcap_bytes(0xa1b2_3c4d, 1, &recs)),
        ("be-us.pcap", pcap_big_endian(0xa1b2_c3d4, 1, &recs)),
        ("be-ns.pcap", pcap_big_endian(0xa1b2_3c4d, 101, &recs)),
        ("fcs-bits.pcap", pcap_micro(0x1000_0001, &recs)),
        ("ng-ns.pcapng", pcapng_bytes(1, 9, &recs)),
        ("ng-sll2.pcapng", pcapng_bytes(276, 6, &recs)),
    ];
    let ts = 1_700_000_000_123_456_789u64;
    for big in [false, true] {
        let mut ng = Ng::new(big);
        ng.section()
            .block(4, &[0; 8]) // name resolution block, skipped
            .interface(1, 0, &[(9, vec![0x80 | 20])]) // 2^-20 s units
            .interface(1, 0, &[(9, vec![3]), (14, (-5i64).to_le_bytes().to_vec())])
            .enhanced(0, 5 << 20 | 12_345, &a, 60)
            .enhanced(1, 1_700_000_000_123, &b, 1514)
            .block(5, &[0; 16]) // interface statistics, skipped
            .simple(&c, 9001)
            .obsolete(1, 42_000, &a, 80)
            .section() // a new section forgets the interfaces
            .interface(1, 0, &[(9, vec![9])])
            .enhanced(0, ts, &b, 1514)
            .simple(&a, 60);
        let mut out = std::mem::take(&mut ng.out);
        if big {
            // The little-endian offset option above must be read as big-endian here: rebuild it.
            let mut ng = Ng::new(true);
            ng.section()
                .interface(1, 0, &[(14, 3600i64.to_be_bytes().to_vec())])
                .enhanced(0, 1_000_000, &a, 60);
            out.extend_from_slice(&ng.out);
        }
        files.push((if big { "be.pcapng" } else { "le.pcapng" }, out));
    }
    let mut ng = Ng::new(false);
    ng.section().interface(1, 0, &[]).interface(101, 0, &[]).enhanced(0, 1, &a, 60);
    files.push(("mixed-links.pcapng", ng.out.clone()));
    let mut ng = Ng::new(false);
    ng.section().interface(1, 0, &[]).enhanced(3, 1, &a, 60);
    files.push(("unknown-interface.pcapng", ng.out.clone()));
    let whole = files.clone();
    for (name, bytes) in &whole {
        for cut in [bytes.len() - 1, bytes.len() - 30, bytes.len() / 2] {
            files.push((name, bytes[..cut].to_vec()));
        }
    }
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/sample.pcap")).unwrap();
    files.push(("sample.pcap", sample));

    for (i, (name, bytes)) in files.iter().enumerate() {
        let path = write(dir.path(), &format!("{i}-{name}"), bytes);
        let ours = PcapFile::open(&path).map(|mut f| {
            let mut got = Vec::new();
            let res = f.for_each(|r| got.push(summary(&r)));
            (got, res.is_err())
        });
        match (read_with_libpcap(&path), ours) {
            (Some(theirs), Ok(ours)) => assert_eq!(ours, theirs, "{i}-{name}"),
            (None, Err(_)) => {}
            (theirs, ours) => panic!("{i}-{name}: libpcap {theirs:?}, vxtap {:?}", ours.map(|o| o.1)),
        }
    }
}

#[test]
fn records_come_whole_from_a_reader_that_yields_a_byte_at_a_time() {
    struct Trickle(std::io::Cursor<Vec<u8>>);
    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }
    let (a, b) = (frame(70, 1), frame(300, 2));
    for bytes in [
        pcap_micro(1, &[(1, 2, &a[..], 70), (3, 4, &b[..], 300)]),
        pcapng_bytes(1, 6, &[(1, 2, &a[..], 70), (3, 4, &b[..], 300)]),
    ] {
        let mut file =
            PcapFile::from_reader("trickle", Box::new(Trickle(std::io::Cursor::new(bytes)))).unwrap();
        let mut got = Vec::new();
        let stats = file.for_each(|r| got.push((r.ts_micros, r.data.to_vec(), r.orig_len))).unwrap();
        assert_eq!(stats.records, 2);
        assert_eq!(got, vec![(1_000_002, a.clone(), 70), (3_000_004, b.clone(), 300)]);
    }
}

// ---------------------------------------------------------------------------------------------------
// UDP receiver.

/// Datagram `i`: 4-byte index then a pattern; sizes spread over 1..=9000 bytes (9000 included).
fn datagram(i: u32) -> Vec<u8> {
    let len = match i {
        0 => 9000,
        1 => 4,
        _ => 4 + (i as usize * 7919) % 8997,
    };
    let mut d = i.to_be_bytes().to_vec();
    d.extend((4..len).map(|k| (k as u32 ^ i.wrapping_mul(2_654_435_761)) as u8));
    d
}

fn small_opts() -> UdpOptions {
    UdpOptions { batch_size: 16, ..UdpOptions::default() }
}

#[test]
fn reuseport_receivers_get_every_datagram_exactly() {
    const N: u32 = 1000;
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let opts = UdpOptions::default();
    let rx1 = UdpReceiver::bind(any_port, &opts).unwrap();
    let addr = rx1.local_addr();
    let rx2 = UdpReceiver::bind(addr, &opts).unwrap();
    assert_eq!(rx2.local_addr(), addr);
    println!(
        "rcvbuf: requested {} bytes, effective {} bytes (forced: {}), kernel drops: {}",
        opts.recv_buffer_bytes,
        rx1.recv_buffer_bytes(),
        rx1.recv_buffer_forced(),
        rx1.kernel_drops_enabled()
    );
    assert!(rx1.recv_buffer_bytes() > 0);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let spawn = |mut rx: UdpReceiver| {
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        thread::spawn(move || {
            let mut got = Vec::new();
            let stats = rx
                .run(&stop, |batch| {
                    assert!(!batch.is_empty() && batch.len() <= 64);
                    assert_eq!(batch.iter().len(), batch.len());
                    for d in batch {
                        assert_eq!(d.ts_micros, batch.ts_micros());
                        got.push((d.src, d.dst_ip, d.local_port, d.payload.to_vec()));
                    }
                    seen.fetch_add(batch.len(), Ordering::Relaxed);
                })
                .unwrap();
            (got, stats)
        })
    };
    let (h1, h2) = (spawn(rx1), spawn(rx2));

    // Sixteen senders: SO_REUSEPORT hashes each source to one socket, so both receivers get some.
    let senders: Vec<UdpSocket> = (0..16).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let sender_addrs: HashSet<SocketAddr> = senders.iter().map(|s| s.local_addr().unwrap()).collect();
    for i in 0..N {
        senders[i as usize % senders.len()].send_to(&datagram(i), addr).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.load(Ordering::Relaxed) < N as usize && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let stopped_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let (got1, stats1) = h1.join().unwrap();
    let (got2, stats2) = h2.join().unwrap();
    assert!(stopped_at.elapsed() < Duration::from_secs(1), "stop took {:?}", stopped_at.elapsed());
    println!("receiver 1: {stats1:?}\nreceiver 2: {stats2:?}");

    let mut indices = HashSet::new();
    let mut total_bytes = 0u64;
    for (src, dst, port, payload) in got1.iter().chain(&got2) {
        assert!(sender_addrs.contains(src), "{src}");
        assert_eq!(*dst, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(*port, addr.port());
        let i = u32::from_be_bytes(payload[..4].try_into().unwrap());
        assert_eq!(payload, &datagram(i), "datagram {i}");
        assert!(indices.insert(i), "datagram {i} twice");
        total_bytes += payload.len() as u64;
    }
    assert_eq!(indices.len(), N as usize);
    assert_eq!(stats1.datagrams + stats2.datagrams, u64::from(N));
    assert!(stats1.datagrams > 0 && stats2.datagrams > 0, "SO_REUSEPORT spread nothing");
    assert_eq!(stats1.bytes + stats2.bytes, total_bytes);
    assert_eq!(stats1.truncated + stats2.truncated, 0);
    assert_eq!(stats1.kernel_drops + stats2.kernel_drops, 0);
}

#[test]
fn after_two_small_batches_the_receiver_waits_for_more() {
    // Two datagrams arrive one by one; 20 more trickle in over ~20 ms while the receiver waits
    // 500 ms after the second (not after the first: one small batch is also how a backlog ends).
    let wait = Duration::from_millis(500);
    let opts = UdpOptions { coalesce: wait, ..small_opts() };
    let mut rx = UdpReceiver::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
    let addr = rx.local_addr();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&datagram(0), addr).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(10));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut batches = Vec::new();
    let mut trickle = None;
    rx.run(&stop, |batch| {
        batches.push((batch.len(), Instant::now()));
        match batches.len() {
            1 => {
                tx.send_to(&datagram(1), addr).unwrap();
            }
            2 => {
                let tx = tx.try_clone().unwrap();
                trickle = Some(thread::spawn(move || {
                    for i in 2..22 {
                        tx.send_to(&datagram(i), addr).unwrap();
                        thread::sleep(Duration::from_millis(1));
                    }
                }));
            }
            _ if batches.iter().map(|b| b.0).sum::<usize>() == 22 => stop.store(true, Ordering::Relaxed),
            _ => {}
        }
    })
    .unwrap();
    trickle.unwrap().join().unwrap();
    drop(watchdog);
    // Without the wait the trickle comes in batches of one or two.
    let sizes: Vec<usize> = batches.iter().map(|b| b.0).collect();
    assert_eq!(sizes, [1, 1, 16, 4]);
    let gap = |i: usize| batches[i].1 - batches[i - 1].1;
    assert!(gap(1) < wait / 2, "waited after the first small batch: {:?}", gap(1));
    assert!(gap(2) >= wait, "did not wait after the second: {:?}", gap(2));
}

#[test]
fn stop_flag_ends_idle_run_promptly() {
    let mut rx = UdpReceiver::bind("127.0.0.1:0".parse().unwrap(), &small_opts()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let h = thread::spawn(move || rx.run(&flag, |_| panic!("no traffic expected")).unwrap());
    thread::sleep(Duration::from_millis(150));
    let t = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let stats = h.join().unwrap();
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    assert_eq!(stats, UdpStats::default());
}

#[test]
fn oversized_datagram_is_counted_not_delivered() {
    let opts = UdpOptions { max_datagram: 100, ..small_opts() };
    let mut rx = UdpReceiver::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&[1u8; 101], rx.local_addr()).unwrap();
    tx.send_to(&[2u8; 100], rx.local_addr()).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.is_empty() && Instant::now() < deadline {
        got.extend(rx.recv_batch().unwrap().iter().map(|d| d.payload.to_vec()));
    }
    assert_eq!(got, vec![vec![2u8; 100]]);
    let s = rx.counters().snapshot();
    assert_eq!((s.datagrams, s.bytes, s.truncated), (1, 100, 1));
}

#[test]
fn kernel_drops_are_counted() {
    const N: u64 = 200;
    let opts = UdpOptions { recv_buffer_bytes: 4096, ..UdpOptions::default() };
    let mut rx = UdpReceiver::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
    if !rx.kernel_drops_enabled() {
        println!("note: SO_RXQ_OVFL unavailable, skipping");
        return;
    }
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..N {
        tx.send_to(&[i as u8; 1000], rx.local_addr()).unwrap();
    }
    // Drain until the socket is idle.
    while !rx.recv_batch().unwrap().is_empty() {}
    let s = rx.counters().snapshot();
    println!("rcvbuf {} bytes: {s:?}", rx.recv_buffer_bytes());
    assert!(s.kernel_drops > 0, "{s:?}");
    assert_eq!(s.datagrams + s.kernel_drops, N, "{s:?}");
}

#[test]
fn ipv6_and_dual_stack_destinations() {
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    let mut rx = match UdpReceiver::bind(v6, &small_opts()) {
        Ok(rx) => rx,
        Err(e) => {
            println!("note: IPv6 loopback unavailable ({e}), skipping");
            return;
        }
    };
    let tx = UdpSocket::bind("[::1]:0").unwrap();
    tx.send_to(b"six", rx.local_addr()).unwrap();
    let d = recv_one(&mut rx);
    assert_eq!(d.0, IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(d.1, tx.local_addr().unwrap());
    assert_eq!(d.2, b"six");

    // A dual-stack socket on [::] reports IPv4 senders and destinations as IPv4.
    let mut rx = UdpReceiver::bind("[::]:0".parse().unwrap(), &small_opts()).unwrap();
    let port = rx.local_addr().port();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    if tx.send_to(b"four", (Ipv4Addr::LOCALHOST, port)).is_err() {
        return;
    }
    let d = recv_one(&mut rx);
    assert_eq!(d.0, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(d.1, tx.local_addr().unwrap());
    assert_eq!(d.2, b"four");
}

fn recv_one(rx: &mut UdpReceiver) -> (IpAddr, SocketAddr, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(d) = rx.recv_batch().unwrap().get(0) {
            return (d.dst_ip, d.src, d.payload.to_vec());
        }
    }
    panic!("nothing received");
}

#[test]
fn bind_conflict_names_the_address() {
    let opts = UdpOptions { reuse_port: false, ..small_opts() };
    let rx = UdpReceiver::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
    let err = UdpReceiver::bind(rx.local_addr(), &opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&rx.local_addr().to_string()) && msg.contains("bind"), "{msg}");
}

// ---------------------------------------------------------------------------------------------------
// Live capture.

#[test]
fn live_capture_on_loopback() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let opts = LiveOptions { filter: Some(format!("udp port {port}")), ..LiveOptions::default() };
    let mut cap = match LiveCapture::open("lo", &opts) {
        Ok(cap) => cap,
        Err(e) if e.is_permission_denied() => {
            println!("note: no permission for live capture ({e}), skipping");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(cap.interface(), "lo");
    assert_eq!(cap.link_type(), LinkType::Ethernet);
    let counters = cap.counters();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let (flag, seen2) = (Arc::clone(&stop), Arc::clone(&seen));
    let h = thread::spawn(move || {
        let mut markers = HashSet::new();
        let stats = cap
            .run(&flag, |rec| {
                let Some(rec) = rec else { return };
                assert_eq!(rec.data.len() as u32, rec.orig_len);
                let now = now_micros();
                assert!(rec.ts_micros <= now && now - rec.ts_micros < 60_000_000);
                if let Some(pos) = rec.data.windows(7).position(|w| w == b"vxtap-m") {
                    markers.insert(rec.data[pos + 7]);
                    seen2.store(markers.len(), Ordering::Relaxed);
                }
            })
            .unwrap();
        (markers, stats)
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The capture may take a moment to start: resend until all five markers were seen.
    while seen.load(Ordering::Relaxed) < 5 && Instant::now() < deadline {
        for m in 0..5u8 {
            tx.send_to(&[b'v', b'x', b't', b'a', b'p', b'-', b'm', m], (Ipv4Addr::LOCALHOST, port)).unwrap();
        }
        thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let (markers, stats) = h.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    println!("live stats: {stats:?}");
    assert_eq!(markers, (0..5).collect());
    assert!(stats.frames >= 5 && stats.ps_recv >= 5, "{stats:?}");
    assert_eq!(counters.snapshot().frames, stats.frames);
}

#[test]
fn live_capture_errors_name_the_interface() {
    let err = LiveCapture::open("vxtap-no-such0", &LiveOptions::default()).unwrap_err();
    assert!(matches!(err, CaptureError::LiveOpen { .. }), "{err:?}");
    assert!(err.to_string().contains("vxtap-no-such0"), "{err}");

    let opts = LiveOptions { filter: Some("this is not bpf".into()), ..LiveOptions::default() };
    match LiveCapture::open("lo", &opts) {
        Err(e) if e.is_permission_denied() => println!("note: no permission for live capture, skipping"),
        Err(e) => assert!(e.to_string().contains("lo") && e.to_string().contains("filter"), "{e}"),
        Ok(_) => panic!("bad filter accepted"),
    }
}
