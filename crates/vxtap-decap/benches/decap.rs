//! Decapsulation cost per frame: a small ACK and a full-size data segment, VXLAN-wrapped.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vxtap_decap::{DecapConfig, LinkType, decode_frame};
use vxtap_testgen::frame::{Encap, TcpSpec, build, flags};

fn frame(payload: &[u8]) -> Vec<u8> {
    let tcp = TcpSpec {
        src: "10.0.0.7:51234".parse().unwrap(),
        dst: "10.0.1.20:80".parse().unwrap(),
        seq: 1,
        ack: 1,
        flags: flags::ACK,
        payload,
        vlans: &[],
        ip_extras: false,
    };
    let encap = Encap::Vxlan {
        vni: 1377,
        outer_src: "10.0.9.1".parse().unwrap(),
        outer_dst: "10.0.9.2".parse().unwrap(),
        sport: 1,
    };
    build(encap, &tcp)
}

fn bench(c: &mut Criterion) {
    let cfg = DecapConfig::default();
    let mut group = c.benchmark_group("decap");
    for (name, f) in [("ack", frame(b"")), ("1448B", frame(&[b'x'; 1448]))] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| decode_frame(LinkType::Ethernet, std::hint::black_box(&f), &cfg))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
