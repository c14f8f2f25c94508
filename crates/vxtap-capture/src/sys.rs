//! The crate's only `unsafe` code: thin wrappers over the libc calls that socket2 and pcap do not cover
//! (`recvmmsg` with its control messages, a few socket options, `poll`).
//!
//! Everything here is `pub(crate)`; the rest of the crate is safe Rust.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use libc::{c_int, c_uint, socklen_t};

/// Control-message space per datagram, in 8-byte words: room for an `in6_pktinfo` (40 bytes with its
/// header) plus the `SO_RXQ_OVFL` counter (24 bytes), with margin.
const CONTROL_WORDS: usize = 16;
const CONTROL_BYTES: usize = CONTROL_WORDS * mem::size_of::<u64>();

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(fd: BorrowedFd<'_>, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: `value` lives on the stack for the whole call and the length passed is exactly its size;
    // the kernel only reads that many bytes. `fd` is a valid, open descriptor for the borrow's lifetime.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<c_int>() as socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The socket's cumulative count of datagrams dropped because its receive queue was full
/// (`SO_MEMINFO`, `SK_MEMINFO_DROPS`; Linux 4.6 and later).
pub(crate) fn socket_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = [0u32; 16];
    let mut len = mem::size_of_val(&info) as socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call; the kernel writes at most
    // `len` bytes and stores the number written back into `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let idx = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (idx + 1) * mem::size_of::<u32>() {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    Ok(info[idx])
}

/// Waits up to `timeout_ms` for `fd` to become readable. `Ok(false)` on timeout or signal.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is one valid, writable `pollfd` for the duration of the call, and we pass a count of 1.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(err) };
    }
    Ok(rc > 0)
}

/// What the kernel reported about one received datagram.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MsgMeta {
    /// Bytes written into the datagram's buffer slot (never more than the slot size).
    pub len: usize,
    /// `MSG_TRUNC`: the datagram was larger than its slot and was cut.
    pub truncated: bool,
    /// The sender's address (IPv4-mapped IPv6 addresses are turned into IPv4).
    pub src: Option<SocketAddr>,
    /// The datagram's destination address, from `IP_PKTINFO` / `IPV6_PKTINFO`.
    pub dst: Option<IpAddr>,
    /// The socket's cumulative drop counter (`SO_RXQ_OVFL`), when the kernel attached it.
    pub drops: Option<u32>,
}

/// Reusable `recvmmsg` state: one contiguous data area cut into equal slots, plus each slot's address,
/// control buffer, `iovec` and `mmsghdr`.
pub(crate) struct MmsgBuffers {
    slot_size: usize,
    data: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<[u64; CONTROL_WORDS]>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` only ever point into this struct's own heap
// buffers (`data`, `names`, `controls`, `iovecs`). They are rewritten at the start of every `recv`, which
// takes `&mut self`, and are dereferenced only by the kernel during that call. Shared references never
// follow them, so moving the struct to another thread or sharing `&MmsgBuffers` is sound.
unsafe impl Send for MmsgBuffers {}
// SAFETY: see the `Send` impl: `&self` methods never dereference the stored pointers.
unsafe impl Sync for MmsgBuffers {}

impl MmsgBuffers {
    /// Buffers for `batch` datagrams of up to `slot_size` bytes each.
    pub(crate) fn new(batch: usize, slot_size: usize) -> MmsgBuffers {
        // SAFETY: `sockaddr_storage`, `iovec` and `mmsghdr` are plain C structs for which all-zero bytes are
        // a valid value (zero family, null pointers, zero lengths).
        let (name, iov, hdr) = unsafe {
            (
                mem::zeroed::<libc::sockaddr_storage>(),
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::mmsghdr>(),
            )
        };
        MmsgBuffers {
            slot_size,
            data: vec![0u8; batch * slot_size],
            names: vec![name; batch],
            controls: vec![[0u64; CONTROL_WORDS]; batch],
            iovecs: vec![iov; batch],
            headers: vec![hdr; batch],
        }
    }

    /// How many datagrams one call can receive.
    pub(crate) fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// One `recvmmsg(MSG_WAITFORONE)` call: blocks until at least one datagram is queued or the socket's
    /// receive timeout expires, then takes every queued datagram up to the capacity. Returns how many.
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let slots = self.data.chunks_exact_mut(self.slot_size);
        let parts = self.iovecs.iter_mut().zip(self.headers.iter_mut()).zip(self.names.iter_mut());
        for ((((iov, hdr), name), control), slot) in parts.zip(self.controls.iter_mut()).zip(slots) {
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = ptr::from_mut(name).cast();
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as socklen_t;
            hdr.msg_hdr.msg_iov = ptr::from_mut(iov);
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = control.as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = CONTROL_BYTES as _;
            hdr.msg_hdr.msg_flags = 0;
        }
        let vlen = self.headers.len() as c_uint;
        // SAFETY: `headers` holds `vlen` initialised `mmsghdr`s whose name, iovec, data and control pointers
        // were just set to live buffers of this struct with the lengths given; `&mut self` guarantees nothing
        // else accesses them during the call. A null timeout is allowed (the socket's SO_RCVTIMEO applies).
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                vlen,
                libc::MSG_WAITFORONE,
                ptr::null_mut(),
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc as usize) }
    }

    /// The payload of datagram `i` of the last `recv`, `len` bytes long (as [`MsgMeta::len`] reported).
    pub(crate) fn payload(&self, i: usize, len: usize) -> &[u8] {
        let start = i * self.slot_size;
        self.data.get(start..start + len.min(self.slot_size)).unwrap_or(&[])
    }

    /// Decodes the kernel's report for datagram `i` of the last `recv` (`i` below what `recv` returned).
    pub(crate) fn meta(&self, i: usize) -> MsgMeta {
        let mut meta = MsgMeta { len: 0, truncated: false, src: None, dst: None, drops: None };
        let (Some(hdr), Some(name)) = (self.headers.get(i), self.names.get(i)) else {
            return meta;
        };
        meta.len = (hdr.msg_len as usize).min(self.slot_size);
        meta.truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        meta.src = sockaddr_to_std(name, hdr.msg_hdr.msg_namelen);
        let msg = &hdr.msg_hdr;
        // `msg_controllen` and `cmsg_len` are `size_t` on glibc but `socklen_t` on musl.
        #[allow(clippy::unnecessary_cast)]
        let controllen = (msg.msg_controllen as usize).min(CONTROL_BYTES);
        if controllen == 0 {
            return meta;
        }
        // SAFETY: `msg.msg_control` points at this slot's control buffer (CONTROL_BYTES long, 8-byte aligned),
        // and the kernel set `msg_controllen` (clamped above) to the bytes of well-formed control messages it
        // wrote there. CMSG_FIRSTHDR/CMSG_NXTHDR never step past `msg_control + msg_controllen`, every data
        // read is checked against the message's `cmsg_len` first, and `read_unaligned` copes with alignment.
        unsafe {
            let mut bounded = *msg;
            bounded.msg_controllen = controllen as _;
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const bounded);
            while !cmsg.is_null() {
                let c = &*cmsg;
                let data = libc::CMSG_DATA(cmsg);
                #[allow(clippy::unnecessary_cast)]
                let data_len = (c.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                match (c.cmsg_level, c.cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_PKTINFO)
                        if data_len >= mem::size_of::<libc::in_pktinfo>() =>
                    {
                        let info = ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                        meta.dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                        if data_len >= mem::size_of::<libc::in6_pktinfo>() =>
                    {
                        let info = ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                        meta.dst = Some(canonical_ip(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr))));
                    }
                    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) if data_len >= mem::size_of::<u32>() => {
                        meta.drops = Some(ptr::read_unaligned(data.cast::<u32>()));
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&raw const bounded, cmsg);
            }
        }
        meta
    }
}

/// An IPv4-mapped IPv6 address (a v4 datagram on a dual-stack socket) as plain IPv4; others unchanged.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which is smaller than and no more
            // aligned than `sockaddr_storage`, and the kernel wrote at least its size.
            let sin = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6 = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)),
            })
        }
        _ => None,
    }
}
