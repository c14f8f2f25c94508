use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use vxtap_decap::LinkType;
use vxtap_testgen::mix::{MixEncap, MixParams, generate_mix};

use crate::{
    BATCH_BYTES, BATCH_ITEMS, BATCH_SLACK, Batch, Engine, EngineConfig, EventOutput, Overload, RequestHook,
    SPARE_BATCHES_PER_WORKER, SpareBatches,
};

#[test]
fn a_stuck_worker_costs_a_live_input_one_wait_then_counted_drops() {
    // The request hook runs on the worker: it holds the worker at the first request until released.
    let (release, held) = mpsc::channel::<()>();
    let held = Mutex::new(held);
    let hook: RequestHook = Arc::new(move |_, _| {
        let _ = held.lock().map(|rx| rx.recv());
    });
    let wait = Duration::from_millis(100);
    let cfg = EngineConfig {
        overload: Overload::WaitThenDrop(wait),
        queue_bytes: 64 << 10,
        detect: false,
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, EventOutput::Writer(Box::new(std::io::sink())), Some(hook)).unwrap();
    let mix =
        generate_mix(&MixParams { connections: 400, encap: MixEncap::None, seed: 5, ..MixParams::default() });
    let mut input = engine.dispatcher();
    let started = Instant::now();
    for (ts, frame) in &mix.frames {
        input.frame(LinkType::Ethernet, frame, *ts);
    }
    input.flush();
    let elapsed = started.elapsed();
    let metrics = engine.metrics();
    drop(release);
    drop(input);
    engine.finish().unwrap();
    let drops = metrics.shard_queue_drops.load(Relaxed);
    assert!(drops > 1000, "{drops} segments dropped");
    // Waiting once per batch would take a wait for each of the many batches that follow.
    assert!(elapsed < wait * 10, "input held up for {elapsed:?}");
}

#[test]
fn spare_batches_come_back_empty_bounded_and_never_oversized() {
    let spare = SpareBatches::new(1);
    let full = || Batch { items: Vec::with_capacity(BATCH_ITEMS), data: vec![7; BATCH_BYTES] };
    for _ in 0..SPARE_BATCHES_PER_WORKER + 5 {
        spare.give_back(full());
    }
    // grown past a full batch: freed, not kept
    spare.give_back(Batch { items: Vec::new(), data: vec![0; BATCH_BYTES + BATCH_SLACK + 1] });
    let mut kept = 0;
    while let Some(batch) = spare.take() {
        assert!(batch.items.is_empty() && batch.data.is_empty());
        assert!(batch.data.capacity() >= BATCH_BYTES && batch.data.capacity() <= BATCH_BYTES + BATCH_SLACK);
        kept += 1;
    }
    assert_eq!(kept, SPARE_BATCHES_PER_WORKER);
}
