//! The whole pipeline (decap, reassembly, HTTP, events) over a sequence of frames: no panic, every
//! event line parses as JSON.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vxtap_decap::LinkType;
use vxtap_engine::{EngineConfig, Metrics, Pipeline};
use vxtap_http::HttpConfig;
use vxtap_reassembly::ReassemblyConfig;

fuzz_target!(|data: &[u8]| {
    // The detector has its own target; building its rule set for every input would starve this one.
    let cfg = EngineConfig {
        detect: false,
        http: HttpConfig { body_limit: 4096, max_head_bytes: 16384, max_pending: 8 },
        reassembly: ReassemblyConfig {
            memcap: 1 << 20,
            max_ooo_bytes: 1 << 16,
            ..ReassemblyConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut pipeline = Pipeline::new(Arc::new(cfg), Arc::new(Metrics::new(1)));
    // Frames: length(2, big-endian) then that many bytes; the first byte picks the link type.
    let link = match data.first() {
        Some(b) if b & 1 == 0 => LinkType::Ethernet,
        _ => LinkType::RawIp,
    };
    let mut rest = data.get(1..).unwrap_or(&[]);
    let mut ts = 0;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        ts += 1000;
        pipeline.frame(link, &rest[2..2 + len], ts);
        rest = &rest[2 + len..];
    }
    pipeline.finish();
    for line in pipeline.take_events().concat().split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(serde_json::from_slice::<serde_json::Value>(line).is_ok(), "event is not JSON");
    }
});
