//! Replays small requests to a fast local recording server and prints requests per second.
//!
//! `cargo run --release -p vxtap-replay --example throughput [N] [CONCURRENCY] [THREADS]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Behaviour, Server, small_job};
use vxtap_replay::{ReplayClient, ReplayConfig};

fn main() {
    let arg =
        |i: usize, default: u64| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let n = arg(1, 20_000);
    let server = Server::start(Behaviour { count_only: true, ..Behaviour::default() });
    let mut cfg = ReplayConfig::new(server.url());
    cfg.concurrency = arg(2, 64) as usize;
    cfg.threads = arg(3, 1) as usize;
    cfg.queue_capacity = 8192;
    let client = ReplayClient::start(cfg.clone()).expect("start");
    let sender = client.sender();
    let start = Instant::now();
    for i in 0..n {
        sender.submit_wait(small_job(i), Duration::from_secs(30)).expect("submit");
    }
    let stats = client.finish(Duration::from_secs(300));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(server.wait_for(n, Duration::from_secs(5)), n);
    println!(
        "replayed {} of {n} requests in {secs:.3} s: {:.0} requests/s (concurrency {}, {} runtime thread(s), \
         {} connections, failed {})",
        stats.sent,
        stats.sent as f64 / secs,
        cfg.concurrency,
        cfg.threads,
        stats.connections_opened,
        stats.failed.total()
    );
}
