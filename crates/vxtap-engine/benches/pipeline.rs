//! The whole single-threaded pipeline (decap, reassembly, HTTP, events) on a generated mirror mix
//! held in memory: what one worker core does, without file or socket I/O.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vxtap_decap::LinkType;
use vxtap_engine::{EngineConfig, Metrics, Pipeline};
use vxtap_testgen::mix::{MixParams, generate_mix};

fn bench(c: &mut Criterion) {
    let mix = generate_mix(&MixParams { seed: 42, connections: 2000, ..MixParams::default() });
    let bytes: usize = mix.frames.iter().map(|(_, f)| f.len()).sum();
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    for detect in [false, true] {
        let cfg = Arc::new(EngineConfig { detect, ..EngineConfig::default() });
        group.throughput(Throughput::Bytes(bytes as u64));
        let name = if detect { "mix_bytes_detect" } else { "mix_bytes" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut p = Pipeline::new(cfg.clone(), Arc::new(Metrics::new(1)));
                for (ts, frame) in &mix.frames {
                    p.frame(LinkType::Ethernet, frame, *ts);
                }
                p.finish();
                p.take_events().iter().map(Vec::len).sum::<usize>()
            })
        });
    }
    group.finish();
    eprintln!("mix: {} frames, {} bytes, {} requests", mix.frames.len(), bytes, mix.expected.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
