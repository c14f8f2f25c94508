//! Both directions of a conversation as arbitrary bytes, chunked arbitrarily, with gaps and ends:
//! no panic, and memory is released once the conversation is finished and drained.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap_http::{Conversation, HttpConfig, Peer};

fuzz_target!(|data: &[u8]| {
    let cfg = HttpConfig { body_limit: 4096, max_head_bytes: 8192, max_pending: 8 };
    let mut conv = Conversation::new(cfg, None);
    let mut out = Vec::new();
    // Each record: control(1) len(1), then len bytes. Control: bit 0 peer, bits 1-2 op.
    let mut rest = data;
    let mut ts = 0;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]).min(rest.len() - 2));
        let bytes = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let peer = if ctl & 1 == 0 { Peer::A } else { Peer::B };
        ts += 1;
        match (ctl >> 1) & 3 {
            0 | 1 => conv.on_data(peer, bytes, ts),
            2 => conv.on_gap(peer, u64::from(ctl >> 3) * 7 + len as u64, ts),
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
