//! One connection: its two streams, its handler and its timers.

use vxtap_decap::{Segment, TcpFlags};

use crate::stream::{Piece, Stream};
use crate::{CloseReason, Delivery, Dir, ReassemblyConfig, ReassemblyStats, StreamHandler};

pub(crate) struct Flow<H> {
    streams: [Stream; 2],
    handler: H,
    /// Whether direction A travels from the key's `lo` endpoint to `hi`.
    a_is_lo: bool,
    last_seen: u64,
    /// What [`Flow::memory`] measured when the table last charged this flow to its memcap: the
    /// table subtracts exactly this when the flow changes or goes, so it measures once per segment.
    charged: usize,
}

impl<H: StreamHandler> Flow<H> {
    pub(crate) fn new(first_is_lo: bool, handler: H) -> Self {
        Flow {
            streams: [Stream::default(), Stream::default()],
            handler,
            a_is_lo: first_is_lo,
            last_seen: 0,
            charged: 0,
        }
    }

    /// Bytes this flow holds beyond its fixed overhead.
    fn memory(&self) -> usize {
        self.streams[0].buffered() + self.streams[1].buffered() + self.handler.buffered_bytes()
    }

    /// Measures the flow again after it changed: returns the bytes charged before and now.
    pub(crate) fn recharge(&mut self) -> (usize, usize) {
        let now = self.memory();
        (std::mem::replace(&mut self.charged, now), now)
    }

    /// The bytes last charged for this flow (see [`Flow::recharge`]).
    pub(crate) fn charged(&self) -> usize {
        self.charged
    }

    /// The direction of a segment from the key's `lo` endpoint when `from_lo`.
    fn dir_of(&self, from_lo: bool) -> Dir {
        if from_lo == self.a_is_lo { Dir::A } else { Dir::B }
    }

    /// `of` the streams from the key's `lo` and `hi` endpoints, in that order.
    pub(crate) fn by_origin<T>(&self, of: impl Fn(&Stream) -> T) -> [T; 2] {
        let [a, b] = [of(&self.streams[0]), of(&self.streams[1])];
        if self.a_is_lo { [a, b] } else { [b, a] }
    }

    /// Whether a segment (from the key's `lo` endpoint when `from_lo`) belongs to another
    /// connection on these ports, which a client may open as soon as the server closed first:
    /// - a SYN whose sequence number is not its sender's initial one, or a SYN-ACK that neither
    ///   acknowledges a SYN of this flow's other side nor carries its sender's known initial
    ///   number (late copies of this flow's handshake are neither);
    /// - bytes past their sender's FIN, or beyond any window of it: a connection sends nothing
    ///   after its FIN, so these come from a new one whose handshake the mirror lost. (Bytes of a
    ///   new connection numbered below the old FIN are taken for the old one's: into its hole, or
    ///   dropped as duplicates. Unlikely with random initial numbers; with clock-based ones, only
    ///   after the old connection sent faster than the clock runs.)
    pub(crate) fn is_new_connection(&self, seg: &Segment<'_>, from_lo: bool) -> bool {
        let h = &seg.header;
        let dir = self.dir_of(from_lo);
        let stream = &self.streams[dir.index()];
        if h.flags.contains(TcpFlags::SYN) {
            let other = &self.streams[dir.other().index()];
            return if h.flags.contains(TcpFlags::ACK) {
                !other.owns_syn(h.ack.wrapping_sub(1)) && stream.isn() != Some(h.seq)
            } else {
                !stream.owns_syn(h.seq)
            };
        }
        (!seg.payload.is_empty() || h.missing > 0) && stream.is_past_fin(h.seq)
    }

    /// Whether a segment (from the key's `lo` endpoint when `from_lo`) lies before its sender's
    /// stream start, where a SYN or SYN-ACK fixed it: a segment of an earlier connection on
    /// these ports (or a late copy of this one's SYN).
    pub(crate) fn precedes(&self, seg: &Segment<'_>, from_lo: bool) -> bool {
        let dir = self.dir_of(from_lo);
        self.streams[dir.index()]
            .isn()
            .is_some_and(|isn| (seg.header.seq.wrapping_sub(isn.wrapping_add(1)) as i32) < 0)
    }

    /// Capture time of the flow's latest segment.
    pub(crate) fn last_seen(&self) -> u64 {
        self.last_seen
    }

    pub(crate) fn has_hole(&self) -> bool {
        self.streams.iter().any(Stream::has_hole)
    }

    /// When the flow expires unless another packet comes.
    pub(crate) fn deadline(&self, cfg: &ReassemblyConfig) -> u64 {
        let closing = self.streams.iter().any(|s| s.ended || s.reached_fin());
        let timeout = if closing { cfg.closing_timeout_us } else { cfg.idle_timeout_us };
        self.last_seen + timeout
    }

    /// Handles a segment; returns why the flow must close, if it must.
    pub(crate) fn segment(
        &mut self,
        seg: &Segment<'_>,
        from_lo: bool,
        ts: u64,
        cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        sink: &mut H::Sink,
    ) -> Option<CloseReason> {
        let dir = self.dir_of(from_lo);
        let h = &seg.header;
        self.last_seen = self.last_seen.max(ts);
        self.handler.on_packet(dir, sink);
        if h.flags.contains(TcpFlags::RST) {
            // A client whose SYN a server's TIME-WAIT refused (with an ACK of the old connection)
            // resets with that ACK's number, then sends the same SYN again: that reset does not
            // end the attempt.
            if self.streams[dir.index()].is_reset_of_refused_syn(h.seq) {
                stats.out_of_window += 1;
                return None;
            }
            return Some(CloseReason::Rst);
        }
        if h.flags.contains(TcpFlags::ACK) {
            let at_first_byte =
                self.streams[dir.index()].isn().is_some_and(|isn| h.seq == isn.wrapping_add(1));
            let (other, this) = split(&mut self.streams, dir.other());
            other.ack(h.ack);
            // A SYN-ACK acknowledges the client's ISN: the client stream's start, even when the
            // client's SYN was not captured and its first data segments arrive out of order. So
            // does the client's handshake ACK, or its first bytes, for the server's stream when
            // the SYN-ACK was not captured (an HTTP server sends nothing before the request): the
            // server bytes missing before its first captured ones are then a loss, not taken for
            // a start midstream, which would pair each response with the request after its own.
            if h.flags.contains(TcpFlags::SYN) || at_first_byte {
                let handler = &mut self.handler;
                let peer = dir.other();
                other.start_at(h.ack, &mut |piece| deliver(handler, peer, piece, ts, sink, this), stats);
            }
        }
        let acked = h.flags.contains(TcpFlags::ACK).then_some(h.ack);
        let (stream, other) = split(&mut self.streams, dir);
        stream.seen = true;
        let mut seq = h.seq;
        if h.flags.contains(TcpFlags::SYN) {
            stream.syn(h.seq);
            seq = seq.wrapping_add(1);
        }
        let handler = &mut self.handler;
        let fin = h.flags.contains(TcpFlags::FIN);
        stream.segment(seq, seg.payload, u64::from(h.missing), fin, acked, ts, cfg, stats, &mut |piece| {
            deliver(handler, dir, piece, ts, sink, other)
        });
        self.check_end(dir, ts, sink)
    }

    /// Declares holes that waited too long.
    pub(crate) fn expire_holes(
        &mut self,
        now: u64,
        cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        sink: &mut H::Sink,
    ) {
        for dir in [Dir::A, Dir::B] {
            let handler = &mut self.handler;
            let (stream, other) = split(&mut self.streams, dir);
            stream.expire_hole(now, cfg, stats, &mut |piece| deliver(handler, dir, piece, now, sink, other));
        }
    }

    /// Flushes both streams and tells the handler the flow is over.
    pub(crate) fn close(
        &mut self,
        now: u64,
        reason: CloseReason,
        stats: &mut ReassemblyStats,
        sink: &mut H::Sink,
    ) {
        for dir in [Dir::A, Dir::B] {
            let handler = &mut self.handler;
            let (stream, other) = split(&mut self.streams, dir);
            stream.flush(stats, &mut |piece| deliver(handler, dir, piece, now, sink, other));
            let stream = &mut self.streams[dir.index()];
            if stream.reached_fin() && !stream.ended {
                stream.ended = true;
                self.handler.on_end(dir, now, sink);
            }
        }
        self.handler.on_close(now, reason, sink);
    }

    /// Signals the end of `dir` once its FIN is reached; the flow closes when both ends are done, or
    /// when one is and the other direction was never seen (a one-direction mirror), unless `dir`
    /// acknowledged bytes of it: then the mirror reordered them behind this end, and they still come.
    fn check_end(&mut self, dir: Dir, ts: u64, sink: &mut H::Sink) -> Option<CloseReason> {
        let stream = &mut self.streams[dir.index()];
        if stream.reached_fin() && !stream.ended {
            stream.ended = true;
            self.handler.on_end(dir, ts, sink);
        }
        let other = &self.streams[dir.other().index()];
        let this = &self.streams[dir.index()];
        let one_way = !other.seen && !other.owes_acknowledged_bytes();
        (this.ended && (other.ended || one_way)).then_some(CloseReason::Fin)
    }
}

/// `dir`'s stream to change, and the other one to read.
fn split(streams: &mut [Stream; 2], dir: Dir) -> (&mut Stream, &Stream) {
    let [a, b] = streams;
    match dir {
        Dir::A => (a, b),
        Dir::B => (b, a),
    }
}

/// Hands a piece of `dir`'s stream to the handler. The acknowledgment its segment carried becomes
/// an offset in `peer`, the other stream, now rather than when the segment arrived: a segment
/// buffered out of order may have come before the other stream had a start.
fn deliver<H: StreamHandler>(
    handler: &mut H,
    dir: Dir,
    piece: Piece<'_>,
    ts: u64,
    sink: &mut H::Sink,
    peer: &Stream,
) {
    match piece {
        Piece::Data { data, offset, ack } => {
            let acked = ack.and_then(|ack| peer.offset_of(ack));
            handler.on_data(dir, data, Delivery { ts, offset, acked }, sink)
        }
        Piece::Gap { offset, len } => handler.on_gap(dir, len, Delivery { ts, offset, acked: None }, sink),
    }
}
