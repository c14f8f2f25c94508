//! `vxtap pcap` on captures of real TCP: HTTP/1.1 conversations between smoltcp sockets over a virtual
//! link that loses, reorders and duplicates frames, mirrored at the server's interface and wrapped in
//! VXLAN (`vxtap_testgen::smol`). The retransmissions, overlaps and out-of-order arrivals are smoltcp's
//! own, not hand-made.

mod common;

use common::{events, summary, vxtap};
use vxtap_testgen::score::{Score, score};
use vxtap_testgen::smol::{Channel, SmolParams, SmolRun, generate};

/// A lossy link: 4% loss each way on the wire plus 1% in smoltcp's fault injector on the client (about
/// 5% of the frames in each direction), 2% duplicated, 8% held back so that later frames overtake them.
fn lossy_channel() -> Channel {
    Channel { loss: 0.04, client_fault_drop_pct: 1, duplication: 0.02, reorder: 0.08, ..Channel::default() }
}

fn params(seed: u64, channel: Channel, mirror_loss: f64) -> SmolParams {
    SmolParams {
        seed,
        connections: 32,
        requests_per_conn: 1..=5,
        ipv6_fraction: 0.35,
        pipelined_fraction: 0.3,
        large_body_fraction: 0.15,
        channel,
        mirror_loss,
        ..SmolParams::default()
    }
}

/// Generates the run, feeds its pcap (as smoltcp's pcap writer wrote it) to `vxtap pcap` and scores the
/// events against the requests the clients sent.
fn run(params: &SmolParams) -> (SmolRun, Score) {
    let run = generate(params);
    assert!(run.stats.server_streams_match, "smoltcp delivered other bytes than sent: {:?}", run.stats);
    assert!(run.stats.large_bodies > 0 && run.stats.pipelined_connections > 0, "{:?}", run.stats);
    assert!(run.stats.ipv6_connections > 0 && run.stats.ipv6_connections < run.stats.connections);
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("smoltcp.pcap");
    std::fs::write(&pcap, &run.pcap).unwrap();
    let out =
        vxtap(&["pcap", pcap.to_str().unwrap(), "--body-limit", "16MiB", "--workers", "2", "--no-detect"]);
    assert!(out.status.success(), "vxtap failed: {}", String::from_utf8_lossy(&out.stderr));
    let s = score(&run.mix.expected, &events(&out));
    let st = &run.stats;
    eprintln!(
        "connections {} (ipv6 {}, pipelined {}), requests {} ({} bodies ≥ 100 KB), intact {}; frames at the \
         server {}, in the capture {} (mirror lost {}); retransmitted segments in the capture: client {}, \
         server {}; duplicates {}, out-of-order {}, repeated bytes {}; virtual {:.2} s\nscore {s:?}\nsummary {}",
        st.connections,
        st.ipv6_connections,
        st.pipelined_connections,
        st.requests,
        st.large_bodies,
        st.intact_requests,
        st.frames_at_server,
        st.frames_in_capture,
        st.mirror_lost,
        st.client_retransmissions_in_capture,
        st.server_retransmissions_in_capture,
        st.duplicates_in_capture,
        st.out_of_order_in_capture,
        st.repeated_in_capture,
        st.virtual_duration_us as f64 / 1e6,
        summary(&out),
    );
    (run, s)
}

fn assert_intact_exact_and_no_phantoms(s: &Score) {
    assert!(s.intact > 0);
    assert_eq!((s.exact, s.extra, s.damaged_unflagged), (s.intact, 0, 0), "{s:?}");
}

#[test]
fn clean_link_every_request_exact() {
    let (run, s) = run(&params(21, Channel::default(), 0.0));
    assert_eq!(run.stats.client_retransmissions + run.stats.wire_lost, 0, "{:?}", run.stats);
    assert_eq!(s.intact, run.mix.expected.len());
    assert_intact_exact_and_no_phantoms(&s);
}

#[test]
fn lossy_reordering_link_every_request_exact() {
    let (run, s) = run(&params(22, lossy_channel(), 0.0));
    let st = &run.stats;
    assert!(st.client_retransmissions_in_capture > 0, "{st:?}");
    assert!(st.server_retransmissions_in_capture > 0, "{st:?}");
    assert!(st.duplicates_in_capture > 0 && st.out_of_order_in_capture > 0, "{st:?}");
    // TCP repaired every loss before the server: everything the clients sent is in the capture.
    assert_eq!(s.intact, run.mix.expected.len());
    assert_intact_exact_and_no_phantoms(&s);
}

#[test]
fn lossy_link_and_lossy_mirror_intact_exact_others_flagged_or_absent() {
    let (run, s) = run(&params(111, lossy_channel(), 0.01));
    let st = &run.stats;
    assert!(st.mirror_lost > 0 && st.client_retransmissions_in_capture > 0, "{st:?}");
    // Intactness comes from the sequence numbers of what the capture holds.
    assert!(s.intact < run.mix.expected.len(), "the mirror lost no request bytes: pick another seed");
    assert_intact_exact_and_no_phantoms(&s);
}

/// A hole the server itself waited on for more than the reorder timeout (seed 132) is filled by the
/// retransmission, not declared a gap.
#[test]
fn hole_the_server_waits_for_outlives_the_reorder_timeout() {
    let (run, s) = run(&params(132, lossy_channel(), 0.0));
    assert_eq!(s.intact, run.mix.expected.len());
    assert_intact_exact_and_no_phantoms(&s);
}

/// After the mirror lost a request head (seed 101), the following requests, glued to the end of the
/// unframed body, are still found.
#[test]
fn resync_after_a_lost_head_finds_glued_request_lines() {
    let (_, s) = run(&params(101, lossy_channel(), 0.01));
    assert_intact_exact_and_no_phantoms(&s);
}

/// A wider sweep for investigations: `VXTAP_SMOL_SEEDS=100..140 VXTAP_SMOL_MIRROR_LOSS=0.01 cargo test
/// -p vxtap --test smoltcp sweep -- --ignored --nocapture` runs the lossy link (with a lossy mirror if
/// asked) on each seed, prints the summed score and the seeds that fail, and passes only if none does.
#[test]
#[ignore = "a long investigation run, on demand"]
fn sweep() {
    let seeds = std::env::var("VXTAP_SMOL_SEEDS").unwrap_or_else(|_| "100..110".to_string());
    let mirror_loss: f64 = std::env::var("VXTAP_SMOL_MIRROR_LOSS").map_or(0.0, |v| v.parse().unwrap());
    let (lo, hi) = seeds.split_once("..").expect("LO..HI");
    let (mut failed, mut total) = (Vec::new(), Score::default());
    for seed in lo.parse::<u64>().unwrap()..hi.parse::<u64>().unwrap() {
        let (_, s) = run(&params(seed, lossy_channel(), mirror_loss));
        if !s.is_perfect() {
            eprintln!("seed {seed} FAILED: {s:?}");
            failed.push(seed);
        }
        total += s;
    }
    eprintln!("SWEEP total {total:?}, recall {:.4}", total.exact as f64 / total.intact.max(1) as f64);
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
