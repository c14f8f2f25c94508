//! Live capture on a network interface with libpcap.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pcap::{Active, Capture};
use vxtap_decap::LinkType;

use crate::{CaptureError, Record, link_name, pcap_reason, sys};

/// How often, at most, kernel statistics are read while traffic flows.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Frames between two looks at the clock (for publishing counters) while traffic flows.
const PUBLISH_EVERY: u32 = 1024;

/// Settings for a [`LiveCapture`]. `LiveOptions::default()` suits a mirror target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveOptions {
    /// Bytes kept per frame (default 262144, libpcap's maximum: nothing is cut).
    pub snaplen: i32,
    /// Put the interface in promiscuous mode (default true; never asked for on `any`, which cannot).
    pub promiscuous: bool,
    /// libpcap immediate mode: frames are delivered as they arrive instead of in blocks (default true).
    pub immediate: bool,
    /// Kernel capture buffer in bytes (default 64 MiB).
    pub buffer_bytes: i32,
    /// Longest wait without traffic before the stop flag is checked again (default 100 ms).
    pub poll_timeout: Duration,
    /// Optional BPF filter in tcpdump syntax, e.g. `"udp port 4789"`.
    pub filter: Option<String>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            snaplen: 262_144,
            promiscuous: true,
            immediate: true,
            buffer_bytes: 64 << 20,
            poll_timeout: Duration::from_millis(100),
            filter: None,
        }
    }
}

/// Running totals of a [`LiveCapture`], readable from any thread (see [`LiveCapture::counters`]).
///
/// Published by [`LiveCapture::run`] about once a second while traffic flows, on every idle wait and
/// when it returns.
#[derive(Debug, Default)]
pub struct LiveCounters {
    frames: AtomicU64,
    bytes: AtomicU64,
    ps_recv: AtomicU64,
    ps_drop: AtomicU64,
    ps_ifdrop: AtomicU64,
}

impl LiveCounters {
    /// The current totals.
    pub fn snapshot(&self) -> LiveStats {
        LiveStats {
            frames: self.frames.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            ps_recv: self.ps_recv.load(Ordering::Relaxed),
            ps_drop: self.ps_drop.load(Ordering::Relaxed),
            ps_ifdrop: self.ps_ifdrop.load(Ordering::Relaxed),
        }
    }
}

/// Live capture totals since the capture was opened. libpcap's 32-bit kernel counters are widened to 64
/// bits (they are sampled often enough that a wrap is never missed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Frames delivered to the caller.
    pub frames: u64,
    /// Captured bytes delivered to the caller.
    pub bytes: u64,
    /// `ps_recv`: frames the kernel passed to the capture (on Linux: that reached the capture socket).
    pub ps_recv: u64,
    /// `ps_drop`: frames dropped because the capture buffer was full (the reader was too slow).
    pub ps_drop: u64,
    /// `ps_ifdrop`: frames dropped by the interface or its driver.
    pub ps_ifdrop: u64,
}

/// Last raw readings of libpcap's wrapping 32-bit counters.
#[derive(Clone, Copy, Debug, Default)]
struct RawStat {
    recv: u32,
    drop: u32,
    ifdrop: u32,
}

/// A live libpcap capture on one interface.
pub struct LiveCapture {
    iface: String,
    cap: Capture<Active>,
    link: LinkType,
    dlt: i32,
    poll_ms: i32,
    counters: Arc<LiveCounters>,
    last_raw: RawStat,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("iface", &self.iface)
            .field("link", &self.link)
            .field("dlt", &self.dlt)
            .finish_non_exhaustive()
    }
}

impl LiveCapture {
    /// Opens `iface` (a name such as `eth0`, or `any`) for capture with `opts`. Needs `CAP_NET_RAW`.
    ///
    /// Errors name the interface: it does not exist, permission is missing, the filter does not compile
    /// ([`CaptureError::LiveOpen`]), or its link type is not one vxtap decodes
    /// ([`CaptureError::LiveLinkType`]).
    pub fn open(iface: &str, opts: &LiveOptions) -> Result<LiveCapture, CaptureError> {
        let open_err = |reason: String| CaptureError::LiveOpen { iface: iface.to_owned(), reason };
        let poll_ms = i32::try_from(opts.poll_timeout.as_millis()).unwrap_or(i32::MAX).max(1);
        let cap = Capture::from_device(iface)
            .map_err(|e| open_err(pcap_reason(e)))?
            .promisc(opts.promiscuous && iface != "any")
            .snaplen(opts.snaplen)
            .immediate_mode(opts.immediate)
            .timeout(poll_ms)
            .buffer_size(opts.buffer_bytes)
            .open()
            .map_err(|e| open_err(pcap_reason(e)))?;
        let mut cap = cap.setnonblock().map_err(|e| open_err(pcap_reason(e)))?;
        let dlt = cap.get_datalink().0;
        let Some(link) = LinkType::from_dlt(dlt) else {
            return Err(CaptureError::LiveLinkType { iface: iface.to_owned(), dlt, name: link_name(dlt) });
        };
        if let Some(filter) = &opts.filter {
            cap.filter(filter, true)
                .map_err(|e| open_err(format!("filter {filter:?}: {}", pcap_reason(e))))?;
        }
        Ok(LiveCapture {
            iface: iface.to_owned(),
            cap,
            link,
            dlt,
            poll_ms,
            counters: Arc::new(LiveCounters::default()),
            last_raw: RawStat::default(),
        })
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.iface
    }

    /// The interface's link type.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The raw pcap link-type number (DLT) behind [`LiveCapture::link_type`].
    pub fn dlt(&self) -> i32 {
        self.dlt
    }

    /// Shared handle on this capture's counters, for a metrics thread.
    pub fn counters(&self) -> Arc<LiveCounters> {
        Arc::clone(&self.counters)
    }

    /// Reads the kernel statistics now (`pcap_stats`) and returns the totals.
    pub fn stats(&mut self) -> Result<LiveStats, CaptureError> {
        self.refresh_kernel_stats()?;
        Ok(self.counters.snapshot())
    }

    /// Delivers frames to `f` (`Some(record)`) until `stop` is set; the flag is checked after every
    /// frame and at least every [`LiveOptions::poll_timeout`] without traffic. `f(None)` says no frame
    /// is waiting (the end of a burst, or a quiet link): the moment to hand on what was batched.
    /// Returns the final totals; a capture error (interface gone down, ...) ends the loop.
    pub fn run<F>(&mut self, stop: &AtomicBool, mut f: F) -> Result<LiveStats, CaptureError>
    where
        F: FnMut(Option<Record<'_>>),
    {
        let (mut frames, mut bytes, mut since_clock) = (0u64, 0u64, 0u32);
        let mut last_stats = Instant::now();
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            match self.cap.next_packet() {
                Ok(packet) => {
                    let rec = Record::from_packet(&packet);
                    frames += 1;
                    bytes += rec.data.len() as u64;
                    f(Some(rec));
                    since_clock += 1;
                    if since_clock < PUBLISH_EVERY {
                        continue;
                    }
                    since_clock = 0;
                }
                Err(pcap::Error::TimeoutExpired) => {
                    f(None);
                    match sys::poll_readable(self.cap.as_fd(), self.poll_ms) {
                        Ok(_) => {}
                        Err(e) => break Err(self.read_err(format!("poll: {e}"))),
                    }
                }
                Err(e) => break Err(self.read_err(pcap_reason(e))),
            }
            self.publish(&mut frames, &mut bytes);
            if last_stats.elapsed() >= STATS_INTERVAL {
                last_stats = Instant::now();
                if let Err(e) = self.refresh_kernel_stats() {
                    break Err(e);
                }
            }
        };
        self.publish(&mut frames, &mut bytes);
        result?;
        self.stats()
    }

    fn read_err(&self, reason: String) -> CaptureError {
        CaptureError::LiveRead { iface: self.iface.clone(), reason }
    }

    fn publish(&self, frames: &mut u64, bytes: &mut u64) {
        if *frames > 0 {
            self.counters.frames.fetch_add(*frames, Ordering::Relaxed);
            self.counters.bytes.fetch_add(*bytes, Ordering::Relaxed);
            (*frames, *bytes) = (0, 0);
        }
    }

    fn refresh_kernel_stats(&mut self) -> Result<(), CaptureError> {
        let s = self.cap.stats().map_err(|e| self.read_err(format!("pcap_stats: {}", pcap_reason(e))))?;
        let last = self.last_raw;
        let c = &self.counters;
        c.ps_recv.fetch_add(u64::from(s.received.wrapping_sub(last.recv)), Ordering::Relaxed);
        c.ps_drop.fetch_add(u64::from(s.dropped.wrapping_sub(last.drop)), Ordering::Relaxed);
        c.ps_ifdrop.fetch_add(u64::from(s.if_dropped.wrapping_sub(last.ifdrop)), Ordering::Relaxed);
        self.last_raw = RawStat { recv: s.received, drop: s.dropped, ifdrop: s.if_dropped };
        Ok(())
    }
}
