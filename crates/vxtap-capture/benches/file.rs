//! Capture-file reading: records per second and bytes per second of `PcapFile` over an in-memory
//! pcap and pcapng of mirror-sized frames (the I/O is a memory copy, so this is the framing cost).

use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vxtap_capture::PcapFile;

/// Frame sizes of a mirror: ACKs, mid-size and full VXLAN-wrapped segments.
const SIZES: [usize; 4] = [104, 620, 1564, 9050];
const RECORDS: usize = 20_000;

fn pcap() -> Vec<u8> {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for i in 0..RECORDS {
        let len = SIZES[i % SIZES.len()] as u32;
        for v in [1_700_000_000 + i as u32 / 1000, i as u32 % 1_000_000, len, len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.resize(out.len() + len as usize, i as u8);
    }
    out
}

fn pcapng() -> Vec<u8> {
    let mut out = Vec::new();
    let mut block = |kind: u32, body: &[u8]| {
        let total = (12 + body.len().next_multiple_of(4)) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + body.len().next_multiple_of(4) - body.len(), 0);
        out.extend_from_slice(&total.to_le_bytes());
    };
    block(0x0a0d_0d0a, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    block(1, &[1, 0, 0, 0, 0, 0, 4, 0]);
    for i in 0..RECORDS {
        let len = SIZES[i % SIZES.len()];
        let mut body = Vec::with_capacity(20 + len);
        let ts = 1_700_000_000_000_000u64 + i as u64;
        for v in [0, (ts >> 32) as u32, ts as u32, len as u32, len as u32] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.resize(20 + len, i as u8);
        block(6, &body);
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("file");
    for (name, bytes) in [("pcap", pcap()), ("pcapng", pcapng())] {
        // Kept for the whole run: each iteration reads it through a cursor, without a copy first.
        let bytes: &'static [u8] = Vec::leak(bytes);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let reader = Box::new(Cursor::new(bytes));
                let mut file = PcapFile::from_reader("bench", reader).unwrap();
                file.for_each(|rec| {
                    std::hint::black_box(rec.data);
                })
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
