//! A dead target (closed port): every request fails as `connect`, capture never waits, `finish` keeps
//! its timeout, memory stays bounded. Alone in its binary so that the memory reading is its own.

mod common;

use std::time::{Duration, Instant};

use common::{proc_status_kb, request};
use vxtap_replay::{ReplayClient, ReplayConfig, ReplayJob};
use vxtap_testgen::ports::unused_port;

#[test]
fn dead_target_bounded_time_and_memory() {
    let mut cfg = ReplayConfig::new(format!("http://127.0.0.1:{}", unused_port()));
    cfg.queue_capacity = 2048;
    cfg.queue_max_bytes = 8 << 20;
    let client = ReplayClient::start(cfg).unwrap();
    let sender = client.sender();

    const N: u64 = 200_000;
    const BODY: usize = 4096; // 800 MB submitted in all
    let body = vec![b'x'; BODY];
    let rss_before = proc_status_kb("VmRSS");
    let hwm_before = proc_status_kb("VmHWM");
    let start = Instant::now();
    let mut lat = Vec::with_capacity(N as usize);
    for i in 0..N {
        let target = format!("/upload/{i}");
        let r = request(b"POST", target.as_bytes(), &[(b"Host", b"h"), (b"Content-Length", b"4096")], &body);
        let job = ReplayJob::new(r, "10.0.0.7:50000".parse().unwrap(), "10.0.1.20:80".parse().unwrap(), i);
        let t = Instant::now();
        let _ = sender.submit(job);
        lat.push(t.elapsed());
    }
    let submitting = start.elapsed();
    let mean = lat.iter().sum::<Duration>() / N as u32;
    lat.sort();
    eprintln!("submits over 1 ms: {}", lat.iter().filter(|d| **d > Duration::from_millis(1)).count());
    let (p99, p999, worst) = (lat[lat.len() * 99 / 100], lat[lat.len() * 999 / 1000], lat[lat.len() - 1]);
    let mid = sender.stats();
    let finish_start = Instant::now();
    let stats = client.finish(Duration::from_secs(2));
    let finishing = finish_start.elapsed();
    let hwm_after = proc_status_kb("VmHWM");
    eprintln!("{stats:?}");
    eprintln!(
        "dead target: {N} submits of {BODY} B bodies in {submitting:?} (mean {mean:?}, p99 {p99:?}, p99.9 {p999:?}, worst {worst:?}); \
         finish took {finishing:?}; RSS before {rss_before} KiB, peak (VmHWM) {hwm_before} -> {hwm_after} KiB; \
         queue peak bytes bound 8 MiB, mid-run queue {} jobs / {} bytes",
        mid.queue_depth, mid.queue_bytes
    );
    assert!(finishing < Duration::from_millis(2500), "finish took {finishing:?}");
    assert_eq!(stats.accepted + stats.dropped_queue_full, N);
    assert!(stats.failed.connect > 0);
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.accepted, stats.failed.total() + stats.abandoned, "{stats:?}");
    assert!(mid.queue_bytes <= 8 << 20);
    assert!(p99 < Duration::from_millis(1), "submit p99 {p99:?}");
    // 800 MB went through submit; the process grew by far less.
    let growth_mib = hwm_after.saturating_sub(hwm_before) / 1024;
    assert!(growth_mib < 64, "peak memory grew by {growth_mib} MiB");
}
