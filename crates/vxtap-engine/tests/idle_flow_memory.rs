//! What an open, idle keep-alive flow really holds, counted by the allocator: its boxed state and its
//! share of the flow table and timers, and no buffer kept for the next message (docs/performance.md,
//! "How cost grows with concurrent flows"). The memcap is charged by the flows' own accounting; this
//! test checks the allocations themselves.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use vxtap_decap::LinkType;
use vxtap_engine::{EngineConfig, Metrics, Pipeline};
use vxtap_testgen::mix::{MixParams, generate_mix};

/// The system allocator, counting the bytes and blocks live.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        LIVE_BLOCKS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
        // SAFETY: as for `dealloc` on `System`, which allocated `ptr`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: as for `realloc` on `System`, which allocated `ptr`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn an_idle_keep_alive_flow_holds_only_its_state() {
    let flows = 4000;
    // Every connection opens within 40 ms, makes one to three exchanges and stays open 10 s.
    let mix = generate_mix(&MixParams {
        seed: 7,
        connections: flows,
        requests_per_conn: 1..=3,
        mean_conn_gap_us: 10,
        hold_us: 10_000_000,
        body_max: 2000,
        large_body_fraction: 0.0,
        ..MixParams::default()
    });
    let closing = mix.frames[0].0 + 5_000_000;
    let cfg = Arc::new(EngineConfig { detect: false, ..EngineConfig::default() });
    let mut pipeline = Pipeline::new(cfg, Arc::new(Metrics::new(1)));
    let (bytes_before, blocks_before) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed));
    for (ts, frame) in mix.frames.iter().filter(|(ts, _)| *ts < closing) {
        pipeline.frame(LinkType::Ethernet, frame, *ts);
    }
    let events = pipeline.take_events();
    assert!(!events.is_empty(), "the exchanges before the idle time made events");
    drop(events);
    let stats = pipeline.stats();
    assert_eq!(stats.flows, flows as u64, "every connection opened");
    let closed =
        stats.closed_fin + stats.closed_rst + stats.closed_idle + stats.evicted + stats.closed_shutdown;
    assert_eq!(closed, 0, "and is still open");
    let bytes = (LIVE_BYTES.load(Relaxed) - bytes_before) as f64 / flows as f64;
    let blocks = (LIVE_BLOCKS.load(Relaxed) - blocks_before) as f64 / flows as f64;
    // One block per flow (its box; the table and timers are a few large blocks shared by all), and
    // about 760 + 200 bytes; at 13e0d72, which kept head buffers between messages, 3 blocks and
    // 2,146 bytes. The size of the box itself is the unit test's in `worker.rs` to hold.
    assert!(blocks < 1.05, "{blocks:.2} blocks per idle flow");
    assert!(bytes < 1100.0, "{bytes:.0} bytes per idle flow");
}
