//! Whole TCP conversations carrying HTTP/1.x exchanges, segment by segment, with consistent sequence and
//! acknowledgment numbers, as a mirror next to the server sees them.
//!
//! Timing model: timestamps are the times the mirror point (at the server's network interface) sees each
//! segment. Client segments are seen as they reach the server; the server acknowledges at once (every
//! second segment and the last of a burst); server segments are seen as they leave and the client's
//! acknowledgments come one round trip later. Senders start with a congestion window of 10 segments,
//! doubling each round trip up to 128, and wait a round trip between windows.

use std::net::SocketAddr;
use std::ops::Range;

use crate::frame::{TcpSpec, flags};
use crate::rng::Rng;

/// One HTTP exchange: the exact bytes the client sends and the server answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// The request as sent (head and body, encoded as it is on the wire).
    pub request: Vec<u8>,
    /// The response as sent (may be empty).
    pub response: Vec<u8>,
}

/// What to generate. Build with [`ConversationSpec::new`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct ConversationSpec {
    /// The client's address. With `keep_alive == false`, connection `k` uses this port plus `k`.
    pub client: SocketAddr,
    /// The server's address (same IP version as `client`).
    pub server: SocketAddr,
    /// The exchanges, in order.
    pub exchanges: Vec<Exchange>,
    /// Largest payload of one segment (default 1448: a 1500-byte MTU less IP, TCP and timestamps).
    pub mss: usize,
    /// Seeds the initial sequence numbers and timing jitter.
    pub seed: u64,
    /// Time of the first SYN, in microseconds after the Unix epoch.
    pub start_us: u64,
    /// Round-trip time between the client and the mirror point at the server (default 500 µs).
    pub rtt_us: u64,
    /// Mean server processing time before a response (exponential; default 2 ms).
    pub server_think_us: u64,
    /// Mean client pause between a response and its next request (exponential; default 20 ms).
    pub client_think_us: u64,
    /// Keep only client→server segments (a mirror session that copies one direction). Sequence and
    /// acknowledgment numbers are as if the server's segments were there.
    pub client_only: bool,
    /// Send every request of a connection before the first response; the requests share one byte
    /// stream, so segments straddle request boundaries.
    pub pipelined: bool,
    /// Send each request byte in its own segment, some hundreds of microseconds apart.
    pub byte_at_a_time: bool,
    /// All exchanges on one connection (true, the default) or one connection per exchange.
    pub keep_alive: bool,
    /// The server closes first (FIN after its last response, as after `Connection: close`).
    pub server_closes: bool,
    /// Probability that a connection's initial sequence numbers are placed just below 2^32, so that
    /// both directions wrap inside their data (default 0.25).
    pub wrap_fraction: f64,
    /// Fixed initial sequence numbers `(client, server)` for every connection, overriding the seed.
    pub isns: Option<(u32, u32)>,
    /// Idle time after the last exchange before the connection closes (default 0).
    pub hold_us: u64,
}

impl ConversationSpec {
    /// A keep-alive, non-pipelined, two-direction conversation with default timing.
    pub fn new(client: SocketAddr, server: SocketAddr, exchanges: Vec<Exchange>) -> Self {
        ConversationSpec {
            client,
            server,
            exchanges,
            mss: 1448,
            seed: 0,
            start_us: 1_700_000_000_000_000,
            rtt_us: 500,
            server_think_us: 2_000,
            client_think_us: 20_000,
            client_only: false,
            pipelined: false,
            byte_at_a_time: false,
            keep_alive: true,
            server_closes: false,
            wrap_fraction: 0.25,
            isns: None,
            hold_us: 0,
        }
    }
}

/// One TCP connection of a [`Conversation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Client address of this connection.
    pub client: SocketAddr,
    /// Server address.
    pub server: SocketAddr,
    /// The client's initial sequence number (its SYN's).
    pub client_isn: u32,
    /// The server's initial sequence number.
    pub server_isn: u32,
    /// Which of the spec's exchanges this connection carries.
    pub exchanges: Range<usize>,
    /// Where each of those requests sits in the client's byte stream (offset 0 is the first byte after
    /// the SYN, so sequence number `client_isn + 1 + offset`, wrapping).
    pub request_ranges: Vec<Range<u64>>,
    /// Where each response sits in the server's byte stream.
    pub response_ranges: Vec<Range<u64>>,
}

/// One TCP segment of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// When the mirror sees it, in microseconds after the Unix epoch.
    pub ts_us: u64,
    /// Index into [`Conversation::connections`].
    pub conn: usize,
    /// Sent by the client.
    pub from_client: bool,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (zero on the SYN).
    pub ack: u32,
    /// Flag bits from [`flags`].
    pub flags: u8,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Offset of `payload[0]` in the sender's byte stream (see [`ConnectionInfo::request_ranges`]).
    pub stream_offset: u64,
}

impl Segment {
    /// The segment as a [`TcpSpec`] for [`crate::frame::build`].
    pub fn tcp_spec<'a>(&'a self, vlans: &'a [u16], ip_extras: bool) -> TcpSpec<'a> {
        TcpSpec {
            src: self.src,
            dst: self.dst,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            payload: &self.payload,
            vlans,
            ip_extras,
        }
    }
}

/// The generated conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// The TCP connections, in the order they were opened.
    pub connections: Vec<ConnectionInfo>,
    /// Every segment, ordered by timestamp (ties in causal order).
    pub segments: Vec<Segment>,
    /// Time of the last segment (or `start_us` if there is none).
    pub end_us: u64,
}

impl Conversation {
    /// The bytes one side of connection `conn` sent, rebuilt from the segments (each payload put at
    /// its stream offset). Empty for the server side of a client-only conversation.
    pub fn stream(&self, conn: usize, from_client: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for s in self.segments.iter().filter(|s| s.conn == conn && s.from_client == from_client) {
            let end = s.stream_offset as usize + s.payload.len();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[s.stream_offset as usize..end].copy_from_slice(&s.payload);
        }
        out
    }
}

/// Generates the conversation `spec` describes.
pub fn generate(spec: &ConversationSpec) -> Conversation {
    let mut rng = Rng::derive(spec.seed, 0xc0);
    let mut conv = Conversation { connections: Vec::new(), segments: Vec::new(), end_us: spec.start_us };
    let mut t = spec.start_us;
    let groups: Vec<Range<usize>> = if spec.keep_alive {
        std::iter::once(0..spec.exchanges.len()).collect()
    } else {
        (0..spec.exchanges.len()).map(|i| i..i + 1).collect()
    };
    for (k, group) in groups.into_iter().enumerate() {
        let mut client = spec.client;
        let port = u32::from(spec.client.port()) + k as u32;
        client.set_port(if port > 65535 { (port - 65535 + 1023) as u16 } else { port as u16 });
        let exchanges = &spec.exchanges[group.clone()];
        let (client_isn, server_isn) = spec.isns.unwrap_or_else(|| {
            let wrap = rng.chance(spec.wrap_fraction);
            let c: usize = exchanges.iter().map(|e| e.request.len()).sum();
            let s: usize = exchanges.iter().map(|e| e.response.len()).sum();
            let pick = |rng: &mut Rng, total: usize| {
                if wrap && total > 0 {
                    0u32.wrapping_sub(rng.range(1, total.min(1 << 30) as u64) as u32)
                } else {
                    rng.next_u32()
                }
            };
            (pick(&mut rng, c), pick(&mut rng, s))
        });
        let mut c = Conn {
            segs: &mut conv.segments,
            conn: k,
            client,
            server: spec.server,
            c_next: client_isn,
            s_next: server_isn,
            c_rcv: 0,
            s_rcv: 0,
            c_off: 0,
            s_off: 0,
            client_only: spec.client_only,
        };
        let info = c.run(spec, &mut rng, exchanges, &mut t, client_isn, server_isn, group);
        conv.connections.push(info);
        // A new connection (keep-alive off) starts after a client pause.
        t += rng.exp(spec.client_think_us as f64) as u64 / 4 + 50;
    }
    conv.segments.sort_by_key(|s| s.ts_us);
    conv.end_us = conv.segments.last().map_or(spec.start_us, |s| s.ts_us);
    conv
}

struct Conn<'a> {
    segs: &'a mut Vec<Segment>,
    conn: usize,
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence number each side sends.
    c_next: u32,
    s_next: u32,
    /// What each side acknowledges.
    c_rcv: u32,
    s_rcv: u32,
    /// Stream offsets of the next payload byte.
    c_off: u64,
    s_off: u64,
    client_only: bool,
}

impl Conn<'_> {
    fn push(&mut self, from_client: bool, flag_bits: u8, payload: &[u8], ts_us: u64) {
        let (src, dst, seq, ack, off) = if from_client {
            (self.client, self.server, self.c_next, self.c_rcv, self.c_off)
        } else {
            (self.server, self.client, self.s_next, self.s_rcv, self.s_off)
        };
        let consumed = payload.len() as u32 + u32::from(flag_bits & (flags::SYN | flags::FIN) != 0);
        if from_client {
            self.c_next = self.c_next.wrapping_add(consumed);
            self.c_off += payload.len() as u64;
        } else {
            self.s_next = self.s_next.wrapping_add(consumed);
            self.s_off += payload.len() as u64;
        }
        if from_client || !self.client_only {
            self.segs.push(Segment {
                ts_us,
                conn: self.conn,
                from_client,
                src,
                dst,
                seq,
                ack: if flag_bits & flags::ACK != 0 { ack } else { 0 },
                flags: flag_bits,
                payload: payload.to_vec(),
                stream_offset: off,
            });
        }
    }

    /// Sends `data` one way in segments of at most `mss` bytes, starting at `t`. Returns the mirror
    /// times of the sender's last segment and of the moment the receiver is known to have it all.
    fn transfer(
        &mut self,
        from_client: bool,
        data: &[u8],
        mss: usize,
        t: u64,
        rtt: u64,
        gap: u64,
    ) -> (u64, u64) {
        let mut t = t;
        let mut burst_start = t;
        let mut cwnd = 10usize;
        let mut in_burst = 0usize;
        let (mut last_sent, mut done) = (t, t);
        let count = data.len().div_ceil(mss);
        for (i, piece) in data.chunks(mss).enumerate() {
            let last = i + 1 == count;
            self.push(from_client, flags::ACK | if last { flags::PSH } else { 0 }, piece, t);
            last_sent = t;
            if i % 2 == 1 || last {
                if from_client {
                    self.s_rcv = self.c_next;
                    self.push(false, flags::ACK, &[], t + 1);
                    done = t;
                } else {
                    self.c_rcv = self.s_next;
                    self.push(true, flags::ACK, &[], t + rtt);
                    done = t + rtt;
                }
            }
            in_burst += 1;
            t += gap;
            if in_burst == cwnd && !last {
                t = t.max(burst_start + rtt);
                burst_start = t;
                in_burst = 0;
                cwnd = (cwnd * 2).min(128);
            }
        }
        (last_sent, done)
    }

    /// Sends request bytes from the client starting at `t`; returns when the server has them all.
    fn send_requests(
        &mut self,
        spec: &ConversationSpec,
        rng: &mut Rng,
        data: &[u8],
        t: u64,
        gap: u64,
    ) -> u64 {
        if !spec.byte_at_a_time {
            return self.transfer(true, data, spec.mss.max(1), t, spec.rtt_us.max(4), gap).1;
        }
        // Typing: each byte its own pushed segment, irregularly spaced.
        let mut t = t;
        let mut seen = t;
        for (i, b) in data.iter().enumerate() {
            self.push(true, flags::ACK | flags::PSH, std::slice::from_ref(b), t);
            seen = t;
            if i % 2 == 1 || i + 1 == data.len() {
                self.s_rcv = self.c_next;
                self.push(false, flags::ACK, &[], t + 1);
            }
            t += rng.range(100, 1_500);
        }
        seen
    }

    /// Sends response bytes from the server starting at `t`; returns (server's last send, client has
    /// all of it).
    fn send_responses(&mut self, spec: &ConversationSpec, data: &[u8], t: u64, gap: u64) -> (u64, u64) {
        let rtt = spec.rtt_us.max(4);
        if data.is_empty() { (t, t + rtt) } else { self.transfer(false, data, spec.mss.max(1), t, rtt, gap) }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        spec: &ConversationSpec,
        rng: &mut Rng,
        exchanges: &[Exchange],
        t: &mut u64,
        client_isn: u32,
        server_isn: u32,
        group: Range<usize>,
    ) -> ConnectionInfo {
        let rtt = spec.rtt_us.max(4);
        let gap = rng.range(2, 14);
        let mut info = ConnectionInfo {
            client: self.client,
            server: self.server,
            client_isn,
            server_isn,
            exchanges: group,
            request_ranges: Vec::new(),
            response_ranges: Vec::new(),
        };
        // Handshake.
        self.push(true, flags::SYN, &[], *t);
        self.s_rcv = self.c_next;
        self.push(false, flags::SYN | flags::ACK, &[], *t + 1);
        self.c_rcv = self.s_next;
        *t += 1 + rtt;
        self.push(true, flags::ACK, &[], *t);
        let mut client_ready = *t + rng.range(0, gap);
        let mut server_ready = client_ready;

        if spec.pipelined && exchanges.len() > 1 {
            let (mut c_off, mut s_off) = (self.c_off, self.s_off);
            for e in exchanges {
                info.request_ranges.push(c_off..c_off + e.request.len() as u64);
                info.response_ranges.push(s_off..s_off + e.response.len() as u64);
                c_off += e.request.len() as u64;
                s_off += e.response.len() as u64;
            }
            let requests: Vec<u8> = exchanges.iter().flat_map(|e| e.request.iter().copied()).collect();
            let got = self.send_requests(spec, rng, &requests, client_ready, gap);
            let start = got + rng.exp(spec.server_think_us as f64) as u64 + 1;
            self.s_rcv = self.c_next;
            let responses: Vec<u8> = exchanges.iter().flat_map(|e| e.response.iter().copied()).collect();
            (server_ready, client_ready) = self.send_responses(spec, &responses, start, gap);
        } else {
            for (i, e) in exchanges.iter().enumerate() {
                if i > 0 {
                    client_ready += rng.exp(spec.client_think_us as f64) as u64 + 1;
                }
                self.c_rcv = self.s_next;
                info.request_ranges.push(self.c_off..self.c_off + e.request.len() as u64);
                let got = self.send_requests(spec, rng, &e.request, client_ready, gap);
                let start = got + rng.exp(spec.server_think_us as f64) as u64 + 1;
                self.s_rcv = self.c_next;
                info.response_ranges.push(self.s_off..self.s_off + e.response.len() as u64);
                (server_ready, client_ready) = self.send_responses(spec, &e.response, start, gap);
            }
        }

        // Close.
        self.c_rcv = self.s_next;
        self.s_rcv = self.c_next;
        if spec.server_closes {
            let fin_at = server_ready + spec.hold_us + rng.range(5, 200);
            self.push(false, flags::FIN | flags::ACK, &[], fin_at);
            self.c_rcv = self.s_next;
            let client_fin = fin_at.max(client_ready) + rtt;
            self.push(true, flags::FIN | flags::ACK, &[], client_fin);
            self.s_rcv = self.c_next;
            self.push(false, flags::ACK, &[], client_fin + 1);
            *t = client_fin + 1;
        } else {
            let fin_at = client_ready + spec.hold_us + rng.exp(spec.client_think_us as f64 / 4.0) as u64 + 1;
            self.push(true, flags::FIN | flags::ACK, &[], fin_at);
            self.s_rcv = self.c_next;
            self.push(false, flags::FIN | flags::ACK, &[], fin_at + rng.range(1, 100));
            self.c_rcv = self.s_next;
            *t = fin_at + 100 + rtt;
            self.push(true, flags::ACK, &[], *t);
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(exchanges: Vec<Exchange>) -> ConversationSpec {
        ConversationSpec::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap(), exchanges)
    }

    fn ex(req: usize, resp: usize) -> Exchange {
        Exchange {
            request: (0..req).map(|i| b'a' + (i % 26) as u8).collect(),
            response: (0..resp).map(|i| b'A' + (i % 26) as u8).collect(),
        }
    }

    /// Every segment's seq matches its stream offset; every ACK acknowledges bytes already sent.
    fn check_numbers(conv: &Conversation) {
        let mut fin_sent = std::collections::HashSet::new();
        let mut sent = std::collections::HashMap::new();
        for s in &conv.segments {
            let info = &conv.connections[s.conn];
            let isn = if s.from_client { info.client_isn } else { info.server_isn };
            let after_fin = u32::from(fin_sent.contains(&(s.conn, s.from_client)));
            if s.flags & flags::SYN == 0 {
                let want = isn.wrapping_add(1 + after_fin).wrapping_add(s.stream_offset as u32);
                assert_eq!(s.seq, want, "{s:?}");
            }
            if s.flags & flags::FIN != 0 {
                fin_sent.insert((s.conn, s.from_client));
            }
            let end = u64::from(s.flags & (flags::SYN | flags::FIN) != 0) + s.payload.len() as u64;
            let rel = s.seq.wrapping_sub(isn) as u64 + end;
            let top = sent.entry((s.conn, s.from_client)).or_insert(0);
            *top = (*top).max(rel);
            if s.flags & flags::ACK != 0 {
                let peer_isn = if s.from_client { info.server_isn } else { info.client_isn };
                let acked = u64::from(s.ack.wrapping_sub(peer_isn));
                let peer_sent = sent.get(&(s.conn, !s.from_client)).copied();
                // Client-only conversations hide the server's segments; it always sent what is acked.
                assert!(peer_sent.is_none_or(|p| acked <= p), "{s:?} acks unsent data");
            }
        }
        for w in conv.segments.windows(2) {
            assert!(w[0].ts_us <= w[1].ts_us);
        }
    }

    #[test]
    fn simple_exchange_has_handshake_data_and_close() {
        let conv = generate(&spec(vec![ex(100, 3000)]));
        check_numbers(&conv);
        let f: Vec<u8> = conv.segments.iter().map(|s| s.flags).collect();
        assert_eq!(&f[..3], &[flags::SYN, flags::SYN | flags::ACK, flags::ACK]);
        assert_eq!(conv.stream(0, true), ex(100, 0).request);
        assert_eq!(conv.stream(0, false), ex(0, 3000).response);
        let fins = conv.segments.iter().filter(|s| s.flags & flags::FIN != 0).count();
        assert_eq!(fins, 2);
        let last = conv.segments.last().unwrap();
        assert_eq!(last.flags, flags::ACK);
        let info = &conv.connections[0];
        // The final ACK acknowledges the server's FIN.
        assert_eq!(last.ack, info.server_isn.wrapping_add(1 + 3000 + 1));
    }

    #[test]
    fn splits_at_mss_and_wraps() {
        let mut s = spec(vec![ex(10_000, 50_000), ex(5, 5)]);
        s.isns = Some((u32::MAX - 5000, u32::MAX - 10));
        let conv = generate(&s);
        check_numbers(&conv);
        let data: Vec<&Segment> =
            conv.segments.iter().filter(|s| s.from_client && !s.payload.is_empty()).collect();
        assert_eq!(data.len(), 10_000usize.div_ceil(1448) + 1);
        assert!(data.iter().any(|s| s.seq < 100_000) && data.iter().any(|s| s.seq > u32::MAX - 10_000));
        assert_eq!(conv.connections[0].request_ranges, vec![0..10_000, 10_000..10_005]);
    }

    #[test]
    fn options() {
        let mut s = spec(vec![ex(300, 10), ex(400, 20), ex(50, 0)]);
        s.pipelined = true;
        s.client_only = true;
        let conv = generate(&s);
        check_numbers(&conv);
        assert!(conv.segments.iter().all(|s| s.from_client));
        assert_eq!(conv.stream(0, true).len(), 750);
        assert_eq!(conv.segments.iter().filter(|s| !s.payload.is_empty()).count(), 1);

        let mut s = spec(vec![ex(30, 10), ex(40, 20)]);
        s.byte_at_a_time = true;
        s.keep_alive = false;
        let conv = generate(&s);
        check_numbers(&conv);
        assert_eq!(conv.connections.len(), 2);
        assert_eq!(conv.connections[1].client.port(), 40001);
        let ones = conv.segments.iter().filter(|s| s.from_client && s.payload.len() == 1).count();
        assert_eq!(ones, 70);
        assert_eq!(conv.stream(1, true), ex(40, 0).request);
    }

    #[test]
    fn seeds_give_wrapping_isns_sometimes() {
        let wraps = (0..200)
            .filter(|&seed| {
                let mut s = spec(vec![ex(2000, 2000)]);
                s.seed = seed;
                let conv = generate(&s);
                check_numbers(&conv);
                conv.connections[0].client_isn > u32::MAX - 2000
            })
            .count();
        assert!((20..100).contains(&wraps), "{wraps}");
    }
}
