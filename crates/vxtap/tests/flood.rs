//! A flood of half-open flows, each holding 2 KB of an unfinished request, must keep `vxtap pcap`
//! within its memcap plus a bounded overhead, while normal connections that follow come out exact.
//! Alone in its test binary so that the child's peak RSS (RUSAGE_CHILDREN) is this run's only.

mod common;

use std::io::Write;

use common::vxtap;
use vxtap_testgen::frame::{Encap, TcpSpec, build, flags};
use vxtap_testgen::mix::{MixEncap, MixParams, generate_mix};
use vxtap_testgen::pcap::{LINKTYPE_ETHERNET, PcapWriter};
use vxtap_testgen::score::score;

const FLOOD_FLOWS: u32 = 120_000;
const MEMCAP_MIB: u64 = 64;

fn peak_child_rss_bytes() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage; RUSAGE_CHILDREN is a valid `who`.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    u64::try_from(usage.ru_maxrss).unwrap() * 1024
}

#[test]
fn half_open_flood_stays_within_memcap_and_later_requests_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.pcap");
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let mut pcap = PcapWriter::new(file, LINKTYPE_ETHERNET, 65_535).unwrap();
    let start = 1_700_000_000_000_000u64;
    let mut head = b"POST /upload HTTP/1.1\r\nHost: flood.example\r\nX-Pad: ".to_vec();
    head.resize(2048, b'a');
    let server = "10.50.0.1:80".parse().unwrap();
    for i in 0..FLOOD_FLOWS {
        let client =
            std::net::SocketAddr::from(([10, 60, (i >> 16) as u8, (i >> 8) as u8], 1024 + (i & 0xff) as u16));
        let ts = start + u64::from(i) * 10;
        let mut spec = TcpSpec {
            src: client,
            dst: server,
            seq: 1000,
            ack: 0,
            flags: flags::SYN,
            payload: b"",
            vlans: &[],
            ip_extras: false,
        };
        pcap.write(ts, &build(Encap::None, &spec)).unwrap();
        spec.seq = 1001;
        spec.flags = flags::ACK | flags::PSH;
        spec.payload = &head;
        pcap.write(ts + 1, &build(Encap::None, &spec)).unwrap();
    }
    let after = start + u64::from(FLOOD_FLOWS) * 10 + 1_000;
    let mix = generate_mix(&MixParams {
        seed: 21,
        connections: 300,
        encap: MixEncap::None,
        start_us: after,
        ..MixParams::default()
    });
    for (ts, frame) in &mix.frames {
        pcap.write(*ts, frame).unwrap();
    }
    pcap.into_inner().unwrap().flush().unwrap();

    let memcap = format!("{MEMCAP_MIB}MiB");
    let out = vxtap(&["pcap", path.to_str().unwrap(), "--memcap", &memcap, "--workers", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let peak = peak_child_rss_bytes();
    let summary = common::summary(&out);
    eprintln!("peak RSS {} MiB; summary {summary}", peak >> 20);
    assert!(summary["flows_evicted"].as_u64().unwrap() > 50_000, "{summary}");
    assert!(peak < (MEMCAP_MIB + 100) << 20, "peak RSS {} MiB over memcap + 100 MiB", peak >> 20);
    let s = score(&mix.expected, &common::events(&out));
    assert_eq!((s.exact, s.missing, s.extra), (s.intact, 0, 0), "{s:?}");
}
