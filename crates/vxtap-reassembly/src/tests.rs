use super::*;
use proptest::prelude::*;
use vxtap_decap::{SegmentHeader, TcpFlags, Tunnel};

/// What a test handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Data(Dir, Vec<u8>),
    Gap(Dir, u64),
    End(Dir),
    Close(CloseReason),
}

#[derive(Default)]
struct Recorder;

impl StreamHandler for Recorder {
    type Sink = Vec<Seen>;
    fn on_data(&mut self, dir: Dir, data: &[u8], _at: Delivery, sink: &mut Vec<Seen>) {
        match sink.last_mut() {
            Some(Seen::Data(d, bytes)) if *d == dir => bytes.extend_from_slice(data),
            _ => sink.push(Seen::Data(dir, data.to_vec())),
        }
    }
    fn on_gap(&mut self, dir: Dir, len: u64, _at: Delivery, sink: &mut Vec<Seen>) {
        sink.push(Seen::Gap(dir, len));
    }
    fn on_end(&mut self, dir: Dir, _ts: u64, sink: &mut Vec<Seen>) {
        sink.push(Seen::End(dir));
    }
    fn on_close(&mut self, _ts: u64, reason: CloseReason, sink: &mut Vec<Seen>) {
        sink.push(Seen::Close(reason));
    }
}

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "10.0.0.2:80";

fn header(src: &str, dst: &str, seq: u32, flags: TcpFlags) -> SegmentHeader {
    SegmentHeader {
        tunnel: None,
        vlan: None,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        seq,
        ack: 0,
        flags,
        missing: 0,
    }
}

fn feed(table: &mut FlowTable<Recorder>, sink: &mut Vec<Seen>, h: SegmentHeader, payload: &[u8], ts: u64) {
    table.process(&Segment { header: h, payload }, ts, sink, |_, _| Recorder);
}

fn data_of(seen: &[Seen], dir: Dir) -> Vec<u8> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Data(d, bytes) if *d == dir => Some(bytes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn ack() -> TcpFlags {
    TcpFlags::ACK
}

#[test]
fn handshake_data_both_ways_and_fin_close() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 100, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 5000, TcpFlags::SYN.union(ack())), 101), b"", 2);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 101, ack()), b"GET / HTTP/1.1\r\n\r\n", 3);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5001, ack()), b"HTTP/1.1 200 OK\r\n\r\n", 4);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 119, ack().union(TcpFlags::FIN)), b"", 5);
    assert_eq!(t.len(), 1);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5020, ack().union(TcpFlags::FIN)), b"", 6);
    assert_eq!(t.len(), 0);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 120, ack()), b"", 7);
    assert_eq!(t.len(), 0, "the last ACK opens no new flow");
    assert_eq!(t.stats().stray, 1);
    assert_eq!(
        s,
        vec![
            Seen::Data(Dir::A, b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            Seen::Data(Dir::B, b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
            Seen::End(Dir::A),
            Seen::End(Dir::B),
            Seen::Close(CloseReason::Fin),
        ]
    );
    assert_eq!(t.stats().closed_fin, 1);
    assert_eq!(t.memory(), 0);
}

#[test]
fn out_of_order_duplicates_and_wraparound() {
    let isn = u32::MAX - 5;
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, isn, TcpFlags::SYN), b"", 1);
    let base = isn.wrapping_add(1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, base.wrapping_add(8), ack()), b"89abcdef", 2);
    feed(&mut t, &mut s, header(CLIENT, SERVER, base.wrapping_add(4), ack()), b"4567", 3);
    feed(&mut t, &mut s, header(CLIENT, SERVER, base.wrapping_add(4), ack()), b"4567", 4);
    feed(&mut t, &mut s, header(CLIENT, SERVER, base, ack()), b"0123", 5);
    feed(&mut t, &mut s, header(CLIENT, SERVER, base, ack()), b"0123", 6);
    assert_eq!(data_of(&s, Dir::A), b"0123456789abcdef");
    assert_eq!(t.stats().duplicates, 2);
    assert_eq!(t.stats().gaps, 0);
}

#[test]
fn conflicting_overlap_keeps_first_data_and_counts() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 5, ack()), b"AAAA", 2);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 3, ack()), b"xxBBBBzz", 3);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1, ack()), b"01", 4);
    assert_eq!(data_of(&s, Dir::A), b"01xxAAAAzz");
    assert_eq!(t.stats().overlap_conflicts, 1);
}

#[test]
fn hole_becomes_gap_after_reorder_timeout() {
    let cfg = ReassemblyConfig { reorder_timeout_us: 1000, ..ReassemblyConfig::default() };
    let mut t = FlowTable::new(cfg);
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1, ack()), b"abc", 10);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 9, ack()), b"ijk", 20);
    t.advance(500, &mut s);
    assert_eq!(data_of(&s, Dir::A), b"abc");
    t.advance(1100, &mut s);
    assert_eq!(
        &s[1..],
        &[Seen::Gap(Dir::A, 5), Seen::Data(Dir::A, b"ijk".to_vec())],
        "the 5 missing bytes are a gap and what follows is delivered"
    );
    feed(&mut t, &mut s, header(CLIENT, SERVER, 4, ack()), b"defgh", 1200);
    assert_eq!(t.stats().duplicates, 1, "the late segment is old news");
}

#[test]
fn truncated_segment_is_an_exact_gap() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    let mut cut = header(CLIENT, SERVER, 1, ack());
    cut.missing = 100;
    feed(&mut t, &mut s, cut, b"head", 2);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 105, ack()), b"tail", 3);
    assert_eq!(
        s,
        vec![
            Seen::Data(Dir::A, b"head".to_vec()),
            Seen::Gap(Dir::A, 100),
            Seen::Data(Dir::A, b"tail".to_vec())
        ]
    );
}

#[test]
fn close_flushes_holes_and_bytes_missing_before_fin() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1, ack()), b"ab", 2);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 5, ack()), b"ef", 3);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 0, ack()), b"", 3);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 10, ack().union(TcpFlags::FIN)), b"", 4);
    t.close_all(5, &mut s);
    assert_eq!(
        s,
        vec![
            Seen::Data(Dir::A, b"ab".to_vec()),
            Seen::Gap(Dir::A, 2),
            Seen::Data(Dir::A, b"ef".to_vec()),
            Seen::Gap(Dir::A, 3),
            Seen::End(Dir::A),
            Seen::Close(CloseReason::Shutdown),
        ]
    );
}

#[test]
fn one_direction_flow_closes_on_its_fin() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1, ack()), b"x", 2);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 2, ack().union(TcpFlags::FIN)), b"", 3);
    assert!(t.is_empty());
    assert_eq!(s.last(), Some(&Seen::Close(CloseReason::Fin)));
}

#[test]
fn midstream_flow_starts_at_first_segment_and_rst_closes() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 777, ack()), b"mid", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 780, ack()), b"stream", 2);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 1, TcpFlags::RST), b"", 3);
    assert_eq!(data_of(&s, Dir::A), b"midstream");
    assert_eq!(s.last(), Some(&Seen::Close(CloseReason::Rst)));
}

#[test]
fn idle_flows_expire_and_vnis_never_mix() {
    let mut t = FlowTable::new(ReassemblyConfig { idle_timeout_us: 1_000, ..ReassemblyConfig::default() });
    let mut s = Vec::new();
    let tunnel = |vni| Tunnel {
        kind: vxtap_decap::TunnelKind::Vxlan,
        vni,
        src: "10.9.0.1".parse().unwrap(),
        dst: "10.9.0.2".parse().unwrap(),
    };
    for vni in [1, 2] {
        let mut h = header(CLIENT, SERVER, 0, ack());
        h.tunnel = Some(tunnel(vni));
        feed(&mut t, &mut s, h, b"same addresses", 10);
    }
    assert_eq!(t.len(), 2);
    t.advance(500, &mut s);
    assert_eq!(t.len(), 2);
    t.advance(1_011, &mut s);
    assert!(t.is_empty());
    assert_eq!(t.stats().closed_idle, 2);
}

#[test]
fn memcap_evicts_least_recent_flows() {
    let cfg = ReassemblyConfig {
        memcap: 10 * FlowTable::<Recorder>::FLOW_OVERHEAD + 4000,
        ..ReassemblyConfig::default()
    };
    let mut t = FlowTable::new(cfg);
    let mut s = Vec::new();
    for i in 0..50u16 {
        let client = format!("10.0.0.1:{}", 1000 + i);
        // Data after a hole stays buffered: 1000 bytes per flow.
        feed(&mut t, &mut s, header(&client, SERVER, 0, TcpFlags::SYN), b"", u64::from(i));
        feed(&mut t, &mut s, header(&client, SERVER, 100, ack()), &[b'x'; 1000], u64::from(i));
        assert!(
            t.memory() <= 10 * FlowTable::<Recorder>::FLOW_OVERHEAD + 4000,
            "memory {} over cap",
            t.memory()
        );
    }
    assert!(t.stats().evicted >= 40);
    assert!(t.len() <= 10);
}

#[test]
fn flow_count_limit_evicts() {
    let mut t = FlowTable::new(ReassemblyConfig { max_flows: 3, ..ReassemblyConfig::default() });
    let mut s = Vec::new();
    for i in 0..10u16 {
        feed(&mut t, &mut s, header(&format!("10.0.0.1:{}", 1000 + i), SERVER, 0, ack()), b"x", u64::from(i));
    }
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats().evicted, 7);
}

#[test]
fn stream_without_syn_keeps_segments_that_arrive_before_its_first_one() {
    // The SYN was lost and the connection's first two data segments arrive swapped: the bytes of the
    // first must not be taken for bytes delivered before the capture began.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1006, ack()), b"world", 10);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1000, ack()), b"hello ", 20);
    assert!(data_of(&s, Dir::A).is_empty(), "a guessed start holds its bytes for the reorder timeout");
    t.advance(20 + ReassemblyConfig::default().reorder_timeout_us, &mut s);
    assert_eq!(data_of(&s, Dir::A), b"hello world");
    assert!(!s.iter().any(|e| matches!(e, Seen::Gap(..))), "a midstream start is not a loss: {s:?}");
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1011, ack()), b"!", 30);
    assert_eq!(data_of(&s, Dir::A), b"hello world!");

    // The same, with a SYN-ACK from the server naming the client's start: no wait, and a real hole
    // after that start is a gap.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 5006, ack()), b"world", 10);
    let mut syn_ack = header(SERVER, CLIENT, 9000, TcpFlags::SYN.union(ack()));
    syn_ack.ack = 5000;
    feed(&mut t, &mut s, syn_ack, b"", 11);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 5000, ack()), b"hello ", 12);
    assert_eq!(data_of(&s, Dir::A), b"hello world");
    t.close_all(13, &mut s);
    assert!(!s.iter().any(|e| matches!(e, Seen::Gap(..))), "{s:?}");
}

#[test]
fn a_syn_after_a_bare_segment_fixes_the_start_so_a_leading_hole_is_a_gap() {
    // The client's data opens the flow; the server's first packet seen is a bare ACK, which guesses
    // its stream's start; its SYN-ACK, reordered by the mirror, then names the start exactly, so the
    // bytes missing before the server's first data are a loss, not a midstream start.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 101, ack()), b"GET / HTTP/1.1\r\n\r\n", 10);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5001, ack()), b"", 11);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5000, TcpFlags::SYN.union(ack())), b"", 12);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5006, ack()), b"world", 13);
    t.close_all(14, &mut s);
    assert!(s.iter().any(|e| matches!(e, Seen::Gap(Dir::B, 5))), "{s:?}");
}

#[test]
fn timers_of_closed_flows_do_not_pile_up() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    // 50,000 connections open and close by RST well within the idle timeout; 10 stay open.
    for i in 0..50_010u32 {
        let client = format!("10.{}.{}.{}:40000", i >> 16, (i >> 8) & 255, i & 255);
        feed(&mut t, &mut s, header(&client, SERVER, 0, ack()), b"x", u64::from(i));
        if i < 50_000 {
            feed(&mut t, &mut s, header(&client, SERVER, 1, TcpFlags::RST), b"", u64::from(i));
        }
        assert!(
            t.timers.len() <= 2 * t.len() + TIMER_SLACK + 1,
            "{} timers, {} flows",
            t.timers.len(),
            t.len()
        );
    }
    assert_eq!(t.len(), 10);
    assert_eq!(t.stats().closed_rst, 50_000);
}

#[test]
fn flow_keys_stay_compact() {
    // Stored in the table, its timer heap and the tombstones of every connection.
    assert!(std::mem::size_of::<FlowKey>() <= 56, "{}", std::mem::size_of::<FlowKey>());
}

#[test]
fn shard_hash_is_symmetric() {
    let fwd = header(CLIENT, SERVER, 0, ack());
    let rev = header(SERVER, CLIENT, 0, ack());
    assert_eq!(FlowKey::of(&fwd).0.shard_hash(), FlowKey::of(&rev).0.shard_hash());
    assert_ne!(FlowKey::of(&fwd).1, FlowKey::of(&rev).1);
}

#[test]
fn shard_hash_spreads_sequential_clients_evenly() {
    // Clients differing only in port, only in address, and IPv6 clients in one /64.
    let clients: Vec<String> = (0..4000u32)
        .map(|i| format!("10.0.0.1:{}", 1024 + i))
        .chain((0..4000u32).map(|i| format!("10.{}.{}.{}:40000", i >> 16, (i >> 8) & 255, i & 255)))
        .chain((0..4000u32).map(|i| format!("[fd00::{:x}]:443", i)))
        .collect();
    for shards in [2u64, 3, 4, 8] {
        let mut counts = vec![0u32; shards as usize];
        for client in &clients {
            let key = FlowKey::of(&header(client, SERVER, 0, ack())).0;
            counts[(key.shard_hash() % shards) as usize] += 1;
        }
        let mean = clients.len() as f64 / shards as f64;
        for count in &counts {
            assert!((f64::from(*count) - mean).abs() < mean * 0.1, "{shards} shards: {counts:?}");
        }
    }
}

proptest! {
    /// Any segmentation, order and duplication of a stream reassembles to the same bytes.
    #[test]
    fn any_segmentation_order_and_duplication(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        cuts in proptest::collection::vec(1usize..400, 1..40),
        order in proptest::collection::vec(any::<u32>(), 0..60),
        dups in proptest::collection::vec(any::<u16>(), 0..10),
        isn in any::<u32>(),
    ) {
        let mut segments = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < data.len() {
            let len = cuts[i % cuts.len()].min(data.len() - at);
            segments.push((at, len));
            at += len;
            i += 1;
        }
        for d in &dups {
            let pick = segments[usize::from(*d) % segments.len()];
            segments.push(pick);
        }
        for (i, r) in order.iter().enumerate() {
            let (a, b) = (i % segments.len(), *r as usize % segments.len());
            segments.swap(a, b);
        }
        let mut t = FlowTable::new(ReassemblyConfig::default());
        let mut s = Vec::new();
        feed(&mut t, &mut s, header(CLIENT, SERVER, isn, TcpFlags::SYN), b"", 0);
        for (n, (start, len)) in segments.iter().enumerate() {
            let seq = isn.wrapping_add(1).wrapping_add(*start as u32);
            feed(&mut t, &mut s, header(CLIENT, SERVER, seq, ack()), &data[*start..start + len], n as u64);
        }
        t.close_all(10_000, &mut s);
        prop_assert_eq!(data_of(&s, Dir::A), data);
        prop_assert!(!s.iter().any(|x| matches!(x, Seen::Gap(..))));
        prop_assert_eq!(t.stats().gaps, 0);
    }

    /// Losing segments yields gaps whose lengths plus the delivered bytes cover the stream exactly.
    #[test]
    fn losses_become_exact_gaps(
        data in proptest::collection::vec(any::<u8>(), 1..2000),
        seg in 1usize..300,
        lose in proptest::collection::vec(any::<bool>(), 1..20),
    ) {
        let mut t = FlowTable::new(ReassemblyConfig::default());
        let mut s = Vec::new();
        feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 0);
        let mut expected = Vec::new();
        for (n, start) in (0..data.len()).step_by(seg).enumerate() {
            let end = (start + seg).min(data.len());
            if lose[n % lose.len()] {
                expected.extend(std::iter::repeat_n(None, end - start));
            } else {
                feed(&mut t, &mut s, header(CLIENT, SERVER, 1 + start as u32, ack()), &data[start..end], n as u64);
                expected.extend(data[start..end].iter().map(|b| Some(*b)));
            }
        }
        let fin = header(CLIENT, SERVER, 1 + data.len() as u32, ack().union(TcpFlags::FIN));
        feed(&mut t, &mut s, fin, b"", 9_999);
        t.close_all(10_000, &mut s);
        let mut got = Vec::new();
        for x in &s {
            match x {
                Seen::Data(Dir::A, bytes) => got.extend(bytes.iter().map(|b| Some(*b))),
                Seen::Gap(Dir::A, len) => got.extend(std::iter::repeat_n(None, *len as usize)),
                _ => {}
            }
        }
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn a_single_flow_over_the_memcap_is_cut_too() {
    let mut t = FlowTable::new(ReassemblyConfig {
        memcap: FlowTable::<Recorder>::FLOW_OVERHEAD + 1000,
        ..ReassemblyConfig::default()
    });
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 10, ack()), &[b'x'; 2000], 2);
    assert!(t.is_empty());
    assert_eq!(t.stats().evicted, 1);
    assert_eq!(t.memory(), 0);
    assert_eq!(s.last(), Some(&Seen::Close(CloseReason::Evicted)));
}

#[test]
fn a_hole_the_receiver_still_waits_for_outlives_the_reorder_timeout() {
    let cfg = ReassemblyConfig { reorder_timeout_us: 1000, ..ReassemblyConfig::default() };
    let mut t = FlowTable::new(cfg);
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1, ack()), b"abc", 10);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 9, ack()), b"ijk", 20);
    // The server keeps acknowledging byte 4: it lacks the same bytes.
    let mut dup_ack = header(SERVER, CLIENT, 50, ack());
    dup_ack.ack = 4;
    feed(&mut t, &mut s, dup_ack, b"", 30);
    t.advance(5_000, &mut s);
    assert_eq!(t.stats().gaps, 0, "the retransmission is still to come");
    feed(&mut t, &mut s, header(CLIENT, SERVER, 4, ack()), b"defgh", 6_000);
    assert_eq!(data_of(&s, Dir::A), b"abcdefghijk");
    // Once the receiver acknowledges past a hole, the mirror lost those bytes: the timeout applies.
    feed(&mut t, &mut s, header(CLIENT, SERVER, 20, ack()), b"zz", 7_000);
    dup_ack.ack = 22;
    feed(&mut t, &mut s, dup_ack, b"", 7_001);
    t.advance(9_000, &mut s);
    assert_eq!(t.stats().gaps, 1);
}

#[test]
fn a_late_duplicate_after_close_opens_no_new_flow_but_a_new_syn_does() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET / HTTP/1.1\r\n\r\n", 2);
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 0, TcpFlags::SYN.union(ack())), 1), b"", 2);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 19, ack().union(TcpFlags::FIN)), 1), b"", 3);
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 1, ack().union(TcpFlags::FIN)), 20), b"", 4);
    assert!(t.is_empty());
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET / HTTP/1.1\r\n\r\n", 5);
    assert!(t.is_empty(), "a duplicate of the closed connection's data");
    // the mirror delayed copies of the handshake past the close (seen in the lab under reordering)
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 5);
    assert!(t.is_empty(), "a late copy of the closed connection's SYN");
    feed(&mut t, &mut s, header(SERVER, CLIENT, 0, TcpFlags::SYN.union(ack())), b"", 5);
    assert!(t.is_empty(), "a late copy of its SYN-ACK");
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET / HTTP/1.1\r\n\r\n", 5);
    assert!(t.is_empty(), "and of its request, after them");
    assert_eq!(t.stats().stray, 4);
    assert_eq!(data_of(&s, Dir::A), b"GET / HTTP/1.1\r\n\r\n", "the request was delivered once");
    feed(&mut t, &mut s, header(CLIENT, SERVER, 5000, TcpFlags::SYN), b"", 6);
    assert_eq!(t.len(), 1, "the port reused by a new connection");
}

/// Settles a stream started without a handshake (at capture time 2 s, past the reorder timeout),
/// then closes the connection both ways: the client's FIN at `client_fin`, the server's at
/// `server_fin`.
fn settle_and_close(t: &mut FlowTable<Recorder>, s: &mut Vec<Seen>, client_fin: u32, server_fin: u32) {
    t.advance(2_000_000, s);
    feed(t, s, header(CLIENT, SERVER, client_fin, ack().union(TcpFlags::FIN)), b"", 2_000_001);
    feed(t, s, header(SERVER, CLIENT, server_fin, ack().union(TcpFlags::FIN)), b"", 2_000_002);
    assert!(t.is_empty(), "the connection closed");
}

#[test]
fn a_late_syn_ack_is_known_by_the_client_isn_it_acknowledges() {
    // The server's SYN-ACK was not seen before the close, so only the client's ISN is known; its
    // late copy acknowledges that ISN (the lab, relay dup=0.4, reorder=0.6, maxdelay=300: a request
    // came out twice).
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 1);
    let request = SegmentHeader { ack: 5001, ..header(CLIENT, SERVER, 1, ack()) };
    feed(&mut t, &mut s, request, b"GET / HTTP/1.1\r\n\r\n", 2);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5001, ack()), b"HTTP/1.1 204 No Content\r\n\r\n", 3);
    settle_and_close(&mut t, &mut s, 19, 5028);
    let mut syn_ack = header(SERVER, CLIENT, 5000, TcpFlags::SYN.union(ack()));
    syn_ack.ack = 1;
    feed(&mut t, &mut s, syn_ack, b"", 2_000_003);
    feed(&mut t, &mut s, request, b"GET / HTTP/1.1\r\n\r\n", 2_000_004);
    assert!(t.is_empty(), "the late SYN-ACK and request opened a flow");
    let new_syn_ack = SegmentHeader { seq: 9000, ack: 7001, ..syn_ack };
    feed(&mut t, &mut s, new_syn_ack, b"", 2_000_005);
    assert_eq!(t.len(), 1, "a SYN-ACK of a new connection on the same ports");
}

#[test]
fn a_syn_after_a_close_opens_a_flow_when_the_old_handshake_was_not_seen() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    // picked up midstream: no initial sequence number is known, so no SYN can be told stale
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1, ack()), b"GET / HTTP/1.1\r\n\r\n", 1);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 1, ack()), b"HTTP/1.1 204 No Content\r\n\r\n", 2);
    settle_and_close(&mut t, &mut s, 19, 28);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 2_000_003);
    assert_eq!(t.len(), 1);
}

#[test]
fn a_server_end_before_any_client_segment_waits_for_the_acknowledged_request() {
    // As the lab's reordering relay delivered one connection: the whole server side first, the
    // client's request last. The server acknowledged the request, so it was sent: the flow is no
    // one-direction mirror and must not close at the server's FIN.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    let request = b"GET / HTTP/1.1\r\n\r\n";
    let server = |seq, flags| {
        let mut h = header(SERVER, CLIENT, seq, flags);
        h.ack = 101 + request.len() as u32;
        h
    };
    let mut syn_ack = server(7000, TcpFlags::SYN.union(ack()));
    syn_ack.ack = 101;
    feed(&mut t, &mut s, syn_ack, b"", 1);
    feed(&mut t, &mut s, server(7001, ack()), b"HTTP/1.1 204 No Content\r\n\r\n", 2);
    feed(&mut t, &mut s, server(7028, ack().union(TcpFlags::FIN)), b"", 3);
    assert_eq!(t.len(), 1, "the request is still to come");
    feed(&mut t, &mut s, header(CLIENT, SERVER, 101, ack()), request, 4);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 119, ack().union(TcpFlags::FIN)), b"", 5);
    assert!(t.is_empty());
    assert_eq!(data_of(&s, Dir::B), request);
    assert_eq!(s.last(), Some(&Seen::Close(CloseReason::Fin)));
}

#[test]
fn syn_ack_gives_the_client_stream_start_when_the_syn_was_lost() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    let mut syn_ack = header(SERVER, CLIENT, 7000, TcpFlags::SYN.union(ack()));
    syn_ack.ack = 101;
    feed(&mut t, &mut s, syn_ack, b"", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 104, ack()), b"def", 2);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 101, ack()), b"abc", 3);
    assert_eq!(data_of(&s, Dir::B), b"abcdef");
}

/// Records where each delivery sits: direction, offset and the other direction's offset acked.
struct Positions;

impl StreamHandler for Positions {
    type Sink = Vec<(Dir, u64, Option<u64>)>;
    fn on_data(&mut self, dir: Dir, _data: &[u8], at: Delivery, sink: &mut Self::Sink) {
        sink.push((dir, at.offset, at.acked));
    }
    fn on_close(&mut self, _ts: u64, _reason: CloseReason, _sink: &mut Self::Sink) {}
}

/// Feeds `segments` (each with its acknowledgment number), the i-th at capture time i + 1, closes
/// the flow and returns where each delivery sat.
fn positions(segments: &[(SegmentHeader, u32, &[u8])]) -> Vec<(Dir, u64, Option<u64>)> {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    for (&(h, ack, payload), ts) in segments.iter().zip(1..) {
        t.process(&Segment { header: SegmentHeader { ack, ..h }, payload }, ts, &mut s, |_, _| Positions);
    }
    t.close_all(segments.len() as u64 + 1, &mut s);
    s
}

#[test]
fn deliveries_say_their_offset_and_what_their_segment_acknowledged() {
    // Client 10 + 8 bytes; the server's two answers arrive in reverse order, each delivered with
    // the acknowledgment its own segment carried.
    let s = positions(&[
        (header(CLIENT, SERVER, 100, TcpFlags::SYN), 0, b""),
        (header(SERVER, CLIENT, 5000, TcpFlags::SYN.union(ack())), 101, b""),
        (header(CLIENT, SERVER, 101, ack()), 5001, b"0123456789"),
        (header(CLIENT, SERVER, 111, ack()), 5001, b"abcdefgh"),
        (header(SERVER, CLIENT, 5005, ack()), 119, b"wxyz"),
        (header(SERVER, CLIENT, 5001, ack()), 111, b"WXYZ"),
    ]);
    assert_eq!(
        s,
        [(Dir::A, 0, Some(0)), (Dir::A, 10, Some(0)), (Dir::B, 0, Some(10)), (Dir::B, 4, Some(18)),]
    );
}

#[test]
fn server_data_that_overtook_the_client_bytes_it_acknowledges_says_so() {
    // The client's request (bytes 101..119) waits behind a hole at 101..104 while the server's
    // answer, which acknowledges all of it, arrives: it is delivered first, saying it acknowledged
    // offset 18 of a client stream that has delivered nothing yet; the handler holds it from that.
    let s = positions(&[
        (header(CLIENT, SERVER, 100, TcpFlags::SYN), 0, b""),
        (header(SERVER, CLIENT, 5000, TcpFlags::SYN.union(ack())), 101, b""),
        (header(CLIENT, SERVER, 104, ack()), 5001, b" / HTTP/1.1\r\n\r\n"),
        (header(SERVER, CLIENT, 5001, ack()), 119, b"HTTP/1.1 200 OK\r\n\r\n"),
        (header(CLIENT, SERVER, 101, ack()), 5001, b"GET"),
    ]);
    assert_eq!(s, [(Dir::B, 0, Some(18)), (Dir::A, 0, Some(0)), (Dir::A, 3, Some(0))]);
}

#[test]
fn without_the_syn_ack_the_clients_first_ack_names_the_servers_start() {
    // The SYN-ACK and the server's first answer were lost. The client's request acknowledged the
    // server's ISN, so the server bytes before its first captured ones are a loss (the answer to
    // the request), not the start of a stream picked up midstream.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 100, TcpFlags::SYN), b"", 1);
    let request = SegmentHeader { ack: 5001, ..header(CLIENT, SERVER, 101, ack()) };
    feed(&mut t, &mut s, request, b"GET /1 HTTP/1.1\r\n\r\n", 2);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5089, ack()), b"HTTP/1.1 200 OK\r\n\r\n", 3);
    t.close_all(4, &mut s);
    assert!(s.iter().any(|e| matches!(e, Seen::Gap(Dir::B, 88))), "{s:?}");
    assert_eq!(data_of(&s, Dir::B), b"HTTP/1.1 200 OK\r\n\r\n");
}

#[test]
fn a_start_named_by_a_handshake_never_cuts_bytes_buffered_before_it() {
    // A client segment at its first byte acknowledging more than the server's ISN (a server that
    // spoke first, its two lines reordered): the server bytes already buffered below that
    // acknowledgment are kept.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 100, TcpFlags::SYN), b"", 1);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5012, ack()), b"250 ok\r\n", 2);
    feed(&mut t, &mut s, header(SERVER, CLIENT, 5001, ack()), b"220 ready\r\n", 3);
    let first = SegmentHeader { ack: 5012, ..header(CLIENT, SERVER, 101, ack()) };
    feed(&mut t, &mut s, first, b"HELO x\r\n", 4);
    t.close_all(5, &mut s);
    assert_eq!(data_of(&s, Dir::B), b"220 ready\r\n250 ok\r\n", "{s:?}");
}

#[test]
fn picked_up_midstream_bytes_after_a_bare_ack_are_a_loss() {
    // No handshake captured. The server's bare ACK names its next byte, 5000; its first captured
    // data starts at 5088: the 88 bytes between were sent and lost (an answer), not before the
    // capture began. A bare ACK at the first data's own number says nothing is missing.
    for (bare_seq, lost) in [(5000, Some(88)), (5088, None)] {
        let mut t = FlowTable::new(ReassemblyConfig::default());
        let mut s = Vec::new();
        feed(&mut t, &mut s, header(CLIENT, SERVER, 101, ack()), b"GET /2 HTTP/1.1\r\n\r\n", 1);
        feed(&mut t, &mut s, header(SERVER, CLIENT, bare_seq, ack()), b"", 2);
        feed(&mut t, &mut s, header(SERVER, CLIENT, 5088, ack()), b"HTTP/1.1 200 OK\r\n\r\n", 3);
        t.close_all(4, &mut s);
        let gaps: Vec<u64> =
            s.iter().filter_map(|e| if let Seen::Gap(Dir::B, n) = e { Some(*n) } else { None }).collect();
        assert_eq!(gaps, lost.into_iter().collect::<Vec<_>>(), "{s:?}");
        assert_eq!(data_of(&s, Dir::B), b"HTTP/1.1 200 OK\r\n\r\n");
    }
}

#[test]
fn an_acknowledgment_is_placed_when_its_bytes_are_delivered_not_when_they_arrived() {
    // Picked up midstream, the server's answer arrives before any client segment: the client's
    // stream has no start yet, so what the answer acknowledges can only be placed once it has.
    let s = positions(&[
        (header(SERVER, CLIENT, 5000, ack()), 119, b"HTTP/1.1 200 OK\r\n\r\n"),
        (header(CLIENT, SERVER, 101, ack()), 5000, b"GET / HTTP/1.1\r\n\r\n"),
    ]);
    let client = s.iter().find(|d| d.0 == Dir::B).expect("the request").1;
    let answer = s.iter().find(|d| d.0 == Dir::A).expect("the answer");
    assert_eq!(answer.2, Some(client + 18), "{s:?}");
}

/// Feeds a handshake: the client's SYN at `ts`, the server's SYN-ACK just after.
fn handshake(t: &mut FlowTable<Recorder>, s: &mut Vec<Seen>, client_isn: u32, server_isn: u32, ts: u64) {
    feed(t, s, header(CLIENT, SERVER, client_isn, TcpFlags::SYN), b"", ts);
    let syn_ack =
        acking(header(SERVER, CLIENT, server_isn, TcpFlags::SYN.union(ack())), client_isn.wrapping_add(1));
    feed(t, s, syn_ack, b"", ts + 1);
}

/// Feeds both FINs: the client's at `client_seq` at `ts`, the server's at `server_seq` just after.
fn close_both(t: &mut FlowTable<Recorder>, s: &mut Vec<Seen>, client_seq: u32, server_seq: u32, ts: u64) {
    feed(t, s, acking(header(CLIENT, SERVER, client_seq, ack().union(TcpFlags::FIN)), server_seq), b"", ts);
    let fin =
        acking(header(SERVER, CLIENT, server_seq, ack().union(TcpFlags::FIN)), client_seq.wrapping_add(1));
    feed(t, s, fin, b"", ts + 1);
}

/// `h` with acknowledgment number `ack`.
fn acking(h: SegmentHeader, ack: u32) -> SegmentHeader {
    SegmentHeader { ack, ..h }
}

#[test]
fn a_syn_with_a_new_isn_moves_the_open_flow_on_its_ports_aside() {
    // The server's FIN was lost, so the flow is still open when the client reuses its port (the
    // generated mixes with reused ports and 2% loss lost 8% of requests this way).
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 0, 0, 1);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET /a HTTP/1.1\r\n\r\n", 3);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 20, ack().union(TcpFlags::FIN)), 1), b"", 4);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 5);
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 0, TcpFlags::SYN.union(ack())), 1), b"", 5);
    assert_eq!(t.stats().closed_reused, 0, "late copies of the flow's own handshake");
    feed(&mut t, &mut s, header(CLIENT, SERVER, 7000, TcpFlags::SYN), b"", 6);
    assert_eq!(t.stats().closed_reused, 1);
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 9000, TcpFlags::SYN.union(ack())), 7001), b"", 7);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 7001, ack()), 9001), b"GET /b HTTP/1.1\r\n\r\n", 8);
    assert_eq!(data_of(&s, Dir::A), b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    assert_eq!((t.len(), t.stats().flows, t.stats().closed_reused), (1, 2, 1));
    // the old server's FIN, late, still reaches the old flow, which closes at it
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 1, ack().union(TcpFlags::FIN)), 21), b"", 9);
    assert_eq!((t.len(), t.stats().closed_fin), (1, 1));
}

#[test]
fn an_old_connections_bytes_that_come_after_the_next_ones_syn_still_reach_it() {
    // The lab's reordering relay (delay up to 200 datagrams) brought a connection's request after
    // the SYN of the next connection on the same client port, which Linux numbered by its clock
    // just past the old one.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 1000, 5000, 1);
    handshake(&mut t, &mut s, 180_000, 70_000, 3);
    let old_request = acking(header(CLIENT, SERVER, 1001, ack()), 5001);
    feed(&mut t, &mut s, old_request, b"GET /a HTTP/1.1\r\n\r\n", 5);
    feed(
        &mut t,
        &mut s,
        acking(header(SERVER, CLIENT, 5001, ack()), 1020),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        6,
    );
    let new_request = acking(header(CLIENT, SERVER, 180_001, ack()), 70_001);
    feed(&mut t, &mut s, new_request, b"GET /b HTTP/1.1\r\n\r\n", 7);
    assert_eq!(data_of(&s, Dir::A), b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    assert_eq!(data_of(&s, Dir::B), b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!((t.stats().duplicates, t.stats().out_of_window), (0, 0));
    // the old flow closes once idle for the closing timeout
    t.advance(7 + ReassemblyConfig::default().closing_timeout_us, &mut s);
    assert_eq!((t.len(), t.stats().closed_idle), (1, 1));
}

#[test]
fn a_syn_ack_of_a_new_connection_moves_the_open_flow_aside_when_its_syn_was_lost() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 0, 0, 1);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET /a HTTP/1.1\r\n\r\n", 3);
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 0, TcpFlags::SYN.union(ack())), 1), b"", 4);
    assert_eq!(t.stats().closed_reused, 0, "a late copy of the SYN-ACK");
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 9000, TcpFlags::SYN.union(ack())), 7001), b"", 5);
    assert_eq!((t.len(), t.stats().flows, t.stats().closed_reused), (1, 2, 1));
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 7001, ack()), 9001), b"GET /b HTTP/1.1\r\n\r\n", 6);
    // the new flow's first segment came from the server: its direction A
    assert_eq!(s.last(), Some(&Seen::Data(Dir::B, b"GET /b HTTP/1.1\r\n\r\n".to_vec())));
}

#[test]
fn bytes_past_a_fin_come_from_a_new_connection_whose_handshake_was_lost() {
    // Both FINs seen but not reached (bytes before the client's were lost, and the flow waits out
    // the reorder timeout for them) when a new connection on the same ports sends its request;
    // its SYN and SYN-ACK were lost.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 0, 0, 1);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET /a HTTP/1.1\r\n", 3);
    close_both(&mut t, &mut s, 20, 1, 4);
    assert_eq!(t.len(), 1, "the client's last two bytes are still awaited");
    let next = acking(header(CLIENT, SERVER, 3_000_000_000, ack()), 77);
    feed(&mut t, &mut s, next, b"GET /b HTTP/1.1\r\n\r\n", 6);
    assert_eq!((t.stats().flows, t.stats().closed_reused), (2, 1));
    t.close_all(10, &mut s);
    assert_eq!(data_of(&s, Dir::A), b"GET /a HTTP/1.1\r\nGET /b HTTP/1.1\r\n\r\n");
    assert!(s.contains(&Seen::Gap(Dir::A, 2)), "{s:?}");
}

#[test]
fn a_late_syn_of_a_flow_picked_up_without_one_is_its_own() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1001, ack()), b"GET /a HTTP/1.1\r\n\r\n", 1);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 1000, TcpFlags::SYN), b"", 2);
    assert_eq!(t.stats().closed_reused, 0);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 2_000_000_000, TcpFlags::SYN), b"", 3);
    assert_eq!((t.len(), t.stats().flows, t.stats().closed_reused), (1, 2, 1));
}

#[test]
fn a_new_connection_without_handshake_after_a_close_is_no_late_copy() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 0, 0, 1);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET /a HTTP/1.1\r\n\r\n", 3);
    close_both(&mut t, &mut s, 20, 1, 4);
    assert!(t.is_empty());
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET /a HTTP/1.1\r\n\r\n", 6);
    assert!(t.is_empty(), "a late copy of the closed connection's request");
    feed(
        &mut t,
        &mut s,
        acking(header(CLIENT, SERVER, 3_000_000_000, ack()), 77),
        b"GET /b HTTP/1.1\r\n\r\n",
        7,
    );
    assert_eq!(t.len(), 1, "a new connection whose handshake was lost");
    t.close_all(8, &mut s);
    assert_eq!(data_of(&s, Dir::A), b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
}

#[test]
fn a_late_copy_of_the_closed_connections_syn_leaves_the_next_one_open() {
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 0, 0, 1);
    close_both(&mut t, &mut s, 1, 1, 3);
    assert!(t.is_empty());
    feed(&mut t, &mut s, header(CLIENT, SERVER, 7000, TcpFlags::SYN), b"", 5);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 0, TcpFlags::SYN), b"", 6);
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 0, TcpFlags::SYN.union(ack())), 1), b"", 6);
    assert_eq!((t.stats().closed_reused, t.stats().stray), (0, 2), "late copies of the old handshake");
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 9000, TcpFlags::SYN.union(ack())), 7001), b"", 7);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 7001, ack()), 9001), b"GET /b HTTP/1.1\r\n\r\n", 8);
    assert_eq!(data_of(&s, Dir::A), b"GET /b HTTP/1.1\r\n\r\n");
    assert_eq!(t.stats().flows, 2);
}

#[test]
fn a_keep_alive_probe_after_a_fin_stays_in_its_flow() {
    // Some stacks probe with one byte at the sequence number before the next: after a FIN, the
    // FIN's own.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 0, 0, 1);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET /a HTTP/1.1\r\n\r\n", 3);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 20, ack().union(TcpFlags::FIN)), 1), b"", 4);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 20, ack()), 1), b"x", 5);
    assert_eq!((t.stats().flows, t.stats().closed_reused), (1, 0));
}

#[test]
fn a_new_connection_numbered_by_a_clock_just_past_the_closed_one_is_no_late_copy() {
    // Linux numbers a new connection on the same ports from a clock (about 15.6 M a second): 10
    // ms later its bytes start about 156,000 past the old end. Its handshake was lost.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 0, 0, 1);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1, ack()), 1), b"GET /a HTTP/1.1\r\n\r\n", 3);
    close_both(&mut t, &mut s, 20, 1, 4);
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 21, ack()), 2), b"", 6);
    assert!(t.is_empty());
    let next = acking(header(CLIENT, SERVER, 156_001, ack()), 156_001);
    feed(&mut t, &mut s, next, b"GET /b HTTP/1.1\r\n\r\n", 10_000);
    assert_eq!(t.len(), 1);
    t.close_all(20_000, &mut s);
    assert_eq!(data_of(&s, Dir::A), b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
}

#[test]
fn a_late_copy_after_a_reset_of_a_flow_picked_up_midstream_is_stray() {
    // Both starts guessed (no handshake seen), reset before the reorder timeout settled them: the
    // close delivers the buffered bytes, and a late copy of the request lies within them.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    let request = acking(header(CLIENT, SERVER, 1001, ack()), 5001);
    feed(&mut t, &mut s, request, b"GET /a HTTP/1.1\r\n\r\n", 1);
    feed(
        &mut t,
        &mut s,
        acking(header(SERVER, CLIENT, 5001, ack()), 1020),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        2,
    );
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 1020, TcpFlags::RST.union(ack())), 5029), b"", 3);
    assert!(t.is_empty());
    feed(&mut t, &mut s, request, b"GET /a HTTP/1.1\r\n\r\n", 4);
    assert!(t.is_empty(), "the late copy opened a flow");
    assert_eq!(data_of(&s, Dir::A), b"GET /a HTTP/1.1\r\n\r\n");
}

#[test]
fn a_reset_answering_a_refused_syn_leaves_the_attempt_open() {
    // As a lab run captured it: the server's TIME-WAIT refused the new SYN with an ACK of the old
    // connection; the client reset with that ACK's number and, 12 ms later, sent the same SYN
    // again, which the server accepted.
    let mut t = FlowTable::new(ReassemblyConfig::default());
    let mut s = Vec::new();
    handshake(&mut t, &mut s, 90_000, 0, 1);
    close_both(&mut t, &mut s, 90_001, 1, 3);
    assert!(t.is_empty());
    feed(&mut t, &mut s, header(CLIENT, SERVER, 50_000, TcpFlags::SYN), b"", 5);
    feed(&mut t, &mut s, acking(header(SERVER, CLIENT, 2, ack()), 90_002), b"", 6);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 90_002, TcpFlags::RST), b"", 7);
    assert_eq!((t.len(), t.stats().closed_rst), (1, 0), "the reset closed the attempt");
    feed(&mut t, &mut s, header(CLIENT, SERVER, 50_000, TcpFlags::SYN), b"", 12_007);
    feed(
        &mut t,
        &mut s,
        acking(header(SERVER, CLIENT, 9000, TcpFlags::SYN.union(ack())), 50_001),
        b"",
        12_008,
    );
    feed(
        &mut t,
        &mut s,
        acking(header(CLIENT, SERVER, 50_001, ack()), 9001),
        b"GET /b HTTP/1.1\r\n\r\n",
        12_009,
    );
    assert_eq!(data_of(&s, Dir::A), b"GET /b HTTP/1.1\r\n\r\n");
    feed(&mut t, &mut s, acking(header(CLIENT, SERVER, 50_020, TcpFlags::RST), 9001), b"", 12_010);
    assert_eq!(t.stats().closed_rst, 1, "a reset after the handshake closes it");
    // a reset at the first byte's number ends an attempt
    feed(&mut t, &mut s, header(CLIENT, SERVER, 70_000, TcpFlags::SYN), b"", 12_011);
    feed(&mut t, &mut s, header(CLIENT, SERVER, 70_001, TcpFlags::RST), b"", 12_012);
    assert_eq!((t.len(), t.stats().closed_rst), (0, 2));
}
