//! Ports on 127.0.0.1 for a test to give to a server it starts, or to use as a port nothing answers.
//!
//! The usual way, binding port 0 and releasing it, races: the kernel hands the same port out again to
//! the next `bind(0)` (on this machine 16 times in 200,000 tries, for bind, bind, release, bind), and
//! may take it as the source port of any outgoing connection before the server binds it. Ports from
//! here come from below the kernel's ephemeral range, which neither ever uses, and a process never
//! gets the same one twice.
//!
//! ```
//! let (a, b) = (vxtap_testgen::ports::unused_port(), vxtap_testgen::ports::unused_port());
//! assert_ne!(a, b);
//! std::net::TcpListener::bind(("127.0.0.1", a)).unwrap();
//! ```

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out: above the well-known and most registered services' ports.
const LOWEST: u32 = 10_000;

/// A port on 127.0.0.1 that no TCP or UDP socket is bound to when it is returned, below the kernel's
/// ephemeral range, and not returned before in this process.
///
/// Processes start at different points of the range (by process id), so test binaries run one after
/// another, or a lab beside them, rarely try the same ports.
///
/// # Panics
/// When every port of the range is taken, which leaves a test nothing to run with.
pub fn unused_port() -> u16 {
    static TRIED: AtomicU32 = AtomicU32::new(0);
    unused_port_after(&TRIED)
}

/// How many ports there are to hand out.
fn span() -> u32 {
    ephemeral_start().saturating_sub(LOWEST).max(1)
}

/// The candidate at `tried` (counting the candidates this process has tried so far) of `span`.
fn candidate(tried: u32, span: u32) -> u16 {
    let start = std::process::id().wrapping_mul(7_919) % span;
    (LOWEST + (start + tried) % span) as u16
}

/// [`unused_port`] with its count of candidates tried given.
fn unused_port_after(tried: &AtomicU32) -> u16 {
    let span = span();
    for _ in 0..span {
        let port = candidate(tried.fetch_add(1, Ordering::Relaxed), span);
        let free =
            TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no unused port between {LOWEST} and the ephemeral range");
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|&start| start > LOWEST)
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| unused_port()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        for &port in &ports {
            assert!(u32::from(port) >= LOWEST && u32::from(port) < ephemeral_start());
        }
        let held: Vec<TcpListener> =
            ports.iter().map(|&p| TcpListener::bind(("127.0.0.1", p)).unwrap()).collect();
        assert_eq!(held.len(), 200);
    }

    #[test]
    fn a_port_in_use_is_skipped() {
        // Half the range away from the candidates `unused_port` tries first: the test above runs
        // beside this one, in this process, and binds and releases those, so the port held here
        // could be released under this test (as one CI run saw).
        let start = span() / 2;
        let first = candidate(start, span());
        // Held here, or by whatever else holds it: in use either way.
        let _held = TcpListener::bind(("127.0.0.1", first));
        let tried = AtomicU32::new(start);
        assert_ne!(unused_port_after(&tried), first);
        assert!(tried.load(Ordering::Relaxed) >= start + 2);
    }
}
