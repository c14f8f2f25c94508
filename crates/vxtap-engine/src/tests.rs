use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use vxtap_decap::LinkType;
use vxtap_testgen::mix::{MixEncap, MixParams, generate_mix};

use crate::{
    BATCH_BYTES, BATCH_ITEMS, Batch, Engine, EngineConfig, EventOutput, FULL_BATCH_DATA, Overload,
    RequestHook, SpareBatches,
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
fn spare_batches_come_back_empty_bounded_by_the_queues_and_full_size_only() {
    // Room for three full batches in the one worker's queue: three, plus two in hand, are kept.
    let spare = SpareBatches::new(1, 3 * SpareBatches::FULL_COST);
    let kept_at_most = 5;
    let used = |mut batch: Batch| {
        batch.data.extend_from_slice(&[7; BATCH_BYTES]);
        batch
    };
    // a live input's partial flush, and a batch grown past full size: freed, not kept, although
    // the pool has room
    spare.give_back(Batch { items: Vec::with_capacity(4), data: Vec::with_capacity(4096) });
    let mut grown =
        Batch { items: Vec::with_capacity(BATCH_ITEMS), data: Vec::with_capacity(FULL_BATCH_DATA) };
    grown.data.resize(FULL_BATCH_DATA + 1, 0);
    spare.give_back(grown);
    assert!(spare.rx.is_empty());
    let worked_through: Vec<Batch> = (0..kept_at_most + 3).map(|_| used(spare.full_size())).collect();
    for batch in worked_through {
        spare.give_back(batch);
    }
    let mut kept = 0;
    while let Ok(batch) = spare.rx.try_recv() {
        assert!(batch.items.is_empty() && batch.data.is_empty());
        assert_eq!((batch.items.capacity(), batch.data.capacity()), (BATCH_ITEMS, FULL_BATCH_DATA));
        kept += 1;
    }
    assert_eq!(kept, kept_at_most);
}
