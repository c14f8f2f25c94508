//! Requests per CPU-second of one thread on the benchmark's typical mix.
//!
//! `cargo run --release -p vxtap-detect --example throughput [SECONDS]`
//!
//! Wall-clock rates on a shared machine understate a core's rate (the thread is not always running);
//! this example divides by the thread's own CPU time (utime + stime from /proc/thread-self/stat) as
//! well as by wall time, and prints both.
#[path = "../benches/detect.rs"]
#[allow(dead_code)]
mod bench;

use std::time::Instant;

use vxtap_detect::Detector;

/// CPU time of the calling thread in seconds (Linux; clock ticks of 1/100 s).
fn thread_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let det = Detector::builtin();
    let mix = bench::mix();
    for r in &mix {
        std::hint::black_box(det.inspect(r));
    }
    let (t0, c0) = (Instant::now(), thread_cpu());
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        for r in &mix {
            std::hint::black_box(det.inspect(std::hint::black_box(r)));
        }
        n += mix.len() as u64;
    }
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "{n} requests, {:.0} req/s wall-clock, {:.2} us/request",
        n as f64 / wall,
        wall * 1e6 / n as f64
    );
    if let (Some(c0), Some(c1)) = (c0, thread_cpu()) {
        let cpu = c1 - c0;
        println!(
            "thread CPU {cpu:.2} s of {wall:.2} s wall: {:.0} req per CPU-second (one core)",
            n as f64 / cpu
        );
    }
}
