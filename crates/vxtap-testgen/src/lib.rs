//! Test and benchmark material for vxtap: byte-exact mirrored frames ([`frame`]).
//!
//! ```
//! use vxtap_testgen::frame::{build, flags, Encap, TcpSpec};
//! let tcp = TcpSpec {
//!     src: "10.0.0.1:40000".parse().unwrap(),
//!     dst: "10.0.0.2:80".parse().unwrap(),
//!     seq: 1, ack: 0, flags: flags::SYN, payload: b"", vlans: &[], ip_extras: false,
//! };
//! let frame = build(Encap::None, &tcp);
//! assert_eq!(frame.len(), 14 + 20 + 32);
//! ```

pub mod frame;
