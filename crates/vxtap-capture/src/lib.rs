//! Packet input for vxtap: the I/O edge that turns files, interfaces and sockets into raw frames.
//!
//! Three sources, each handing raw bytes to a caller-supplied closure; nothing here decodes beyond what
//! delivery needs or knows about HTTP:
//!
//! - [`PcapFile`]: pcap and pcapng files (or any byte stream holding one), framed by vxtap's own
//!   reader: 1 MiB reads into one reused buffer, [`Record`]s (timestamp, captured bytes, original
//!   length) handed out as slices of it, the file's [`LinkType`]. Records match libpcap's (tested
//!   against it) except that pcap timestamps after 2038 are read as the unsigned values they are.
//! - [`LiveCapture`]: libpcap live capture on an interface (promiscuous, full snaplen, large buffer),
//!   stoppable through an [`AtomicBool`](std::sync::atomic::AtomicBool), with kernel drop statistics.
//! - [`UdpReceiver`]: the VXLAN / GENEVE socket of a mirror target: `SO_REUSEPORT` so that each receive
//!   thread owns a socket on the same port, a large (forced when permitted) receive buffer, `recvmmsg`
//!   batches into reusable 64 KiB slots (jumbo frames are never cut), the destination address of each
//!   datagram from `IP_PKTINFO`, and the kernel's per-socket drop counter.
//!
//! Timestamps are microseconds since the Unix epoch. Errors are [`CaptureError`]s that name the file,
//! interface or address concerned. All `unsafe` code lives in one private module.
//!
//! ```
//! use std::net::UdpSocket;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use vxtap_capture::{UdpOptions, UdpReceiver};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rx = UdpReceiver::bind("127.0.0.1:0".parse()?, &UdpOptions::default())?;
//! let tx = UdpSocket::bind("127.0.0.1:0")?;
//! tx.send_to(b"vxlan bytes", rx.local_addr())?;
//!
//! let stop = AtomicBool::new(false); // usually an Arc<AtomicBool> set by a signal handler
//! let stats = rx.run(&stop, |batch| {
//!     // A whole batch at once; each datagram borrows the receiver's buffers (no allocation).
//!     for d in batch {
//!         assert_eq!(d.payload, b"vxlan bytes");
//!         assert_eq!(d.dst_ip.to_string(), "127.0.0.1");
//!         // vxtap_decap::decode_udp_payload(d.src.ip(), d.dst_ip, d.local_port, d.payload, &cfg)
//!         stop.store(true, Ordering::Relaxed);
//!     }
//! })?;
//! assert_eq!(stats.datagrams, 1);
//! # Ok(())
//! # }
//! ```
//!
//! Reading a file:
//!
//! ```no_run
//! use vxtap_capture::PcapFile;
//!
//! # fn main() -> Result<(), vxtap_capture::CaptureError> {
//! let mut file = PcapFile::open("mirror.pcapng")?;
//! let link = file.link_type();
//! let stats = file.for_each(|rec| {
//!     // vxtap_decap::decode_frame(link, rec.data, &cfg)
//!     let _ = (link, rec.ts_micros, rec.data, rec.orig_len);
//! })?;
//! println!("{} records, {} bytes", stats.records, stats.bytes);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

mod file;
mod format;
mod live;
mod sys;
mod udp;

pub use file::{FileStats, PcapFile};
pub use live::{LiveCapture, LiveCounters, LiveOptions, LiveStats};
pub use udp::{Datagram, Datagrams, RecvBatch, UdpCounters, UdpOptions, UdpReceiver, UdpStats};
pub use vxtap_decap::LinkType;

/// One captured frame from a file or an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time, microseconds since the Unix epoch (0 for times before it).
    pub ts_micros: u64,
    /// The captured bytes (`caplen` of them), starting at the link-layer header.
    pub data: &'a [u8],
    /// The frame's length on the wire; larger than `data.len()` when the snaplen cut it.
    pub orig_len: u32,
}

impl<'a> Record<'a> {
    fn from_packet(packet: &pcap::Packet<'a>) -> Record<'a> {
        let ts = packet.header.ts;
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let micros = u64::try_from(ts.tv_usec).unwrap_or(0);
        Record {
            ts_micros: secs.saturating_mul(1_000_000).saturating_add(micros),
            data: packet.data,
            orig_len: packet.header.len,
        }
    }
}

/// Everything that can go wrong opening or reading an input; each names its file, interface or address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file does not exist, cannot be read, or is not a pcap/pcapng file.
    #[error("cannot open capture file {}: {reason}", path.display())]
    FileOpen {
        /// The file.
        path: PathBuf,
        /// Why (from the OS or libpcap).
        reason: String,
    },
    /// The file's link type is not one vxtap decodes.
    #[error("capture file {}: unsupported link type {dlt} ({name})", path.display())]
    FileLinkType {
        /// The file.
        path: PathBuf,
        /// The pcap link-type number.
        dlt: i32,
        /// libpcap's name for it, or `"unknown"`.
        name: String,
    },
    /// Reading failed part-way: a truncated last record or a corrupt file. The records before it were
    /// delivered.
    #[error("capture file {}: read failed after {records} records: {reason}", path.display())]
    FileRead {
        /// The file.
        path: PathBuf,
        /// Records delivered before the failure.
        records: u64,
        /// libpcap's description.
        reason: String,
    },
    /// The interface could not be opened (no such device, no permission, bad filter, ...).
    #[error("cannot capture on interface {iface}: {reason}")]
    LiveOpen {
        /// The interface.
        iface: String,
        /// libpcap's description.
        reason: String,
    },
    /// The interface's link type is not one vxtap decodes.
    #[error("interface {iface}: unsupported link type {dlt} ({name})")]
    LiveLinkType {
        /// The interface.
        iface: String,
        /// The pcap link-type number.
        dlt: i32,
        /// libpcap's name for it, or `"unknown"`.
        name: String,
    },
    /// Live capture failed while running (interface went away, ...).
    #[error("interface {iface}: capture failed: {reason}")]
    LiveRead {
        /// The interface.
        iface: String,
        /// libpcap's description.
        reason: String,
    },
    /// A UDP socket operation failed.
    #[error("udp receiver {addr}: {op} failed: {source}")]
    Udp {
        /// The address being bound or received on.
        addr: SocketAddr,
        /// The operation (`"bind"`, `"set SO_REUSEPORT"`, `"recvmmsg"`, ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl CaptureError {
    /// True when the OS refused for lack of privilege (for example live capture without `CAP_NET_RAW`).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            CaptureError::Udp { source, .. } => source.kind() == io::ErrorKind::PermissionDenied,
            CaptureError::LiveOpen { reason, .. } | CaptureError::FileOpen { reason, .. } => {
                let r = reason.to_ascii_lowercase();
                r.contains("permission") || r.contains("not permitted")
            }
            _ => false,
        }
    }
}

/// libpcap's message without the pcap crate's `"libpcap error: "` prefix.
fn pcap_reason(e: pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(msg) => msg,
        other => other.to_string(),
    }
}

/// libpcap's name for a link type (`"EN10MB"`, `"IEEE802_11"`), or `"unknown"`.
fn link_name(dlt: i32) -> String {
    pcap::Linktype(dlt).get_name().unwrap_or_else(|_| "unknown".to_owned())
}

/// Now, in microseconds since the Unix epoch.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
