//! Test and benchmark material for vxtap: mirrored traffic whose HTTP requests are known in advance.
//!
//! - [`frame`]: byte-exact frames (Ethernet, VLAN, IPv4/IPv6, TCP; plain, VXLAN or GENEVE+VXLAN).
//! - [`conversation`]: whole TCP conversations carrying HTTP/1.x exchanges, with consistent sequence and
//!   acknowledgment numbers (wrapping ones included), pipelining, one-byte segments, client-only mirrors.
//! - [`mix`]: many concurrent conversations merged in time, wrapped as a mirror session sends them,
//!   optionally damaged (loss, duplication, reordering, truncation), with the expected requests.
//! - [`pcap`]: a classic pcap writer (and reader) to store them.
//! - [`ports`]: free ports for servers a test starts, without the race of binding port 0.
//! - [`score`]: how vxtap's events compare with the requests that were sent (exact, missing, phantoms).
//! - `smol` (feature `smoltcp`): HTTP conversations between real smoltcp TCP sockets over a lossy,
//!   reordering virtual link, captured as a mirror at the server sees them.
//!
//! The `vxtap-testgen` binary writes a mix to a pcap file and its expected requests to JSON lines
//! (`vxtap-testgen mix --out mix.pcap --expected mix.jsonl --connections 1000`) and scores vxtap's
//! events against them (`vxtap-testgen score --expected mix.jsonl --events events.jsonl`).
//!
//! Everything is seeded: the same parameters give the same bytes on every platform.
//!
//! ```
//! use vxtap_testgen::frame::{build, flags, Encap, TcpSpec};
//! use vxtap_testgen::mix::{generate_mix, MixParams};
//! use vxtap_testgen::pcap::{PcapWriter, LINKTYPE_ETHERNET};
//!
//! // One frame.
//! let tcp = TcpSpec {
//!     src: "10.0.0.1:40000".parse().unwrap(),
//!     dst: "10.0.0.2:80".parse().unwrap(),
//!     seq: 1, ack: 0, flags: flags::SYN, payload: b"", vlans: &[], ip_extras: false,
//! };
//! let frame = build(Encap::None, &tcp);
//! assert_eq!(frame.len(), 14 + 20 + 32);
//!
//! // A small mix, written to an in-memory pcap.
//! let mix = generate_mix(&MixParams { connections: 5, requests_per_conn: 1..=3, seed: 7, ..Default::default() });
//! let mut pcap = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 262_144).unwrap();
//! for (ts, f) in &mix.frames {
//!     pcap.write(*ts, f).unwrap();
//! }
//! assert!(mix.expected.len() >= 5 && mix.expected.iter().all(|e| e.intact));
//! println!("{}", mix.expected[0].to_json_line());
//! ```

pub mod conversation;
pub mod frame;
pub mod mix;
pub mod pcap;
pub mod ports;
mod rng;
pub mod score;
#[cfg(feature = "smoltcp")]
pub mod smol;
#[cfg(test)]
mod testutil;
