//! Reassembly throughput: a 4 MiB stream in 1448-byte segments, in order and with every run of 8
//! segments delivered backwards (out of order).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vxtap_decap::{Segment, SegmentHeader, TcpFlags};
use vxtap_reassembly::{CloseReason, Delivery, Dir, FlowTable, ReassemblyConfig, StreamHandler};

struct Count;

impl StreamHandler for Count {
    type Sink = u64;
    fn on_data(&mut self, _dir: Dir, data: &[u8], _at: Delivery, sink: &mut u64) {
        *sink += data.len() as u64;
    }
    fn on_close(&mut self, _ts: u64, _reason: CloseReason, _sink: &mut u64) {}
}

const STREAM: usize = 4 << 20;
const MSS: usize = 1448;

fn run(order: &[usize], data: &[u8]) -> u64 {
    let mut table = FlowTable::new(ReassemblyConfig::default());
    let mut sink = 0;
    let header = |seq: u32, flags: TcpFlags| SegmentHeader {
        tunnel: None,
        vlan: None,
        src: "10.0.0.1:40000".parse().unwrap(),
        dst: "10.0.0.2:80".parse().unwrap(),
        seq,
        ack: 0,
        flags,
        missing: 0,
    };
    table.process(&Segment { header: header(0, TcpFlags::SYN), payload: b"" }, 0, &mut sink, |_, _| Count);
    for &i in order {
        let start = i * MSS;
        let payload = &data[start..(start + MSS).min(data.len())];
        let seg = Segment { header: header(1 + start as u32, TcpFlags::ACK), payload };
        table.process(&seg, 1, &mut sink, |_, _| Count);
    }
    table.close_all(2, &mut sink);
    sink
}

fn bench(c: &mut Criterion) {
    let data = vec![b'x'; STREAM];
    let n = STREAM.div_ceil(MSS);
    let in_order: Vec<usize> = (0..n).collect();
    let reordered: Vec<usize> = in_order.chunks(8).flat_map(|c| c.iter().rev().copied()).collect();
    let mut group = c.benchmark_group("reassembly");
    group.throughput(Throughput::Bytes(STREAM as u64));
    group.bench_function("in_order", |b| b.iter(|| run(&in_order, &data)));
    group.bench_function("out_of_order", |b| b.iter(|| run(&reordered, &data)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
