//! Replays 20 000 small requests to a fast local server and prints requests per second (run the
//! `throughput` example with `--release` for the optimised figure).

mod common;

use std::time::{Duration, Instant};

use common::{Behaviour, Server, small_job};
use vxtap_replay::{ReplayClient, ReplayConfig};

#[test]
fn throughput_20k_small_requests() {
    let server = Server::start(Behaviour { count_only: true, ..Behaviour::default() });
    let mut cfg = ReplayConfig::new(server.url());
    cfg.queue_capacity = 20_000;
    let client = ReplayClient::start(cfg).unwrap();
    let sender = client.sender();
    const N: u64 = 20_000;
    let start = Instant::now();
    for i in 0..N {
        sender.submit_wait(small_job(i), Duration::from_secs(30)).unwrap();
    }
    let stats = client.finish(Duration::from_secs(120));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(stats.sent, N, "{stats:?}");
    assert_eq!(server.wait_for(N, Duration::from_secs(5)), N);
    eprintln!(
        "replayed {N} requests in {secs:.3} s: {:.0} requests/s ({} connections, debug build)",
        N as f64 / secs,
        stats.connections_opened
    );
}
