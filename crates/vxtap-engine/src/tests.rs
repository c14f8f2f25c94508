use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use vxtap_decap::LinkType;
use vxtap_testgen::mix::{MixEncap, MixParams, generate_mix};

use crate::{Engine, EngineConfig, EventOutput, Overload, RequestHook};

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
