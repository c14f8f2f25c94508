//! Both directions of a conversation as arbitrary bytes, chunked arbitrarily, with gaps, ends,
//! stream positions and acknowledgments (as reassembly would give them, or arbitrary): no panic,
//! and memory is released once the conversation is finished and drained.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap_http::{Conversation, HttpConfig, Peer};

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else { return };
    let cfg = HttpConfig { body_limit: 4096, max_head_bytes: 8192, max_pending: 8 };
    // The first byte: whether the SYN named the client (as when the handshake was seen).
    let mut conv = Conversation::new(cfg, (first & 1 == 1).then_some(Peer::A));
    let mut out = Vec::new();
    // Stream offsets of both directions, as reassembly counts them.
    let mut offset = [0u64; 2];
    // Each record: control(1) len(1), then len bytes. Control: bit 0 peer, bits 1-2 op, bits 3-7
    // an amount (gap length, how far an acknowledgment runs ahead or behind).
    let mut ts = 0;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]).min(rest.len() - 2));
        let bytes = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let (peer, me, other) = if ctl & 1 == 0 { (Peer::A, 0, 1) } else { (Peer::B, 1, 0) };
        let amount = u64::from(ctl >> 3);
        ts += 1;
        match (ctl >> 1) & 3 {
            0 => {
                conv.on_data(peer, bytes, ts);
                offset[me] += len as u64;
            }
            1 => {
                // Acknowledging up to some bytes past (or, odd amounts, short of) the other side's.
                let acked = if amount % 2 == 0 {
                    offset[other] + amount * 61
                } else {
                    offset[other].saturating_sub(amount * 61)
                };
                conv.on_stream_data(peer, bytes, ts, offset[me], Some(acked));
                offset[me] += len as u64;
            }
            2 => {
                let gap = amount * 7 + len as u64;
                if amount % 2 == 0 {
                    conv.on_stream_gap(peer, offset[me], gap, ts);
                } else {
                    conv.on_gap(peer, gap, ts);
                }
                offset[me] += gap;
            }
            _ => {
                conv.on_packet(peer);
                if ctl & 0x80 != 0 {
                    conv.on_end(peer, ts);
                }
            }
        }
        conv.drain(&mut out);
        out.clear();
    }
    conv.finish(ts);
    conv.drain(&mut out);
    assert_eq!(conv.buffered_bytes(), 0);
});
