//! A slow target (every answer delayed by 1 s) with a small queue: throughput limited by concurrency,
//! drops counted, submit never waits, memory bounded, finish keeps its timeout.

mod common;

use std::time::{Duration, Instant};

use common::{Behaviour, Server, proc_status_kb, request};
use vxtap_replay::{Rejected, ReplayClient, ReplayConfig, ReplayJob};

#[test]
fn slow_target_drops_counted_submit_never_blocks() {
    let server = Server::start(Behaviour { delay: Duration::from_secs(1), ..Behaviour::default() });
    let mut cfg = ReplayConfig::new(server.url());
    cfg.concurrency = 8;
    cfg.queue_capacity = 32;
    let client = ReplayClient::start(cfg).unwrap();
    let sender = client.sender();

    let body = vec![b'y'; 16 * 1024];
    let hwm_before = proc_status_kb("VmHWM");
    let mut latencies = Vec::new();
    let mut dropped = 0u64;
    let start = Instant::now();
    let mut i = 0u64;
    // 2.5 s of steady submissions, 20 000 per second.
    while start.elapsed() < Duration::from_millis(2500) {
        for _ in 0..20 {
            let target = format!("/slow/{i}");
            let r =
                request(b"PUT", target.as_bytes(), &[(b"Host", b"h"), (b"Content-Length", b"16384")], &body);
            let job =
                ReplayJob::new(r, "10.0.0.7:50000".parse().unwrap(), "10.0.1.20:80".parse().unwrap(), i);
            let t = Instant::now();
            if sender.submit(job) == Err(Rejected::QueueFull) {
                dropped += 1;
            }
            latencies.push(t.elapsed());
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let submitted = i;
    let finish_start = Instant::now();
    let stats = client.finish(Duration::from_millis(1500));
    let finishing = finish_start.elapsed();
    let hwm_after = proc_status_kb("VmHWM");
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = *latencies.last().unwrap();
    eprintln!("{stats:?}");
    eprintln!(
        "slow target: {submitted} submits, {dropped} dropped, {} sent; submit p99 {p99:?}, max {max:?}; \
         finish {finishing:?}; VmHWM {hwm_before} -> {hwm_after} KiB",
        stats.sent
    );
    assert_eq!(stats.dropped_queue_full, dropped);
    assert!(dropped > submitted / 2, "most submissions must be dropped");
    assert_eq!(stats.accepted + dropped, submitted);
    // 8 at a time, 1 s each: about 8 per second get through.
    assert!(stats.sent >= 8 && stats.sent <= 8 * 5, "{stats:?}");
    assert_eq!(stats.accepted, stats.sent + stats.failed.total() + stats.abandoned, "{stats:?}");
    assert!(stats.abandoned > 0);
    assert!(finishing < Duration::from_millis(2000), "finish took {finishing:?}");
    // Never waits for the target: submits take microseconds; even the slowest (the OS may preempt the
    // thread on a loaded machine) is far below the target's 1 s delay.
    assert!(p99 < Duration::from_millis(1), "submit p99 {p99:?}");
    assert!(max < Duration::from_millis(250), "slowest submit {max:?}");
    assert!(hwm_after.saturating_sub(hwm_before) / 1024 < 64);
}
