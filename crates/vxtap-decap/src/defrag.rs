//! Reassembly of outer IPv4 fragments: a mirror path with an MTU below the VXLAN datagram size splits
//! each datagram in two. Bounded in datagrams, bytes and time (capture time, as everywhere).

use std::collections::{BTreeMap, HashMap, VecDeque};

use etherparse::Ipv4HeaderSlice;

use crate::{DecapError, LinkType, network_layer};

/// Limits of a [`Defragmenter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragConfig {
    /// Datagrams being reassembled at once (default 4096); past it the oldest is dropped.
    pub max_datagrams: usize,
    /// Fragment bytes held at once (default 16 MiB); past it the oldest datagrams are dropped.
    pub max_bytes: usize,
    /// A datagram not complete this long after its first fragment is dropped (default 30 s, µs).
    pub timeout_us: u64,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig { max_datagrams: 4096, max_bytes: 16 << 20, timeout_us: 30_000_000 }
    }
}

/// Counters of a [`Defragmenter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Fragments accepted.
    pub fragments: u64,
    /// Datagrams rebuilt.
    pub reassembled: u64,
    /// Datagrams dropped incomplete (timeout or limits).
    pub dropped: u64,
    /// Fragments that were malformed, overlapped inconsistently or exceeded 64 KiB.
    pub invalid: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    protocol: u8,
}

struct Pending {
    first_ts: u64,
    /// The IP header of the fragment at offset 0, once seen.
    header: Option<Vec<u8>>,
    /// Payload pieces by byte offset.
    parts: BTreeMap<usize, Vec<u8>>,
    /// Payload length, known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    bytes: usize,
}

/// Rebuilds IPv4 datagrams from their fragments. One per input thread (fragments of one datagram
/// arrive on one input).
pub struct Defragmenter {
    cfg: DefragConfig,
    pending: HashMap<Key, Pending>,
    order: VecDeque<(u64, Key)>,
    bytes: usize,
    stats: DefragStats,
}

impl Defragmenter {
    /// An empty defragmenter.
    pub fn new(cfg: DefragConfig) -> Self {
        Defragmenter {
            cfg,
            pending: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            stats: DefragStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DefragStats {
        self.stats
    }

    /// Takes one fragment (a frame that decoded to [`crate::SkipReason::OuterFragment`]); returns the
    /// whole datagram as a raw IPv4 packet (decode it with [`LinkType::RawIp`]) once complete.
    pub fn push(&mut self, link: LinkType, frame: &[u8], ts: u64) -> Result<Option<Vec<u8>>, DecapError> {
        self.expire(ts);
        let packet = network_layer(link, frame)?;
        let header = Ipv4HeaderSlice::from_slice(packet).map_err(|_| DecapError::IpMalformed)?;
        let header_len = header.slice().len();
        let end = usize::from(header.total_len()).min(packet.len());
        let payload = packet.get(header_len..end).ok_or(DecapError::IpMalformed)?;
        let offset = usize::from(header.fragments_offset().value()) * 8;
        let key = Key {
            src: header.source(),
            dst: header.destination(),
            id: header.identification(),
            protocol: header.protocol().0,
        };
        if offset + payload.len() > usize::from(u16::MAX)
            || (header.more_fragments() && payload.len() % 8 != 0)
        {
            self.stats.invalid += 1;
            return Ok(None);
        }
        self.stats.fragments += 1;
        if !self.pending.contains_key(&key) {
            self.order.push_back((ts, key));
            self.pending.insert(
                key,
                Pending { first_ts: ts, header: None, parts: BTreeMap::new(), total: None, bytes: 0 },
            );
        }
        let Some(p) = self.pending.get_mut(&key) else { return Ok(None) };
        if offset == 0 {
            p.header.get_or_insert_with(|| header.slice().to_vec());
        }
        if !header.more_fragments() {
            p.total = Some(offset + payload.len());
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = p.parts.entry(offset) {
            slot.insert(payload.to_vec());
            p.bytes += payload.len();
            self.bytes += payload.len();
        }
        let done = Self::assemble(p);
        if let Some(result) = done {
            self.forget(&key);
            return match result {
                Some(datagram) => {
                    self.stats.reassembled += 1;
                    Ok(Some(datagram))
                }
                None => {
                    self.stats.invalid += 1;
                    Ok(None)
                }
            };
        }
        self.enforce_limits();
        Ok(None)
    }

    /// `Some(Some(datagram))` when complete, `Some(None)` when complete but inconsistent, `None` when
    /// pieces are missing.
    fn assemble(p: &Pending) -> Option<Option<Vec<u8>>> {
        let (total, header) = (p.total?, p.header.as_ref()?);
        let mut covered = 0;
        for (&at, part) in &p.parts {
            if at > covered {
                return None;
            }
            covered = covered.max(at + part.len());
        }
        if covered < total {
            return None;
        }
        let mut out = Vec::with_capacity(header.len() + total);
        out.extend_from_slice(header);
        let mut payload = vec![0u8; total];
        let mut filled = vec![false; total];
        for (&at, part) in &p.parts {
            for (i, &b) in part.iter().enumerate() {
                let Some(slot) = payload.get_mut(at + i) else { return Some(None) };
                if filled[at + i] && *slot != b {
                    return Some(None);
                }
                *slot = b;
                filled[at + i] = true;
            }
        }
        let Ok(total_len) = u16::try_from(header.len() + total) else { return Some(None) };
        out[2..4].copy_from_slice(&total_len.to_be_bytes());
        out[6] = 0;
        out[7] = 0;
        out[10] = 0;
        out[11] = 0;
        out.extend_from_slice(&payload);
        Some(Some(out))
    }

    fn forget(&mut self, key: &Key) {
        if let Some(p) = self.pending.remove(key) {
            self.bytes -= p.bytes;
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(ts, key)) = self.order.front() {
            let live = self.pending.get(&key).is_some_and(|p| p.first_ts == ts);
            if live && now.saturating_sub(ts) < self.cfg.timeout_us {
                break;
            }
            self.order.pop_front();
            if live {
                self.forget(&key);
                self.stats.dropped += 1;
            }
        }
    }

    fn enforce_limits(&mut self) {
        while self.pending.len() > self.cfg.max_datagrams || self.bytes > self.cfg.max_bytes {
            let Some((ts, key)) = self.order.pop_front() else { break };
            if self.pending.get(&key).is_some_and(|p| p.first_ts == ts) {
                self.forget(&key);
                self.stats.dropped += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecapConfig, Decoded, SkipReason, decode_frame};
    use vxtap_testgen::frame::fragment_ipv4 as fragment;

    fn vxlan_frame() -> Vec<u8> {
        use vxtap_testgen::frame::{Encap, TcpSpec, build, flags};
        let payload = vec![b'q'; 3000];
        let tcp = TcpSpec {
            src: "10.0.0.1:1234".parse().unwrap(),
            dst: "10.0.0.2:80".parse().unwrap(),
            seq: 7,
            ack: 0,
            flags: flags::ACK,
            payload: &payload,
            vlans: &[],
            ip_extras: false,
        };
        let encap = Encap::Vxlan {
            vni: 5,
            outer_src: "10.9.0.1".parse().unwrap(),
            outer_dst: "10.9.0.2".parse().unwrap(),
            sport: 4000,
        };
        build(encap, &tcp)
    }

    #[test]
    fn fragments_in_any_order_rebuild_the_datagram() {
        let frame = vxlan_frame();
        let mut frags = fragment(&frame, 1480);
        frags.reverse();
        let cfg = DecapConfig::default();
        let mut d = Defragmenter::new(DefragConfig::default());
        let mut rebuilt = None;
        for f in &frags {
            assert_eq!(
                decode_frame(LinkType::Ethernet, f, &cfg),
                Ok(Decoded::Skipped(SkipReason::OuterFragment))
            );
            if let Some(packet) = d.push(LinkType::Ethernet, f, 1).unwrap() {
                rebuilt = Some(packet);
            }
        }
        let packet = rebuilt.expect("complete");
        match decode_frame(LinkType::RawIp, &packet, &cfg).unwrap() {
            Decoded::Tcp(seg) => assert_eq!(seg.payload.len(), 3000),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.stats().reassembled, 1);
        assert_eq!(d.bytes, 0);
    }

    #[test]
    fn incomplete_datagrams_time_out_and_limits_hold() {
        let frame = vxlan_frame();
        let frags = fragment(&frame, 1480);
        let mut d = Defragmenter::new(DefragConfig { timeout_us: 10, ..DefragConfig::default() });
        assert_eq!(d.push(LinkType::Ethernet, &frags[0], 0).unwrap(), None);
        assert_eq!(d.push(LinkType::Ethernet, &frags[1], 100).unwrap(), None);
        assert_eq!(d.stats().dropped, 1, "the first fragment's datagram expired");
        let mut d = Defragmenter::new(DefragConfig { max_datagrams: 2, ..DefragConfig::default() });
        for id in 0..10u16 {
            let mut f = frags[0].clone();
            f[18..20].copy_from_slice(&id.to_be_bytes());
            d.push(LinkType::Ethernet, &f, 0).unwrap();
        }
        assert!(d.pending.len() <= 2);
        assert_eq!(d.stats().dropped, 8);
    }

    #[test]
    fn conflicting_overlap_is_refused() {
        let frame = vxlan_frame();
        let frags = fragment(&frame, 1480);
        let mut evil = frags[1].clone();
        let last = evil.len() - 1;
        evil[last] ^= 0xff;
        let mut d = Defragmenter::new(DefragConfig::default());
        d.push(LinkType::Ethernet, &frags[1], 0).unwrap();
        let mut shifted = evil.clone();
        // Same fragment at a different offset that overlaps the first by 8 bytes.
        let word = u16::from_be_bytes([shifted[20], shifted[21]]);
        shifted[20..22].copy_from_slice(&(word - 1).to_be_bytes());
        d.push(LinkType::Ethernet, &shifted, 0).unwrap();
        for f in frags.iter().filter(|f| **f != frags[1]) {
            assert_eq!(d.push(LinkType::Ethernet, f, 0).unwrap(), None);
        }
        assert_eq!(d.stats().invalid, 1);
    }
}
