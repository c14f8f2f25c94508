//! Any bytes, as any link type or as a tunnel socket's payload, decode to a value or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap_decap::{DecapConfig, LinkType, decode_frame, decode_udp_payload};

fuzz_target!(|data: &[u8]| {
    let cfg = DecapConfig::default();
    for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp] {
        let _ = decode_frame(link, data, &cfg);
    }
    let any = std::net::IpAddr::from([0, 0, 0, 0]);
    let _ = decode_udp_payload(any, any, 4789, data, &cfg);
    let _ = decode_udp_payload(any, any, 6081, data, &cfg);
});
