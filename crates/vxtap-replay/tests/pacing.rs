//! Offline pacing by capture timestamps: original timing, a multiple of it, or as fast as possible.

mod common;

use std::time::{Duration, Instant};

use common::{Behaviour, Server, small_job};
use vxtap_replay::{Pacing, ReplayClient, ReplayConfig};

/// Replays 5 jobs captured 100 ms apart; returns the arrival offsets from the first, in ms.
fn run(pacing: Pacing) -> Vec<f64> {
    let server = Server::start(Behaviour::default());
    let mut cfg = ReplayConfig::new(server.url());
    cfg.pacing = pacing;
    let client = ReplayClient::start(cfg).unwrap();
    let sender = client.sender();
    let base = 1_700_000_000_000_000u64;
    for i in 0..5u64 {
        let mut job = small_job(i);
        job.capture_ts_us = base + i * 100_000;
        sender.submit(job).unwrap();
    }
    let stats = client.finish(Duration::from_secs(5));
    assert_eq!(stats.sent, 5);
    let mut at: Vec<(Vec<u8>, Instant)> = server.records().into_iter().map(|r| (r.target, r.at)).collect();
    at.sort();
    let first = at[0].1;
    at.iter().map(|(_, t)| t.duration_since(first).as_secs_f64() * 1000.0).collect()
}

#[test]
fn pacing_original_multiple_fast() {
    let original = run(Pacing::Original);
    let double = run(Pacing::Multiple(2.0));
    let fast = run(Pacing::AsFastAsPossible);
    eprintln!("arrival offsets (ms): original {original:?}, 200% {double:?}, fast {fast:?}");
    for (i, t) in original.iter().enumerate() {
        let want = i as f64 * 100.0;
        assert!(*t >= want - 5.0 && *t <= want + 70.0, "original: job {i} at {t} ms, want {want}");
    }
    for (i, t) in double.iter().enumerate() {
        let want = i as f64 * 50.0;
        assert!(*t >= want - 5.0 && *t <= want + 60.0, "200%: job {i} at {t} ms, want {want}");
    }
    assert!(fast[4] < 100.0, "fast: last at {} ms", fast[4]);
}
