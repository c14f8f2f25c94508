//! UDP receiver for VXLAN / GENEVE tunnel traffic: `SO_REUSEPORT`, a large receive buffer, `recvmmsg`
//! batches into reusable buffers, and each datagram's destination address from `IP_PKTINFO`.

use std::io;
use std::iter::FusedIterator;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::slice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::sys::{self, MmsgBuffers};
use crate::{CaptureError, now_micros};

/// Largest batch `recvmmsg` accepts (`UIO_MAXIOV`); larger requests are clamped to it.
const MAX_BATCH: usize = 1024;
/// How often, at most, the socket's drop counter is read with `SO_MEMINFO` while traffic flows.
const DROPS_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Settings for a [`UdpReceiver`]. `UdpOptions::default()` suits a mirror target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpOptions {
    /// Requested kernel receive buffer in bytes (default 256 MiB: the kernel doubles it, and at
    /// `tcpreplay --topspeed` of the benchmark pcap into `vxtap listen` with the detector, 64 MiB
    /// overflowed in 6 runs of 14 and 128 or 256 MiB in none of 6 each; the memory is taken only
    /// while datagrams wait). `SO_RCVBUFFORCE` is tried first (it needs `CAP_NET_ADMIN` and ignores
    /// `net.core.rmem_max`), then `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max`.
    /// [`UdpReceiver::recv_buffer_bytes`] reports what was granted.
    pub recv_buffer_bytes: usize,
    /// Datagrams taken per `recvmmsg` call (default 64, clamped to 1..=1024).
    pub batch_size: usize,
    /// Buffer size per datagram (default 65535, enough for any UDP datagram over IPv4 or IPv6 without
    /// jumbograms). A datagram larger than this is dropped and counted in [`UdpStats::truncated`].
    pub max_datagram: usize,
    /// Set `SO_REUSEPORT` so that several receivers (one per thread) share one port (default true).
    pub reuse_port: bool,
    /// Longest a receive call blocks without traffic (`SO_RCVTIMEO`), i.e. how late a stop flag may be
    /// noticed, with [`UdpOptions::coalesce`] (default 100 ms, at least 1 ms).
    pub read_timeout: Duration,
    /// Ask the kernel for its per-socket drop counter (`SO_RXQ_OVFL`, plus `SO_MEMINFO` when idle);
    /// default true.
    pub kernel_drops: bool,
    /// How long [`UdpReceiver::run`] waits before the next receive after two in a row that each took
    /// less than a quarter of a batch (default 100 µs; zero never waits). Datagrams queue in the
    /// socket buffer meanwhile, so a moderate rate costs a wakeup of this thread and of the workers
    /// per batch rather than per few datagrams: at 260,000 frames/s that was 30-40% of vxtap's CPU.
    /// Not after one small receive: that is also how draining a backlog ends, and waiting there
    /// lost more datagrams at saturation on one core. A busy receiver takes full batches and never
    /// waits.
    pub coalesce: Duration,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            recv_buffer_bytes: 256 << 20,
            batch_size: 64,
            max_datagram: 65535,
            reuse_port: true,
            read_timeout: Duration::from_millis(100),
            kernel_drops: true,
            coalesce: Duration::from_micros(100),
        }
    }
}

/// Running totals of a [`UdpReceiver`], readable from any thread (see [`UdpReceiver::counters`]).
///
/// Updated once per batch with relaxed atomics; [`UdpCounters::snapshot`] reads them all.
#[derive(Debug, Default)]
pub struct UdpCounters {
    datagrams: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    truncated: AtomicU64,
    kernel_drops: AtomicU64,
}

impl UdpCounters {
    /// The current totals.
    pub fn snapshot(&self) -> UdpStats {
        UdpStats {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            kernel_drops: self.kernel_drops.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of [`UdpCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams delivered to the caller.
    pub datagrams: u64,
    /// Payload bytes delivered to the caller.
    pub bytes: u64,
    /// Non-empty `recvmmsg` batches.
    pub batches: u64,
    /// Datagrams larger than [`UdpOptions::max_datagram`] (`MSG_TRUNC`): counted, not delivered.
    pub truncated: u64,
    /// Datagrams the kernel dropped because this socket's receive buffer was full, since the socket was
    /// opened (0 when [`UdpOptions::kernel_drops`] is off or the kernel does not report it).
    pub kernel_drops: u64,
}

/// One received datagram: a borrowed view into a [`RecvBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Receive time, microseconds since the Unix epoch (one clock read per batch).
    pub ts_micros: u64,
    /// The sender (outer source address and port). IPv4-mapped IPv6 addresses are reported as IPv4.
    pub src: SocketAddr,
    /// The address the datagram was sent to (outer destination), from `IP_PKTINFO` / `IPV6_PKTINFO`;
    /// the socket's bound address if the kernel did not say.
    pub dst_ip: IpAddr,
    /// The receiving socket's port (which tunnel the payload speaks: VXLAN or GENEVE).
    pub local_port: u16,
    /// The UDP payload (VXLAN or GENEVE header onwards).
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    index: usize,
    len: usize,
    src: SocketAddr,
    dst: IpAddr,
}

/// The datagrams of one `recvmmsg` call, in arrival order, held in buffers that the next call reuses.
///
/// Iterate it (`for d in batch`, [`RecvBatch::iter`]) to get [`Datagram`]s; nothing is allocated.
pub struct RecvBatch {
    bufs: MmsgBuffers,
    slots: Vec<Slot>,
    ts_micros: u64,
    local_port: u16,
}

impl RecvBatch {
    /// Receive time of the batch, microseconds since the Unix epoch.
    pub fn ts_micros(&self) -> u64 {
        self.ts_micros
    }

    /// Number of datagrams in the batch.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the receive call returned nothing (timeout).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The receiving socket's local port.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Datagram `i` of the batch.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        self.slots.get(i).map(|s| self.datagram(s))
    }

    /// The datagrams, in arrival order.
    pub fn iter(&self) -> Datagrams<'_> {
        Datagrams { batch: self, slots: self.slots.iter() }
    }

    fn datagram(&self, s: &Slot) -> Datagram<'_> {
        Datagram {
            ts_micros: self.ts_micros,
            src: s.src,
            dst_ip: s.dst,
            local_port: self.local_port,
            payload: self.bufs.payload(s.index, s.len),
        }
    }
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("ts_micros", &self.ts_micros)
            .field("local_port", &self.local_port)
            .field("len", &self.slots.len())
            .finish()
    }
}

impl<'a> IntoIterator for &'a RecvBatch {
    type Item = Datagram<'a>;
    type IntoIter = Datagrams<'a>;

    fn into_iter(self) -> Datagrams<'a> {
        self.iter()
    }
}

/// Iterator over the [`Datagram`]s of a [`RecvBatch`].
#[derive(Clone, Debug)]
pub struct Datagrams<'a> {
    batch: &'a RecvBatch,
    slots: slice::Iter<'a, Slot>,
}

impl<'a> Iterator for Datagrams<'a> {
    type Item = Datagram<'a>;

    fn next(&mut self) -> Option<Datagram<'a>> {
        let batch = self.batch;
        self.slots.next().map(|s| batch.datagram(s))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slots.size_hint()
    }
}

impl ExactSizeIterator for Datagrams<'_> {}
impl FusedIterator for Datagrams<'_> {}
impl<'a> DoubleEndedIterator for Datagrams<'a> {
    fn next_back(&mut self) -> Option<Datagram<'a>> {
        let batch = self.batch;
        self.slots.next_back().map(|s| batch.datagram(s))
    }
}

/// A UDP socket receiving tunnel datagrams in `recvmmsg` batches. One per receive thread; with
/// [`UdpOptions::reuse_port`] several may bind the same address and the kernel spreads senders over them.
pub struct UdpReceiver {
    socket: Socket,
    local: SocketAddr,
    recv_buffer_bytes: usize,
    recv_buffer_forced: bool,
    kernel_drops: bool,
    batch: RecvBatch,
    counters: Arc<UdpCounters>,
    /// Last raw value of the kernel's 32-bit drop counter, to turn it into a 64-bit total.
    last_drops: u32,
    last_drops_poll: Instant,
    /// [`UdpOptions::coalesce`].
    coalesce: Duration,
}

impl std::fmt::Debug for UdpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpReceiver")
            .field("local", &self.local)
            .field("recv_buffer_bytes", &self.recv_buffer_bytes)
            .field("recv_buffer_forced", &self.recv_buffer_forced)
            .field("batch_size", &self.batch.bufs.capacity())
            .finish_non_exhaustive()
    }
}

impl UdpReceiver {
    /// Opens a UDP socket on `addr` (IPv4 or IPv6; port 0 picks a free port, see
    /// [`UdpReceiver::local_addr`]) with the options' buffer, reuse-port and timeout settings.
    pub fn bind(addr: SocketAddr, opts: &UdpOptions) -> Result<UdpReceiver, CaptureError> {
        let err = |op: &'static str| move |source: io::Error| CaptureError::Udp { addr, op, source };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(err("socket"))?;
        if opts.reuse_port {
            socket.set_reuse_port(true).map_err(err("set SO_REUSEPORT"))?;
        }
        let want = opts.recv_buffer_bytes.min(i32::MAX as usize / 2) as libc::c_int;
        let forced =
            sys::setsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_ok();
        if !forced {
            socket.set_recv_buffer_size(want as usize).map_err(err("set SO_RCVBUF"))?;
        }
        let recv_buffer_bytes = socket.recv_buffer_size().map_err(err("get SO_RCVBUF"))?;
        let (level, name) = match addr {
            SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO),
            SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
        };
        sys::setsockopt_int(socket.as_fd(), level, name, 1).map_err(err("enable packet info"))?;
        let kernel_drops = opts.kernel_drops
            && sys::setsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).is_ok();
        let timeout = opts.read_timeout.max(Duration::from_millis(1));
        socket.set_read_timeout(Some(timeout)).map_err(err("set SO_RCVTIMEO"))?;
        socket.bind(&addr.into()).map_err(err("bind"))?;
        let local = socket
            .local_addr()
            .map_err(err("local address"))?
            .as_socket()
            .ok_or_else(|| err("local address")(io::Error::from(io::ErrorKind::InvalidData)))?;
        let batch_size = opts.batch_size.clamp(1, MAX_BATCH);
        let batch = RecvBatch {
            bufs: MmsgBuffers::new(batch_size, opts.max_datagram.max(1)),
            slots: Vec::with_capacity(batch_size),
            ts_micros: 0,
            local_port: local.port(),
        };
        Ok(UdpReceiver {
            socket,
            local,
            recv_buffer_bytes,
            recv_buffer_forced: forced,
            kernel_drops,
            batch,
            counters: Arc::new(UdpCounters::default()),
            last_drops: 0,
            last_drops_poll: Instant::now(),
            coalesce: opts.coalesce,
        })
    }

    /// The bound address (with the port the kernel chose when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The receive buffer the kernel granted, as `getsockopt(SO_RCVBUF)` reports it. Linux reports twice
    /// the size set (it counts its bookkeeping overhead), so an unforced request is capped at
    /// `2 * net.core.rmem_max`.
    pub fn recv_buffer_bytes(&self) -> usize {
        self.recv_buffer_bytes
    }

    /// True when `SO_RCVBUFFORCE` succeeded (the process has `CAP_NET_ADMIN`), false when the buffer was
    /// set with `SO_RCVBUF` and so capped by `net.core.rmem_max`.
    pub fn recv_buffer_forced(&self) -> bool {
        self.recv_buffer_forced
    }

    /// True when the kernel's per-socket drop counter is being collected ([`UdpStats::kernel_drops`]).
    pub fn kernel_drops_enabled(&self) -> bool {
        self.kernel_drops
    }

    /// Shared handle on this receiver's counters, for a metrics thread.
    pub fn counters(&self) -> Arc<UdpCounters> {
        Arc::clone(&self.counters)
    }

    /// Receives one batch: waits up to [`UdpOptions::read_timeout`] for a datagram, then takes every
    /// queued datagram up to the batch size. An empty batch means the wait timed out (or a signal came).
    pub fn recv_batch(&mut self) -> Result<&RecvBatch, CaptureError> {
        self.batch.slots.clear();
        let n = match self.batch.bufs.recv(self.socket.as_fd()) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                if self.kernel_drops {
                    self.poll_kernel_drops();
                }
                return Ok(&self.batch);
            }
            Err(source) => return Err(CaptureError::Udp { addr: self.local, op: "recvmmsg", source }),
        };
        self.batch.ts_micros = now_micros();
        let fallback_dst = self.local.ip();
        let (mut bytes, mut truncated, mut newest_drops) = (0u64, 0u64, None);
        for index in 0..n {
            let meta = self.batch.bufs.meta(index);
            if meta.drops.is_some() {
                newest_drops = meta.drops;
            }
            if meta.truncated {
                truncated += 1;
                continue;
            }
            let src = meta.src.unwrap_or(SocketAddr::new(fallback_dst, 0));
            let dst = meta.dst.unwrap_or(fallback_dst);
            bytes += meta.len as u64;
            self.batch.slots.push(Slot { index, len: meta.len, src, dst });
        }
        let c = &self.counters;
        c.datagrams.fetch_add(self.batch.slots.len() as u64, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
        c.batches.fetch_add(1, Ordering::Relaxed);
        if truncated > 0 {
            c.truncated.fetch_add(truncated, Ordering::Relaxed);
        }
        if let Some(raw) = newest_drops {
            self.note_kernel_drops(raw);
        }
        if self.kernel_drops && self.last_drops_poll.elapsed() >= DROPS_POLL_INTERVAL {
            self.poll_kernel_drops();
        }
        Ok(&self.batch)
    }

    /// Receives batches until `stop` is set, handing each non-empty one to `on_batch`, and waits
    /// [`UdpOptions::coalesce`] after a second small one in a row. The flag is checked at least every
    /// [`UdpOptions::read_timeout`] plus `coalesce`. Returns the final counters; a socket error ends
    /// the loop.
    pub fn run<F>(&mut self, stop: &AtomicBool, mut on_batch: F) -> Result<UdpStats, CaptureError>
    where
        F: FnMut(&RecvBatch),
    {
        let mut was_small = false;
        while !stop.load(Ordering::Relaxed) {
            let batch = self.recv_batch()?;
            let taken = batch.len();
            if taken > 0 {
                on_batch(batch);
                let small = taken * 4 < self.batch.bufs.capacity();
                if small && was_small && !self.coalesce.is_zero() {
                    std::thread::sleep(self.coalesce);
                }
                was_small = small;
            }
        }
        if self.kernel_drops {
            self.poll_kernel_drops();
        }
        Ok(self.counters.snapshot())
    }

    fn poll_kernel_drops(&mut self) {
        self.last_drops_poll = Instant::now();
        if let Ok(raw) = sys::socket_drops(self.socket.as_fd()) {
            self.note_kernel_drops(raw);
        }
    }

    /// Folds a reading of the kernel's wrapping 32-bit drop counter into the 64-bit total. Readings may
    /// arrive out of order (a datagram carries the value from when it was queued), so an older one —
    /// "behind" in serial-number arithmetic — is ignored.
    fn note_kernel_drops(&mut self, raw: u32) {
        let delta = raw.wrapping_sub(self.last_drops);
        if delta != 0 && delta < 1 << 31 {
            self.last_drops = raw;
            self.counters.kernel_drops.fetch_add(u64::from(delta), Ordering::Relaxed);
        }
    }
}
