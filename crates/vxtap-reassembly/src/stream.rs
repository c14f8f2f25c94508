//! One direction of a flow: sequence tracking, the out-of-order buffer and gap decisions.

use std::collections::BTreeMap;

use crate::{ReassemblyConfig, ReassemblyStats};

/// Segments whose sequence number is farther than this from the next expected byte are not part of
/// the stream (a stale or forged segment), however much was lost.
const MAX_WINDOW: i64 = 256 << 20;

/// Where sequence number `seq` lies relative to `next`, the next expected one, when within
/// [`MAX_WINDOW`] of it.
fn within_window(next: u32, seq: u32) -> Option<i64> {
    let rel = i64::from(seq.wrapping_sub(next) as i32);
    (-MAX_WINDOW..=MAX_WINDOW).contains(&rel).then_some(rel)
}

/// How far before the first segment seen a stream without a SYN may still start: its first bytes
/// are held until the reorder timeout, so segments sent earlier that arrive later are kept.
const TENTATIVE_BACK: u32 = 1 << 20;

/// What a stream hands to its flow's handler.
pub(crate) enum Piece<'a> {
    /// Bytes at a stream offset, with the acknowledgment number their segment carried.
    Data { data: &'a [u8], offset: u64, ack: Option<u32> },
    /// Bytes lost at a stream offset.
    Gap { offset: u64, len: u64 },
}

/// Bytes that arrived ahead of a hole, plus the bytes the capture cut from the end of their segment.
struct Chunk {
    data: Vec<u8>,
    missing: u64,
    /// The acknowledgment number the segment carried.
    ack: Option<u32>,
}

#[derive(Default)]
pub(crate) struct Stream {
    /// Sequence number of the next byte to deliver, once known.
    next_seq: Option<u32>,
    /// Stream offset of `next_seq` (bytes delivered plus bytes declared lost).
    pos: u64,
    ooo: BTreeMap<u64, Chunk>,
    /// Bytes in `ooo`: 32 bits (a stream buffers at most `max_ooo_bytes`, capped at 1 GiB, and
    /// one segment), where 64 would push every flow past its allocation class.
    ooo_bytes: u32,
    /// Capture time when the current hole opened.
    hole_since: Option<u64>,
    /// Stream offset of the FIN, once seen.
    fin: Option<u64>,
    pub(crate) ended: bool,
    pub(crate) seen: bool,
    /// The highest acknowledgment the other side sent for this stream.
    acked: Option<u32>,
    /// The start is a guess (no SYN or SYN-ACK fixed it): offset 0 lies [`TENTATIVE_BACK`] before the
    /// first segment seen and nothing is delivered until the leading hole is settled, which moves
    /// to the first buffered byte silently (the bytes before a midstream start are not a loss),
    /// or to `floor` if that is lower.
    tentative: bool,
    /// While the start is a guess, the lowest offset of a segment without payload (0: none seen). A
    /// bare ACK names the next byte its sender will send, so the bytes from there to the first
    /// buffered byte were sent: they are a loss, not a midstream start.
    floor: u32,
    /// The initial sequence number, when `isn_known`: a copy of the SYN arriving after the
    /// connection closed is known by it. Two fields, not an `Option`, which would add 8 bytes to
    /// every flow (the bool fits in padding).
    isn: u32,
    /// Whether a SYN or a SYN-ACK fixed `isn`.
    isn_known: bool,
}

impl Stream {
    pub(crate) fn buffered(&self) -> usize {
        self.ooo_bytes as usize
    }

    pub(crate) fn has_hole(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// The initial sequence number, where a SYN or SYN-ACK fixed it.
    pub(crate) fn isn(&self) -> Option<u32> {
        self.isn_known.then_some(self.isn)
    }

    /// The sequence numbers this stream's bytes took so far, as the first and how many (at most
    /// `u32::MAX`), once its start is no guess: a late copy of its segments lies within them.
    pub(crate) fn span(&self) -> Option<(u32, u32)> {
        let first = self.first_seq().filter(|_| !self.tentative)?;
        Some((first, u32::try_from(self.pos).unwrap_or(u32::MAX)))
    }

    /// The sequence number of stream offset 0, once the stream has a start (guessed or not).
    fn first_seq(&self) -> Option<u32> {
        self.next_seq.map(|next| next.wrapping_sub(self.pos as u32))
    }

    fn set_isn(&mut self, isn: u32) {
        self.isn = isn;
        self.isn_known = true;
    }

    /// Whether a SYN with sequence number `seq` may be this stream's own: the one that fixed its
    /// initial sequence number, or, while none did, one at or before the first bytes seen (offset 0
    /// of a guessed start lies [`TENTATIVE_BACK`] before them). Any other opens a new connection.
    pub(crate) fn owns_syn(&self, seq: u32) -> bool {
        if self.isn_known {
            return self.isn == seq;
        }
        self.first_seq().is_none_or(|first| seq.wrapping_add(1).wrapping_sub(first) <= TENTATIVE_BACK)
    }

    /// Whether bytes at `seq` lie past this stream's FIN, once one was seen, or beyond any window
    /// of the stream: no segment of this connection can carry them. (A keep-alive probe after a
    /// FIN carries the FIN's own sequence number.)
    pub(crate) fn is_past_fin(&self, seq: u32) -> bool {
        let (Some(fin), Some(next)) = (self.fin, self.next_seq) else { return false };
        within_window(next, seq).is_none_or(|rel| self.pos.saturating_add_signed(rel) > fin)
    }

    /// Whether a reset at `seq` answers an unacceptable ACK during this stream's handshake: its
    /// SYN was seen, nothing after it, and the reset does not carry the first byte's number (a
    /// stack resets an ACK it did not expect with that ACK's number, RFC 793).
    pub(crate) fn is_reset_of_refused_syn(&self, seq: u32) -> bool {
        self.isn_known
            && self.pos == 0
            && self.ooo.is_empty()
            && self.fin.is_none()
            && seq != self.isn.wrapping_add(1)
    }

    /// The stream offset an acknowledgment `ack` of this stream stands for, once the stream has a
    /// start (before offset 0: 0).
    pub(crate) fn offset_of(&self, ack: u32) -> Option<u64> {
        let next = self.next_seq?;
        let ahead = i64::from(ack.wrapping_sub(next) as i32);
        Some(self.pos.saturating_add_signed(ahead))
    }

    /// True when the receiver acknowledged bytes of this stream that were not delivered yet: they
    /// were sent, so the mirror may still bring them.
    pub(crate) fn owes_acknowledged_bytes(&self) -> bool {
        self.acked.and_then(|ack| self.offset_of(ack)).is_some_and(|acked| acked > self.pos)
    }

    /// Records an acknowledgment of this stream by the receiver.
    pub(crate) fn ack(&mut self, ack: u32) {
        match self.acked {
            Some(prev) if (ack.wrapping_sub(prev) as i32) <= 0 => {}
            _ => self.acked = Some(ack),
        }
    }

    /// True when the receiver has not acknowledged past the start of the current hole: it is still
    /// waiting for those bytes too, so the sender will retransmit them.
    fn receiver_waits(&self) -> bool {
        match (self.acked, self.next_seq) {
            (Some(ack), Some(next)) => (ack.wrapping_sub(next) as i32) <= 0,
            _ => false,
        }
    }

    /// Sets where the stream starts when nothing fixed it yet (its SYN was not seen): the sequence
    /// number the other side's handshake acknowledged. A guessed start that delivered nothing yet
    /// moves there, but not past bytes buffered already (they would be cut).
    pub(crate) fn start_at(
        &mut self,
        seq: u32,
        emit: &mut dyn FnMut(Piece<'_>),
        stats: &mut ReassemblyStats,
    ) {
        match self.next_seq {
            None => {
                self.next_seq = Some(seq);
                self.set_isn(seq.wrapping_sub(1));
            }
            Some(next) if self.tentative => {
                let ahead = seq.wrapping_sub(next);
                let cuts_buffered = self.ooo.first_key_value().is_some_and(|(&at, _)| at < u64::from(ahead));
                if ahead <= TENTATIVE_BACK && !cuts_buffered {
                    self.advance(u64::from(ahead));
                    self.tentative = false;
                    self.set_isn(seq.wrapping_sub(1));
                    self.drain(emit, stats);
                }
            }
            Some(_) => {}
        }
    }

    /// A SYN fixes the initial sequence number, unless data already flowed (a late retransmitted SYN).
    /// A start guessed from an earlier bare segment is then no longer a guess.
    pub(crate) fn syn(&mut self, seq: u32) {
        if self.pos == 0 && self.ooo.is_empty() {
            self.next_seq = Some(seq.wrapping_add(1));
            self.tentative = false;
            self.set_isn(seq);
        }
    }

    /// Handles one segment's payload (`missing` bytes cut by the capture follow it) and FIN;
    /// `ack` is the acknowledgment number the segment carried.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn segment(
        &mut self,
        seq: u32,
        payload: &[u8],
        missing: u64,
        fin: bool,
        ack: Option<u32>,
        ts: u64,
        cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        emit: &mut dyn FnMut(Piece<'_>),
    ) {
        let next = *self.next_seq.get_or_insert_with(|| {
            self.tentative = true;
            seq.wrapping_sub(TENTATIVE_BACK)
        });
        let Some(rel) = within_window(next, seq) else {
            stats.out_of_window += 1;
            return;
        };
        let len = payload.len() as i64 + missing as i64;
        if len == 0
            && !fin
            && self.tentative
            && self.pos == 0
            && rel > 0
            && (self.floor == 0 || rel < i64::from(self.floor))
        {
            self.floor = rel as u32;
        }
        if fin && rel + len >= 0 && self.fin.is_none() {
            self.fin = Some(self.pos + (rel + len) as u64);
        }
        if len > 0 {
            if rel + len <= 0 {
                stats.duplicates += 1;
            } else {
                // Trim what was already delivered; the rest starts at or after `pos`.
                let skip = (-rel).max(0) as usize;
                let data = payload.get(skip..).unwrap_or(&[]);
                let missing = missing - (skip.saturating_sub(payload.len()) as u64);
                let at = self.pos + rel.max(0) as u64;
                if at == self.pos {
                    self.deliver(data, missing, ack, emit, stats);
                    self.drain(emit, stats);
                } else {
                    stats.out_of_order += 1;
                    self.insert(at, data, missing, ack, stats);
                }
            }
        }
        if self.ooo.is_empty() {
            self.hole_since = None;
        } else {
            self.hole_since.get_or_insert(ts);
            if self.buffered() > cfg.max_ooo_bytes.min(1 << 30) {
                self.skip_hole(emit, stats);
            }
        }
    }

    /// Declares the current hole lost if it waited longer than the reorder timeout, unless the receiver
    /// is still waiting for it too (then the sender's retransmission will fill it).
    pub(crate) fn expire_hole(
        &mut self,
        now: u64,
        cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        emit: &mut dyn FnMut(Piece<'_>),
    ) {
        while let Some(since) = self.hole_since {
            if now.saturating_sub(since) < cfg.reorder_timeout_us || self.receiver_waits() {
                break;
            }
            self.skip_hole(emit, stats);
            self.hole_since = if self.ooo.is_empty() { None } else { Some(now) };
        }
    }

    /// Delivers everything buffered, declaring every hole (and bytes missing before a FIN) a gap.
    pub(crate) fn flush(&mut self, stats: &mut ReassemblyStats, emit: &mut dyn FnMut(Piece<'_>)) {
        while !self.ooo.is_empty() {
            self.skip_hole(emit, stats);
        }
        self.hole_since = None;
        if let Some(fin) = self.fin {
            if fin > self.pos {
                let len = fin - self.pos;
                self.gap(len, emit, stats);
            }
        }
    }

    /// True once the stream has delivered (or declared lost) every byte before its FIN.
    pub(crate) fn reached_fin(&self) -> bool {
        self.fin.is_some_and(|fin| self.pos >= fin)
    }

    fn deliver(
        &mut self,
        data: &[u8],
        missing: u64,
        ack: Option<u32>,
        emit: &mut dyn FnMut(Piece<'_>),
        stats: &mut ReassemblyStats,
    ) {
        if !data.is_empty() {
            // Bytes delivered at the current position settle a guessed start.
            self.tentative = false;
            emit(Piece::Data { data, offset: self.pos, ack });
            self.advance(data.len() as u64);
            stats.bytes += data.len() as u64;
        }
        if missing > 0 {
            // Bytes the capture cut will never arrive from the mirror: a gap, up to any buffered data.
            let end = self.pos + missing;
            let until = self.ooo.first_key_value().map_or(end, |(&at, _)| at.min(end));
            if until > self.pos {
                self.gap(until - self.pos, emit, stats);
            }
        }
    }

    /// Delivers buffered chunks that became contiguous.
    fn drain(&mut self, emit: &mut dyn FnMut(Piece<'_>), stats: &mut ReassemblyStats) {
        while let Some(entry) = self.ooo.first_entry() {
            if *entry.key() > self.pos {
                break;
            }
            let (at, chunk) = entry.remove_entry();
            self.ooo_bytes -= chunk.data.len() as u32;
            let skip = (self.pos - at) as usize;
            let end = at + chunk.data.len() as u64 + chunk.missing;
            if end <= self.pos {
                continue;
            }
            let data = chunk.data.get(skip..).unwrap_or(&[]);
            let missing = end - self.pos - data.len() as u64;
            self.deliver(data, missing, chunk.ack, emit, stats);
        }
    }

    /// Declares the bytes up to the first buffered chunk lost, then delivers what follows. A guessed
    /// start moves to the first buffered byte instead: nothing before it was lost.
    fn skip_hole(&mut self, emit: &mut dyn FnMut(Piece<'_>), stats: &mut ReassemblyStats) {
        if let Some((&at, _)) = self.ooo.first_key_value() {
            if at > self.pos {
                if self.tentative {
                    let floor = u64::from(self.floor);
                    self.advance(if floor > self.pos && floor < at { floor } else { at } - self.pos);
                    if at > self.pos {
                        self.gap(at - self.pos, emit, stats);
                    }
                } else {
                    self.gap(at - self.pos, emit, stats);
                }
            }
            self.tentative = false;
            self.drain(emit, stats);
        }
    }

    fn gap(&mut self, len: u64, emit: &mut dyn FnMut(Piece<'_>), stats: &mut ReassemblyStats) {
        emit(Piece::Gap { offset: self.pos, len });
        self.advance(len);
        stats.gaps += 1;
        stats.gap_bytes += len;
    }

    fn advance(&mut self, len: u64) {
        self.pos += len;
        if let Some(next) = self.next_seq.as_mut() {
            *next = next.wrapping_add(len as u32);
        }
    }

    /// Buffers `data` at stream offset `at`, keeping bytes already buffered (first data wins) and
    /// counting overlaps whose bytes differ.
    fn insert(&mut self, at: u64, data: &[u8], missing: u64, ack: Option<u32>, stats: &mut ReassemblyStats) {
        let end = at + data.len() as u64;
        let mut cursor = at;
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let before = self.ooo.range(..at).next_back().map(|(&s, c)| (s, c));
        let overlapping = before.into_iter().chain(self.ooo.range(at..end.max(at + 1)).map(|(&s, c)| (s, c)));
        let mut duplicate = !data.is_empty();
        for (start, chunk) in overlapping {
            let chunk_end = start + chunk.data.len() as u64;
            if chunk_end <= cursor || start >= end {
                continue;
            }
            if start > cursor {
                pieces.push((cursor, start));
                duplicate = false;
            }
            let (lo, hi) = (start.max(at), chunk_end.min(end));
            let old = &chunk.data[(lo - start) as usize..(hi - start) as usize];
            let new = &data[(lo - at) as usize..(hi - at) as usize];
            if old != new {
                stats.overlap_conflicts += 1;
            }
            cursor = cursor.max(chunk_end);
        }
        if cursor < end || data.is_empty() {
            pieces.push((cursor.min(end), end));
            duplicate = false;
        }
        if duplicate {
            stats.duplicates += 1;
        }
        let last = pieces.len().saturating_sub(1);
        for (i, (start, stop)) in pieces.into_iter().enumerate() {
            let bytes = data[(start - at) as usize..(stop - at) as usize].to_vec();
            let chunk_missing = if i == last && stop == end { missing } else { 0 };
            if bytes.is_empty() && chunk_missing == 0 {
                continue;
            }
            self.ooo_bytes += bytes.len() as u32;
            if let Some(old) = self.ooo.insert(start, Chunk { data: bytes, missing: chunk_missing, ack }) {
                // Only an empty marker can share a start with new bytes; keep the larger record.
                self.ooo_bytes -= old.data.len() as u32;
            }
        }
    }
}
