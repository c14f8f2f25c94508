//! A sequence of segments of one or two flows, in any order, with any flags, sequence numbers and
//! truncation: no panic, memory accounting returns to zero once every flow is closed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap_decap::{Segment, SegmentHeader, TcpFlags};
use vxtap_reassembly::{CloseReason, Delivery, Dir, FlowTable, ReassemblyConfig, StreamHandler};

struct Count;

impl StreamHandler for Count {
    type Sink = u64;
    fn on_data(&mut self, _dir: Dir, data: &[u8], _at: Delivery, sink: &mut u64) {
        *sink += data.len() as u64;
    }
    fn on_close(&mut self, _ts: u64, _reason: CloseReason, _sink: &mut u64) {}
}

fuzz_target!(|data: &[u8]| {
    let cfg = ReassemblyConfig { max_ooo_bytes: 4096, memcap: 64 << 10, reorder_timeout_us: 50, ..Default::default() };
    let mut table = FlowTable::new(cfg);
    let mut sink = 0u64;
    let ends = ["10.0.0.1:1000".parse().unwrap(), "10.0.0.2:80".parse().unwrap(), "10.0.0.3:80".parse().unwrap()];
    let mut ts = 0u64;
    // Each record: selector(1) seq(4) flags(1) missing(1) len(1), then len payload bytes.
    let mut rest = data;
    while rest.len() >= 8 {
        let sel = rest[0];
        let seq = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        let bits = rest[5];
        let missing = u32::from(rest[6]);
        let len = usize::from(rest[7]).min(rest.len() - 8);
        let payload = &rest[8..8 + len];
        rest = &rest[8 + len..];
        let mut flags = TcpFlags::default();
        for (bit, flag) in [(1, TcpFlags::SYN), (2, TcpFlags::FIN), (4, TcpFlags::RST), (8, TcpFlags::ACK)] {
            if bits & bit != 0 {
                flags = flags.union(flag);
            }
        }
        let (src, dst) = match sel % 4 {
            0 => (ends[0], ends[1]),
            1 => (ends[1], ends[0]),
            2 => (ends[0], ends[2]),
            _ => (ends[2], ends[0]),
        };
        let header = SegmentHeader { tunnel: None, vlan: None, src, dst, seq, ack: 0, flags, missing };
        ts += u64::from(sel >> 2);
        table.process(&Segment { header, payload }, ts, &mut sink, |_, _| Count);
        if bits & 0x80 != 0 {
            table.advance(ts, &mut sink);
        }
    }
    table.close_all(ts, &mut sink);
    assert_eq!(table.memory(), 0);
    assert!(table.is_empty());
});
