//! The conversation state machine: roles, request and response directions, pairing and emission.

use std::collections::VecDeque;
use std::num::NonZeroU32;

use memchr::memchr;

use crate::chunked::Chunked;
use crate::head::{self, BodyKind, HeadEvent, HeadReader, Prefix};
use crate::proxy::{self, Probe, ProxyHeader};
use crate::{Anomaly, HttpConfig, NotHttpKind, Output, Peer, Request, Response, Transaction};

/// What the response framing needs to know about a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ReqKind {
    head: bool,
    connect: bool,
}

/// A request in flight or waiting for its response.
#[derive(Debug)]
struct Entry {
    seq: u64,
    req: Request,
    kind: ReqKind,
    /// The request is complete (head and body).
    req_done: bool,
    /// A response head was paired with this request (its body may still be arriving).
    resp_assigned: bool,
    /// Its response can no longer be paired safely; emit without one.
    no_resp: bool,
    response: Option<Response>,
    head_mem: usize,
    resp_mem: usize,
    /// The client's stream offset at the end of the bytes that completed the head (see
    /// [`Shared::client_end`]).
    end: u32,
}

impl Entry {
    fn mem(&self) -> usize {
        self.head_mem + self.req.body.capacity() + self.resp_mem
    }
}

/// True unless `acked` (a client stream offset a server segment acknowledged) is known and falls
/// short of `end` (a request head's end, 0 when unknown), both modulo 2^32: a server cannot answer
/// bytes it has not received.
fn acknowledges(acked: Option<u64>, end: u32) -> bool {
    acked.is_none_or(|a| end == 0 || reached(a as u32, end))
}

/// True when stream offset `at` is at or past `mark`, both modulo 2^32 (as TCP compares sequence
/// numbers).
fn reached(at: u32, mark: u32) -> bool {
    at.wrapping_sub(mark) as i32 >= 0
}

/// Body bytes a request may reserve beyond those it received, when its Content-Length says more
/// are coming (see [`Shared::append_body`]).
const BODY_RESERVE_AHEAD: usize = 16 << 10;

/// What the pairing knows of a request lost in a gap of the client stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LostRequest {
    /// None whose answer is still to come, as far as can be told.
    None,
    /// A gap took a request (it began where a head was expected, in a connection read from its
    /// handshake, with no earlier request waiting for its answer), and no answer came since. A
    /// client that waits for each answer had the lost request's before it sent the next request,
    /// so that answer comes first; when the first answer acknowledges a later request, it is the
    /// lost request's and the client pipelines. Any first answer ends this state.
    Unanswered,
    /// The server's responses lost their framing: answers may have gone unseen, so no later loss
    /// can be traced.
    Untraceable,
}

/// State shared by both directions.
#[derive(Debug)]
struct Shared {
    cfg: HttpConfig,
    client: Option<Peer>,
    seen: [bool; 2],
    /// Per peer, whether it answered on other connections (see
    /// [`Conversation::expect_answers_from`]).
    answers_elsewhere: [bool; 2],
    /// The server direction ended: no response will come any more.
    server_closed: bool,
    /// The client's stream offset at the end of the bytes being fed, modulo 2^32 like TCP sequence
    /// numbers (0: unknown); 4 bytes, where 8 would push every flow past its allocation class.
    client_end: u32,
    /// Requests may have left without their answer still to come: lost in a gap of the client
    /// stream, or emitted before the server was seen. Until an answer shows it belongs to one of
    /// them, an answer to the first waiting request cannot be told from theirs (see
    /// [`Shared::pair`]).
    answers_owed: bool,
    /// What is known of a request lost in a gap of the client stream (see [`Shared::pair`]).
    lost_request: LostRequest,
    /// Two request heads ended in the same delivered bytes, or the client sent one without having
    /// received a server byte since the one before: the client pipelines, so an owed answer can
    /// follow a later request (see [`Shared::pair`]).
    pipelined: bool,
    /// The server offset (modulo 2^32) that the segment completing the last request head
    /// acknowledged, plus one, when known: 4 bytes, where 8 would push every flow past its
    /// allocation class. (Offset 2^32 - 1 reads as unknown, which costs at most one pipelining
    /// hint.)
    last_head_acked: Option<NonZeroU32>,
    /// The response stream lost its framing; the next response's acknowledgment tells which
    /// waiting requests the lost bytes may have answered (see [`Shared::pair`]).
    resync_pending: bool,
    queue: VecDeque<Entry>,
    /// Requests emitted without response because too many were waiting (oldest first); their
    /// responses, if they come, are parsed with the right framing and dropped. A `Vec`, 8 bytes
    /// smaller inline than a `VecDeque` (every flow has one): it holds a few 2-byte kinds, so
    /// taking from its front costs nothing.
    ghosts: Vec<ReqKind>,
    out: Vec<Output>,
    out_mem: usize,
    next_seq: u64,
    not_http_reported: bool,
    upgraded_reported: bool,
    stop_all: bool,
    /// Addresses from a PROXY protocol header, once one was read; boxed, since few connections
    /// carry one and inline it made every flow 64 bytes larger.
    proxy: Option<Box<ProxyHeader>>,
}

impl Shared {
    fn new(cfg: HttpConfig) -> Self {
        Shared {
            cfg,
            client: None,
            seen: [false; 2],
            answers_elsewhere: [false; 2],
            server_closed: false,
            client_end: 0,
            resync_pending: false,
            answers_owed: false,
            lost_request: LostRequest::None,
            pipelined: false,
            last_head_acked: None,
            queue: VecDeque::new(),
            ghosts: Vec::new(),
            out: Vec::new(),
            out_mem: 0,
            next_seq: 0,
            not_http_reported: false,
            upgraded_reported: false,
            stop_all: false,
            proxy: None,
        }
    }

    fn anomaly(&mut self, a: Anomaly) {
        self.out.push(Output::Anomaly(a));
    }

    fn not_http_unknown(&mut self) {
        if !self.not_http_reported {
            self.not_http_reported = true;
            self.anomaly(Anomaly::NotHttp(NotHttpKind::Unknown));
        }
    }

    fn upgraded(&mut self) {
        if !self.upgraded_reported {
            self.upgraded_reported = true;
            self.anomaly(Anomaly::Upgraded);
        }
    }

    fn stop(&mut self, a: Anomaly) {
        self.anomaly(a);
        self.stop_all = true;
    }

    /// Whether answers may come: the server was seen, or answered on other connections.
    fn server_may_answer(&self) -> bool {
        self.client.is_some_and(|c| self.seen[c.other().idx()] || self.answers_elsewhere[c.other().idx()])
    }

    /// An answer to the lost request may have been seen: no later answer is taken for it.
    fn forget_lost_request(&mut self) {
        if self.lost_request == LostRequest::Unanswered {
            self.lost_request = LostRequest::None;
        }
    }

    fn entry(&mut self, seq: u64) -> Option<&mut Entry> {
        self.queue.iter_mut().rev().find(|e| e.seq == seq)
    }

    fn push_request(&mut self, req: Request, kind: ReqKind, head_mem: usize) -> u64 {
        // A client that sends its next request while no packet of its server came yet got its
        // answer (or pipelines): the server's direction is not coming soon, whatever the server
        // does on other connections (a one-direction mirror of this one).
        let server_unseen = self.client.is_some_and(|c| !self.seen[c.other().idx()]);
        if server_unseen && self.queue.iter().any(|e| e.req_done) {
            self.answers_elsewhere = [false; 2];
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Entry {
            seq,
            req,
            kind,
            req_done: false,
            resp_assigned: false,
            no_resp: false,
            response: None,
            head_mem,
            resp_mem: 0,
            end: self.client_end,
        });
        seq
    }

    /// Adds decoded body bytes to the current request; `more` is how many declared bytes are still to
    /// come after `data` (0 when unknown). A Content-Length body grows to its declared size in a few
    /// exact steps rather than a series of doublings, but never reserves more ahead of the bytes that
    /// arrived than it holds already (or [`BODY_RESERVE_AHEAD`]): a declared length alone cannot make
    /// vxtap allocate, nor charge the memcap, more than about twice what was sent. The allocation is
    /// charged in full by [`Entry::mem`].
    fn append_body(&mut self, cur: Option<u64>, data: &[u8], more: u64) {
        let limit = self.cfg.body_limit;
        if let Some(e) = cur.and_then(|s| self.entry(s)) {
            let r = &mut e.req;
            r.body_len += data.len() as u64;
            let room = limit.saturating_sub(r.body.len());
            if data.len() > room {
                r.body_truncated = true;
            }
            let keep = data.len().min(room);
            if more > 0 && keep > r.body.capacity() - r.body.len() {
                // Both are at least `keep` (it is within `room`), so the data always fits.
                let declared = (keep as u64).saturating_add(more).min(room as u64) as usize;
                let ahead = (r.body.len() + keep).max(BODY_RESERVE_AHEAD);
                r.body.reserve_exact(declared.min(ahead));
            }
            r.body.extend_from_slice(&data[..keep]);
        }
    }

    fn body_gap(&mut self, cur: Option<u64>, len: u64) {
        if let Some(e) = cur.and_then(|s| self.entry(s)) {
            e.req.body_len += len;
            e.req.gap = true;
        }
    }

    /// The request the next final response answers; `acked` is the client's stream offset the
    /// response's segment acknowledged, when known. A server cannot answer a request it has not
    /// received: a response that does not acknowledge the first waiting request's head answers an
    /// earlier one (emitted already, or lost), and is dropped rather than paired wrongly.
    fn pair(&mut self, acked: Option<u64>) -> (Target, ReqKind) {
        if std::mem::take(&mut self.resync_pending) {
            self.settle_resync(acked);
        }
        if !self.ghosts.is_empty() {
            return (Target::Ghost, self.ghosts.remove(0));
        }
        let answers_owed = self.answers_owed && acked.is_some();
        // Only the first answer after a loss can be known for the lost request's.
        let lost_unanswered = self.lost_request == LostRequest::Unanswered;
        self.forget_lost_request();
        match self.queue.iter_mut().find(|e| !e.resp_assigned && !e.no_resp) {
            Some(e) if acknowledges(acked, e.end) => {
                if lost_unanswered && acked.is_some() && e.end != 0 {
                    // The answer of the request lost before this one: the client sent this one
                    // before it had that answer.
                    self.pipelined = true;
                } else if !answers_owed || !self.pipelined {
                    // A client that waits for each answer had the owed ones before it sent this
                    // request: this answer is its own.
                    self.answers_owed = false;
                    e.resp_assigned = true;
                    return (Target::Seq(e.seq), e.kind);
                } else {
                    // Requests left before this one and a pipelining client may have sent this one
                    // before their answers: this answer may be theirs, so this request goes without.
                    e.no_resp = true;
                }
            }
            // It answers a request before the first waiting one: those are being answered one by
            // one (requests sent each after the previous answer).
            _ => self.answers_owed = false,
        }
        self.anomaly(Anomaly::UnexpectedResponse);
        (Target::Nobody, ReqKind::default())
    }

    /// The response stream lost its framing: no waiting request can be paired with certainty.
    /// Where stream positions are known, which ones the lost bytes may have answered is decided at
    /// the next response head, whose acknowledgment bounds them; otherwise all of them now.
    fn server_resync(&mut self) {
        self.lost_request = LostRequest::Untraceable;
        if self.client_end == 0 {
            self.settle_resync(None);
        } else {
            self.resync_pending = true;
            self.ghosts.clear();
        }
    }

    /// Waiting requests the lost response bytes may have answered are emitted without response:
    /// those whose head the first response after the loss acknowledges, even if their body is
    /// still coming (the server had it, the mirror may not have yet), but the last of them when
    /// the client waits for each answer and no request went unparsed (that response is then its
    /// answer); without that acknowledgment, every complete one. Requests the server had not
    /// received then are still paired.
    fn settle_resync(&mut self, acked: Option<u64>) {
        let answerable = |e: &Entry| {
            e.response.is_none()
                && if acked.is_some() { !e.resp_assigned && acknowledges(acked, e.end) } else { e.req_done }
        };
        // Not when requests may have left unparsed: the answer may be theirs.
        let keep = match acked {
            Some(_) if !self.pipelined && !self.answers_owed => self.queue.iter().rposition(answerable),
            _ => None,
        };
        for (i, e) in self.queue.iter_mut().enumerate() {
            if answerable(e) && Some(i) != keep {
                e.no_resp = true;
            }
        }
        self.ghosts.clear();
        self.try_emit();
    }

    /// Emits, in request order, every transaction that is ready.
    fn try_emit(&mut self) {
        let no_server = self.server_closed || !self.server_may_answer();
        while let Some(front) = self.queue.front() {
            let ready = front.req_done && (front.response.is_some() || front.no_resp || no_server);
            let done = self.queue.len() - usize::from(self.queue.back().is_some_and(|e| !e.req_done));
            let forced = !ready && front.req_done && done > self.cfg.max_pending;
            if !ready && !forced {
                break;
            }
            if let Some(e) = self.queue.pop_front() {
                if e.response.is_none() && !e.no_resp && !forced && !self.server_closed {
                    // Out before the server was seen: its answer may still come.
                    self.answers_owed = true;
                }
                if forced && !e.resp_assigned {
                    // its response may still come: parse it with the right framing and drop it
                    if self.ghosts.len() >= self.cfg.max_pending.saturating_mul(2).max(16) {
                        self.ghosts.remove(0);
                    }
                    self.ghosts.push(e.kind);
                }
                self.emit(e);
            }
        }
        if self.queue.is_empty() {
            // Between requests an idle keep-alive connection holds no queue: at a million open
            // connections the few entries' worth of spare room would be gigabytes.
            self.queue = VecDeque::new();
        }
    }

    fn emit(&mut self, e: Entry) {
        self.out_mem += e.mem();
        let client = self.client.unwrap_or(Peer::A);
        let tx = Transaction {
            client,
            request: e.req,
            response: e.response,
            proxy: self.proxy.as_deref().copied(),
        };
        self.out.push(Output::Transaction(tx));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Nothing parsed yet in this direction.
    Fresh,
    /// At a message boundary.
    Normal,
    /// Looking for a strict start line at the start of a line.
    Resync,
    /// After a CONNECT or Upgrade request: a request line continues HTTP, anything else is a tunnel.
    AfterUpgrade,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pending,
    Accept,
    Tls,
    Http2,
    Server,
    Garbage,
}

#[derive(Debug)]
enum RState {
    Head(Mode),
    /// Discarding up to the next LF, then `Head(Resync)`.
    Skip,
    Length(u64),
    Chunked(Chunked),
    Stopped,
}

enum Fed {
    Ok,
    /// A probing direction turned out to carry responses; bytes of the chunk from here on are not used.
    BecameServer(usize),
}

/// The client → server direction (or, while roles are unknown, a direction being probed).
#[derive(Debug)]
struct ReqDir {
    peer: Peer,
    /// Roles unknown: a valid request line makes this the client, `HTTP/` the server.
    probing: bool,
    /// No handshake was seen: the stream may start anywhere, even inside a body.
    midstream: bool,
    head: HeadReader,
    state: RState,
    cur: Option<u64>,
    upgrade_next: bool,
    /// [`Shared::client_end`] when the last request head ended (0: none or unknown).
    last_head_end: u32,
}

impl ReqDir {
    fn new(peer: Peer, probing: bool) -> Self {
        ReqDir {
            peer,
            probing,
            midstream: probing,
            head: HeadReader::default(),
            state: RState::Head(Mode::Fresh),
            cur: None,
            upgrade_next: false,
            last_head_end: 0,
        }
    }

    fn feed(&mut self, data: &[u8], ts: u64, acked: Option<u64>, sh: &mut Shared) -> Fed {
        if matches!(self.state, RState::Skip) {
            // A new segment is a likelier place for the next request than the middle of a line.
            self.state = RState::Head(Mode::Resync);
        }
        let mut i = 0;
        while i < data.len() {
            if sh.stop_all {
                self.state = RState::Stopped;
            }
            let rest = &data[i..];
            match &mut self.state {
                RState::Stopped => break,
                RState::Skip => match memchr(b'\n', rest) {
                    Some(off) => {
                        i += off + 1;
                        self.state = RState::Head(Mode::Resync);
                    }
                    None => break,
                },
                RState::Length(rem) => {
                    let n = (*rem).min(rest.len() as u64);
                    *rem -= n;
                    let done = *rem == 0;
                    let n = n as usize;
                    sh.append_body(self.cur, &rest[..n], *rem);
                    i += n;
                    if done {
                        self.complete(sh, ts, false);
                    }
                }
                RState::Chunked(dec) => {
                    let cur = self.cur;
                    let max = sh.cfg.max_head_bytes;
                    match dec.feed(rest, max, &mut |c: &[u8]| sh.append_body(cur, c, 0)) {
                        Ok((n, done)) => {
                            i += n;
                            if done {
                                self.complete(sh, ts, false);
                            }
                        }
                        Err(n) => {
                            i += n;
                            sh.anomaly(Anomaly::MalformedRequest);
                            self.complete(sh, ts, true);
                            self.state = RState::Skip;
                        }
                    }
                }
                RState::Head(mode) => {
                    let mode = *mode;
                    let (n, ev) = self.head.feed(rest, ts, sh.cfg.max_head_bytes);
                    i += n;
                    if self.on_head_event(mode, ev, ts, acked, sh) {
                        return Fed::BecameServer(i);
                    }
                }
            }
        }
        Fed::Ok
    }

    /// Returns true when this (probing) direction turned out to be the server.
    fn on_head_event(
        &mut self,
        mode: Mode,
        ev: HeadEvent,
        ts: u64,
        acked: Option<u64>,
        sh: &mut Shared,
    ) -> bool {
        match ev {
            HeadEvent::NeedMore if self.head.first_line_end != 0 || self.head.is_empty() => {}
            HeadEvent::NeedMore | HeadEvent::FirstLine => {
                let complete = ev == HeadEvent::FirstLine;
                match self.verdict(mode, complete) {
                    Verdict::Pending => {}
                    Verdict::Accept => {
                        if self.may_be_glued(mode) {
                            let skip = head::resync_start(self.head.first_line()).unwrap_or(0);
                            self.head.drop_front(skip);
                        }
                        if self.probing {
                            self.probing = false;
                            sh.client = Some(self.peer);
                        }
                        self.state = RState::Head(Mode::Normal);
                    }
                    Verdict::Tls => {
                        sh.stop(Anomaly::NotHttp(NotHttpKind::Tls));
                        self.state = RState::Stopped;
                    }
                    Verdict::Http2 => {
                        sh.stop(Anomaly::NotHttp(NotHttpKind::Http2));
                        self.state = RState::Stopped;
                    }
                    Verdict::Server => return true,
                    Verdict::Garbage => {
                        self.head.clear();
                        match mode {
                            Mode::Fresh => sh.not_http_unknown(),
                            Mode::Normal => sh.anomaly(Anomaly::MalformedRequest),
                            Mode::Resync => {}
                            Mode::AfterUpgrade => {
                                // the client speaks something else after CONNECT / Upgrade: a tunnel
                                sh.upgraded();
                                self.state = RState::Stopped;
                                return false;
                            }
                        }
                        self.state = if complete { RState::Head(Mode::Resync) } else { RState::Skip };
                    }
                }
            }
            HeadEvent::Done => self.head_done(ts, acked, sh),
            HeadEvent::TooLarge => {
                if mode != Mode::Resync {
                    sh.anomaly(Anomaly::HeadTooLarge);
                }
                self.head.clear();
                self.state = RState::Skip;
            }
        }
        false
    }

    fn verdict(&mut self, mode: Mode, complete: bool) -> Verdict {
        if mode == Mode::Fresh {
            match self.head.buf.as_slice() {
                [0x16] => return Verdict::Pending,
                [0x16, 0x03, ..] => return Verdict::Tls,
                b if self.probing && b.starts_with(b"HTTP/") => return Verdict::Server,
                _ => {}
            }
        }
        // While resynchronising, and at the start of a connection picked up midstream, a request line
        // may end a line that starts with body bytes (`…"}POST /x HTTP/1.1`): only a whole line can be
        // judged.
        let glued = self.may_be_glued(mode);
        if !glued && self.head.method_check() == Prefix::Bad {
            return Verdict::Garbage;
        }
        if !complete {
            return Verdict::Pending;
        }
        let line = self.head.first_line();
        if matches!(mode, Mode::Fresh | Mode::Normal) && head::is_h2_preface(line) {
            return Verdict::Http2;
        }
        let ok = if glued {
            // Midstream, a line that is a request as it stands (`m-search / HTTP/1.1`) is one too.
            head::resync_start(line).is_some()
                || (mode == Mode::Fresh && head::parse_request_line(line).is_some())
        } else {
            head::parse_request_line(line).is_some()
        };
        if ok { Verdict::Accept } else { Verdict::Garbage }
    }

    /// Whether the line being judged may start with the tail of a body: after a gap, and at the start
    /// of a connection picked up midstream (no handshake seen), where the first bytes may be the end of
    /// a body (`…eyJhbGciGET /x HTTP/1.1`). There a known method at the end of the first word marks
    /// where the request starts, and the bytes before it are dropped.
    fn may_be_glued(&self, mode: Mode) -> bool {
        mode == Mode::Resync || (mode == Mode::Fresh && self.midstream)
    }

    fn malformed(&mut self, sh: &mut Shared) {
        sh.anomaly(Anomaly::MalformedRequest);
        self.head.clear();
        self.state = RState::Head(Mode::Resync);
    }

    fn head_done(&mut self, ts: u64, acked: Option<u64>, sh: &mut Shared) {
        let Some(line) = head::parse_request_line(self.head.first_line()) else {
            return self.malformed(sh);
        };
        let Some(headers) = head::parse_headers(self.head.header_section()) else {
            return self.malformed(sh);
        };
        let Ok(framing) = head::body_framing(&headers, true) else {
            return self.malformed(sh);
        };
        let kind = ReqKind { head: line.method == b"HEAD", connect: line.method == b"CONNECT" };
        self.upgrade_next = kind.connect || head::wants_upgrade(&headers);
        let req = Request {
            method: line.method.to_vec(),
            target: line.target.to_vec(),
            protocol: line.protocol.to_vec(),
            headers,
            body: Vec::new(),
            body_len: 0,
            body_truncated: false,
            gap: false,
            start_ts: self.head.start_ts,
            end_ts: ts,
        };
        let head_mem = self.head.buf.len();
        self.head.clear();
        // Two heads ended in the same delivered bytes, or the client sent this one without having
        // received a server byte since the last one: it did not wait for the answer.
        let acked = acked.and_then(|a| NonZeroU32::new((a as u32).wrapping_add(1)));
        if (sh.client_end != 0 && self.last_head_end == sh.client_end)
            || (acked.is_some() && sh.last_head_acked == acked)
        {
            sh.pipelined = true;
        }
        self.last_head_end = sh.client_end;
        sh.last_head_acked = acked;
        self.cur = Some(sh.push_request(req, kind, head_mem));
        match framing {
            BodyKind::Length(n) => self.state = RState::Length(n),
            BodyKind::Chunked => self.state = RState::Chunked(Chunked::new()),
            BodyKind::None | BodyKind::UntilClose => self.complete(sh, ts, false),
        }
    }

    /// The current request is complete (with `gap` when bytes are missing).
    fn complete(&mut self, sh: &mut Shared, ts: u64, gap: bool) {
        if let Some(e) = self.cur.take().and_then(|s| sh.entry(s)) {
            e.req_done = true;
            e.req.end_ts = ts;
            e.req.gap |= gap;
        }
        let next = if std::mem::take(&mut self.upgrade_next) { Mode::AfterUpgrade } else { Mode::Normal };
        self.state = RState::Head(next);
        sh.try_emit();
    }

    fn gap(&mut self, len: u64, ts: u64, sh: &mut Shared) {
        match &mut self.state {
            RState::Stopped => {}
            RState::Skip => self.state = RState::Head(Mode::Resync),
            RState::Head(mode) => {
                if *mode != Mode::Resync && !self.probing {
                    sh.anomaly(Anomaly::RequestHeadLost);
                }
                // Whole requests may have been in the gap. (Not said of gaps inside a body: the
                // mirror's truncation of long frames leaves them in most requests of a connection,
                // and each would cost every later request its status.)
                sh.answers_owed = true;
                // Where a head was expected, one surely was. Only looked for when no earlier
                // request waits for its answer: the next answer is then the lost request's or a
                // later one's, and only a pipelining client's can acknowledge a later request.
                let at_head = *mode == Mode::Normal || (*mode == Mode::Fresh && !self.midstream);
                let none_waiting = sh.queue.iter().all(|e| e.resp_assigned || e.no_resp);
                if at_head && none_waiting && !self.probing && sh.lost_request != LostRequest::Untraceable {
                    sh.lost_request = LostRequest::Unanswered;
                }
                self.head.clear();
                self.state = RState::Head(Mode::Resync);
            }
            RState::Length(rem) => {
                let skip = (*rem).min(len);
                *rem -= skip;
                let done = *rem == 0;
                sh.body_gap(self.cur, skip);
                sh.anomaly(Anomaly::BodyGap);
                if done {
                    self.complete(sh, ts, true);
                    if len > skip {
                        self.gap(len - skip, ts, sh);
                    }
                }
            }
            RState::Chunked(_) => {
                sh.anomaly(Anomaly::BodyGap);
                self.complete(sh, ts, true);
                self.state = RState::Head(Mode::Resync);
            }
        }
    }

    fn end(&mut self, ts: u64, sh: &mut Shared) {
        match &self.state {
            RState::Head(mode) => {
                if *mode != Mode::Resync && !self.probing && !self.head.is_empty() {
                    sh.anomaly(Anomaly::RequestIncomplete);
                }
            }
            RState::Length(_) | RState::Chunked(_) => self.complete(sh, ts, true),
            RState::Skip | RState::Stopped => {}
        }
        self.head.clear();
        self.state = RState::Stopped;
    }

    /// Turns a probing direction into a response direction; returns the bytes it had buffered.
    fn into_resp(mut self) -> (RespDir, Vec<u8>, u64) {
        let state = match self.state {
            RState::Head(Mode::Fresh) => SState::Head(Mode::Fresh),
            RState::Skip => SState::Skip,
            RState::Stopped => SState::Stopped,
            _ => SState::Head(Mode::Resync),
        };
        let ts = self.head.start_ts;
        (RespDir::with_state(state), self.head.take(), ts)
    }
}

/// Which request a response being parsed belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// No request was waiting.
    Nobody,
    /// A request already emitted without response.
    Ghost,
    Seq(u64),
}

#[derive(Debug)]
enum SState {
    Head(Mode),
    Skip,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Stopped,
}

/// The server → client direction.
#[derive(Debug)]
struct RespDir {
    head: HeadReader,
    state: SState,
    /// The response being read and whom it answers; boxed, since inline it made both directions
    /// of every connection 88 bytes larger (a direction is the larger of the two kinds).
    cur: Option<(Target, Box<Response>)>,
    cur_mem: usize,
}

impl RespDir {
    fn with_state(state: SState) -> Self {
        RespDir { head: HeadReader::default(), state, cur: None, cur_mem: 0 }
    }

    fn count(&mut self, n: u64, gap: bool) {
        if let Some((_, r)) = &mut self.cur {
            r.body_len += n;
            r.gap |= gap;
        }
    }

    /// Reads response bytes; `acked` is the client's stream offset their segment acknowledged.
    fn feed(&mut self, data: &[u8], ts: u64, acked: Option<u64>, sh: &mut Shared) {
        if matches!(self.state, SState::Skip) {
            // A new segment is a likelier place for the next response than the middle of a line:
            // after lost framing, a status line that follows a body with no line end between
            // (JSON bodies end without one) is not skipped with the body's last line.
            self.state = SState::Head(Mode::Resync);
        }
        let mut i = 0;
        while i < data.len() {
            if sh.stop_all {
                self.state = SState::Stopped;
            }
            let rest = &data[i..];
            match &mut self.state {
                SState::Stopped => break,
                SState::Skip => match memchr(b'\n', rest) {
                    Some(off) => {
                        i += off + 1;
                        self.state = SState::Head(Mode::Resync);
                    }
                    None => break,
                },
                SState::Length(rem) => {
                    let n = (*rem).min(rest.len() as u64);
                    *rem -= n;
                    let done = *rem == 0;
                    self.count(n, false);
                    i += n as usize;
                    if done {
                        self.finish_response(sh, ts, false);
                    }
                }
                SState::Chunked(dec) => {
                    let cur = &mut self.cur;
                    let res = dec.feed(rest, sh.cfg.max_head_bytes, &mut |c: &[u8]| {
                        if let Some((_, r)) = cur.as_mut() {
                            r.body_len += c.len() as u64;
                        }
                    });
                    match res {
                        Ok((n, done)) => {
                            i += n;
                            if done {
                                self.finish_response(sh, ts, false);
                            }
                        }
                        Err(n) => {
                            i += n;
                            sh.anomaly(Anomaly::MalformedResponse);
                            self.finish_response(sh, ts, true);
                            sh.server_resync();
                            self.state = SState::Skip;
                        }
                    }
                }
                SState::UntilClose => {
                    self.count(rest.len() as u64, false);
                    i = data.len();
                }
                SState::Head(mode) => {
                    let mode = *mode;
                    let (n, ev) = self.head.feed(rest, ts, sh.cfg.max_head_bytes);
                    i += n;
                    self.on_head_event(mode, ev, ts, acked, sh);
                }
            }
        }
    }

    fn on_head_event(&mut self, mode: Mode, ev: HeadEvent, ts: u64, acked: Option<u64>, sh: &mut Shared) {
        match ev {
            HeadEvent::NeedMore if self.head.first_line_end != 0 || self.head.is_empty() => {}
            HeadEvent::NeedMore | HeadEvent::FirstLine => {
                let complete = ev == HeadEvent::FirstLine;
                match self.verdict(mode, complete) {
                    Verdict::Pending => {}
                    Verdict::Accept => self.state = SState::Head(Mode::Normal),
                    Verdict::Tls => {
                        sh.stop(Anomaly::NotHttp(NotHttpKind::Tls));
                        self.state = SState::Stopped;
                    }
                    _ => {
                        self.head.clear();
                        match mode {
                            Mode::Fresh => {
                                sh.not_http_unknown();
                                sh.server_resync();
                            }
                            Mode::Normal | Mode::AfterUpgrade => {
                                sh.anomaly(Anomaly::MalformedResponse);
                                sh.server_resync();
                            }
                            Mode::Resync => {}
                        }
                        self.state = if complete { SState::Head(Mode::Resync) } else { SState::Skip };
                    }
                }
            }
            HeadEvent::Done => self.head_done(ts, acked, sh),
            HeadEvent::TooLarge => {
                if mode != Mode::Resync {
                    sh.anomaly(Anomaly::HeadTooLarge);
                    sh.server_resync();
                }
                self.head.clear();
                self.state = SState::Skip;
            }
        }
    }

    fn verdict(&self, mode: Mode, complete: bool) -> Verdict {
        if mode == Mode::Fresh {
            match self.head.buf.as_slice() {
                [0x16] => return Verdict::Pending,
                [0x16, 0x03, ..] => return Verdict::Tls,
                _ => {}
            }
        }
        let strict = mode == Mode::Resync;
        match self.head.status_prefix_check(strict) {
            Prefix::Bad => return Verdict::Garbage,
            _ if !complete => return Verdict::Pending,
            _ => {}
        }
        let line = self.head.first_line();
        let ok =
            if strict { head::is_strict_status_line(line) } else { head::parse_status_line(line).is_some() };
        if ok { Verdict::Accept } else { Verdict::Garbage }
    }

    fn malformed(&mut self, sh: &mut Shared) {
        sh.anomaly(Anomaly::MalformedResponse);
        self.head.clear();
        self.state = SState::Head(Mode::Resync);
        sh.server_resync();
    }

    fn head_done(&mut self, ts: u64, acked: Option<u64>, sh: &mut Shared) {
        let Some(line) = head::parse_status_line(self.head.first_line()) else {
            return self.malformed(sh);
        };
        let status = line.status;
        if (100..200).contains(&status) && status != 101 {
            // interim response (100 Continue, 102, 103): skipped
            self.head.clear();
            self.state = SState::Head(Mode::Normal);
            return;
        }
        let Some(headers) = head::parse_headers(self.head.header_section()) else {
            return self.malformed(sh);
        };
        let Ok(framing) = head::body_framing(&headers, false) else {
            return self.malformed(sh);
        };
        let resp = Response {
            protocol: line.protocol.to_vec(),
            status,
            reason: line.reason.to_vec(),
            headers,
            body_len: 0,
            gap: false,
            end_ts: ts,
        };
        self.cur_mem = self.head.buf.len();
        self.head.clear();
        let (target, kind) = sh.pair(acked);
        self.cur = Some((target, Box::new(resp)));
        if status == 101 || (kind.connect && (200..300).contains(&status)) {
            self.finish_response(sh, ts, false);
            sh.upgraded();
            sh.stop_all = true;
            self.state = SState::Stopped;
            return;
        }
        if kind.head || status == 204 || status == 304 {
            return self.finish_response(sh, ts, false);
        }
        match framing {
            BodyKind::None => self.finish_response(sh, ts, false),
            BodyKind::Length(n) => self.state = SState::Length(n),
            BodyKind::Chunked => self.state = SState::Chunked(Chunked::new()),
            BodyKind::UntilClose => self.state = SState::UntilClose,
        }
    }

    fn finish_response(&mut self, sh: &mut Shared, ts: u64, gap: bool) {
        if let Some((target, mut resp)) = self.cur.take() {
            resp.end_ts = ts;
            resp.gap |= gap;
            if let Some(e) = match target {
                Target::Seq(seq) => sh.entry(seq),
                Target::Ghost | Target::Nobody => None,
            } {
                e.response = Some(*resp);
                e.resp_mem = self.cur_mem;
            }
            self.cur_mem = 0;
            sh.try_emit();
        }
        self.state = SState::Head(Mode::Normal);
    }

    fn gap(&mut self, len: u64, ts: u64, sh: &mut Shared) {
        match &mut self.state {
            SState::Stopped => {}
            SState::Skip => self.state = SState::Head(Mode::Resync),
            SState::Head(mode) => {
                if *mode != Mode::Resync {
                    sh.anomaly(Anomaly::ResponseHeadLost);
                    sh.server_resync();
                }
                self.head.clear();
                self.state = SState::Head(Mode::Resync);
            }
            SState::Length(rem) => {
                let skip = (*rem).min(len);
                *rem -= skip;
                let done = *rem == 0;
                self.count(skip, true);
                sh.anomaly(Anomaly::BodyGap);
                if done {
                    self.finish_response(sh, ts, true);
                    if len > skip {
                        self.gap(len - skip, ts, sh);
                    }
                }
            }
            SState::Chunked(_) => {
                sh.anomaly(Anomaly::BodyGap);
                self.finish_response(sh, ts, true);
                sh.server_resync();
                self.state = SState::Head(Mode::Resync);
            }
            SState::UntilClose => {
                self.count(len, true);
                sh.anomaly(Anomaly::BodyGap);
            }
        }
    }

    fn end(&mut self, ts: u64, sh: &mut Shared) {
        match &self.state {
            SState::Head(mode) => {
                if *mode != Mode::Resync && !self.head.is_empty() {
                    sh.anomaly(Anomaly::ResponseIncomplete);
                }
            }
            SState::Length(_) | SState::Chunked(_) => self.finish_response(sh, ts, true),
            SState::UntilClose => self.finish_response(sh, ts, false),
            SState::Skip | SState::Stopped => {}
        }
        self.head.clear();
        self.state = SState::Stopped;
        sh.server_closed = true;
        sh.try_emit();
    }
}

#[derive(Debug)]
enum Dir {
    Req(ReqDir),
    Resp(RespDir),
    Off,
}

/// The HTTP/1.x parser for one TCP connection. See the crate documentation.
#[derive(Debug)]
pub struct Conversation {
    sh: Shared,
    dirs: [Dir; 2],
    ended: [bool; 2],
    finished: bool,
    /// Per direction, the first bytes while it is not yet known whether a PROXY header starts it;
    /// `None` once decided.
    preamble: [Option<Vec<u8>>; 2],
    /// Server bytes that acknowledge client bytes not delivered yet, held until those are;
    /// boxed, since few connections have any and inline they made every flow 24 bytes larger.
    held: Option<Box<HeldResponse>>,
    /// Deliveries come with their stream offsets ([`Conversation::on_stream_data`]).
    positioned: bool,
    /// [`Shared::client_end`] says where the client's stream stands: the client delivered bytes at
    /// a known offset, or the handshake named the client (its offsets then start at 0; a stream
    /// picked up without one counts from a guessed start).
    client_placed: bool,
}

/// Server bytes held for requests not parsed yet, at most.
const MAX_HELD_RESPONSE: usize = 64 << 10;

/// Server bytes held until the client bytes they acknowledge are delivered (or declared lost). The
/// two directions of a connection can take different paths through a mirror; a server cannot
/// answer bytes it has not received, so feeding its bytes no earlier than the client bytes they
/// acknowledge pairs each response with its request, also when a request in between was lost.
#[derive(Debug, Default)]
struct HeldResponse {
    bytes: Vec<u8>,
    /// Consecutive pieces of `bytes`, oldest first; each waits for its client offset.
    pieces: Vec<HeldPiece>,
    /// When the server's FIN came, if it overtook the request too: the server's end then follows
    /// the held bytes.
    server_ended: Option<u64>,
    /// Held answers had to be fed before the requests they acknowledge, up to this client offset,
    /// were parsed: those requests, when parsed, go without an answer.
    answered_upto: Option<u64>,
}

/// Where a held piece ends in [`HeldResponse::bytes`], the client offset it waits for (its own
/// acknowledgment or an earlier piece's, whichever is later; `None`: for the client's position to
/// be known), when it arrived and what it acknowledged; or, with no bytes of its own, server bytes
/// lost there.
#[derive(Clone, Copy, Debug)]
struct HeldPiece {
    end: usize,
    need: Option<u64>,
    at: u64,
    /// The client's stream offset the piece's segment acknowledged, when known.
    acked: Option<u64>,
    /// Server bytes lost after this piece's bytes.
    gap: u64,
}

impl Conversation {
    /// A new conversation. `client_hint` is the peer that sent the SYN, when the connection's first
    /// packet seen was its SYN or SYN-ACK (the client's stream offsets then start at 0); without it
    /// the roles are found from the data.
    pub fn new(cfg: HttpConfig, client_hint: Option<Peer>) -> Self {
        let mut sh = Shared::new(cfg);
        let dirs = match client_hint {
            Some(c) => {
                sh.client = Some(c);
                let req = Dir::Req(ReqDir::new(c, false));
                let resp = Dir::Resp(RespDir::with_state(SState::Head(Mode::Fresh)));
                if c == Peer::A { [req, resp] } else { [resp, req] }
            }
            None => [Dir::Req(ReqDir::new(Peer::A, true)), Dir::Req(ReqDir::new(Peer::B, true))],
        };
        Conversation {
            sh,
            dirs,
            ended: [false; 2],
            finished: false,
            preamble: [Some(Vec::new()), Some(Vec::new())],
            held: None,
            positioned: false,
            client_placed: client_hint.is_some(),
        }
    }

    /// Says that `peer` answered on other connections. Should it be this one's server, its
    /// requests then wait for their responses even before a packet of its direction arrives (the
    /// mirror lost or delayed the SYN-ACK), instead of going out at once as on a one-direction
    /// mirror, where no server is ever seen; until the client starts another request while no
    /// server packet came yet, or at the latest at [`Conversation::finish`].
    pub fn expect_answers_from(&mut self, peer: Peer) {
        self.sh.answers_elsewhere[peer.idx()] = true;
    }

    /// The client peer, once known.
    pub fn client(&self) -> Option<Peer> {
        self.sh.client
    }

    /// A packet (possibly an empty ACK) was seen from `from`. Until one is seen from the server,
    /// requests are emitted as soon as they are complete, unless it answered on other connections
    /// ([`Conversation::expect_answers_from`]).
    pub fn on_packet(&mut self, from: Peer) {
        self.sh.seen[from.idx()] = true;
    }

    /// The next bytes of the `from` direction, captured at `ts` (µs), where their stream position
    /// is not known (see [`Conversation::on_stream_data`]).
    pub fn on_data(&mut self, from: Peer, data: &[u8], ts: u64) {
        self.receive(from, data, ts, None, None);
    }

    /// The next bytes of the `from` direction, captured at `ts` (µs): `offset` is their position in
    /// the direction's stream, `acked` the other direction's offset their segment acknowledged. A
    /// response is then paired only with a request its server had received, and server bytes that
    /// acknowledge client bytes not delivered yet (the mirror reordered the directions) wait for
    /// them, up to 64 KiB, so a response that overtook its request still pairs. A PROXY protocol
    /// header (v1 or v2) at the start of a direction is read and stripped; its addresses go into
    /// every transaction.
    pub fn on_stream_data(&mut self, from: Peer, data: &[u8], ts: u64, offset: u64, acked: Option<u64>) {
        self.receive(from, data, ts, Some(offset), acked);
    }

    fn receive(&mut self, from: Peer, data: &[u8], ts: u64, offset: Option<u64>, acked: Option<u64>) {
        let end = offset.map(|offset| (offset + data.len() as u64) as u32);
        self.positioned |= end.is_some();
        let roles_known = self.sh.client.is_some();
        if let Some(end) = end.filter(|_| self.sh.client == Some(from)) {
            self.place_client(end);
        }
        self.strip_preamble(from, data, ts, acked);
        // These bytes showed that `from` is the client (a request line; no handshake was seen).
        if !roles_known
            && self.sh.client == Some(from)
            && let Some(end) = end
        {
            self.place_client(end);
            self.release_due();
        }
    }

    /// The client's stream has been delivered (or declared lost) up to offset `end`.
    fn place_client(&mut self, end: u32) {
        self.sh.client_end = end;
        self.client_placed = true;
    }

    /// Feeds bytes after reading a PROXY protocol header from the start of the direction, if any.
    fn strip_preamble(&mut self, from: Peer, data: &[u8], ts: u64, acked: Option<u64>) {
        let d = from.idx();
        let Some(mut start) = self.preamble[d].take() else { return self.feed(from, data, ts, acked) };
        let owned;
        let input = if start.is_empty() {
            data
        } else {
            start.extend_from_slice(data);
            owned = start;
            &owned[..]
        };
        match proxy::probe(input) {
            Probe::NeedMore => {
                self.sh.seen[d] = true;
                self.preamble[d] = Some(input.to_vec());
            }
            Probe::Absent => self.feed(from, input, ts, acked),
            Probe::Header(header, len) => {
                if self.sh.proxy.is_none() {
                    self.sh.proxy = header.map(Box::new);
                }
                self.preamble = [None, None];
                self.feed(from, &input[len..], ts, acked);
                self.release_due();
            }
            Probe::Malformed => {
                self.sh.anomaly(Anomaly::ProxyMalformed);
                self.feed(from, input, ts, acked);
            }
        }
    }

    /// The client offset server bytes that acknowledged `acked` must wait for, if they must (see
    /// [`HeldPiece::need`]): the client has not delivered that far, or has delivered nothing yet
    /// though it was seen sending (a server does not speak first), or earlier server bytes wait.
    fn server_wait(&self, acked: Option<u64>) -> Option<Option<u64>> {
        let queued = self.held.as_ref().and_then(|h| h.pieces.last()).map(|p| p.need);
        let own = if self.client_placed {
            acked.filter(|&a| !reached(self.sh.client_end, a as u32)).map(Some)
        } else {
            let client_seen = self.sh.client.is_some_and(|c| self.sh.seen[c.idx()]);
            (self.positioned && client_seen).then_some(acked)
        };
        queued.max(own)
    }

    /// Feeds server bytes, or holds them while they may answer client bytes not delivered yet.
    fn feed_or_hold_server(&mut self, data: &[u8], ts: u64, acked: Option<u64>) {
        if let Some(need) = self.server_wait(acked) {
            let held = self.held.get_or_insert_default();
            if held.bytes.len() + data.len() <= MAX_HELD_RESPONSE {
                held.bytes.extend_from_slice(data);
                held.pieces.push(HeldPiece { end: held.bytes.len(), need, at: ts, acked, gap: 0 });
                return;
            }
            // Too much to hold: these answers go before their requests are parsed. Requests they
            // acknowledge, parsed later, must not take later answers.
            let answered = held.pieces.iter().filter_map(|p| p.acked).chain(acked).max();
            held.answered_upto = held.answered_upto.max(answered);
        }
        self.release_held(ts);
        if let Some(Dir::Resp(r)) = self.sh.client.map(|c| &mut self.dirs[c.other().idx()]) {
            r.feed(data, ts, acked, &mut self.sh);
        }
    }

    /// Feeds the held server bytes whose client bytes are now delivered or declared lost.
    fn release_due(&mut self) {
        let Some(held) = self.held.as_mut().filter(|_| self.client_placed) else { return };
        let client = self.sh.client_end;
        let due = held.pieces.iter().take_while(|p| p.need.is_none_or(|n| reached(client, n as u32))).count();
        if due == held.pieces.len() {
            self.release_held(u64::MAX);
        } else if due > 0 {
            let end = held.pieces[due - 1].end;
            let pieces: Vec<HeldPiece> = held.pieces.drain(..due).collect();
            let bytes: Vec<u8> = held.bytes.drain(..end).collect();
            for p in &mut held.pieces {
                p.end -= end;
            }
            self.feed_server(&bytes, &pieces);
        }
    }

    /// Requests parsed from `first` on whose answers were fed before them (see
    /// [`HeldResponse::answered_upto`]) go without one; the mark ends once the client is past it.
    fn answered_early(&mut self, first: u64) {
        let Some(held) = self.held.as_mut() else { return };
        let Some(upto) = held.answered_upto else { return };
        for e in self.sh.queue.iter_mut().filter(|e| e.seq >= first && acknowledges(Some(upto), e.end)) {
            e.no_resp = true;
        }
        if !acknowledges(Some(upto), self.sh.client_end) {
            held.answered_upto = None;
            if held.bytes.is_empty() && held.server_ended.is_none() {
                self.held = None;
            }
        }
        self.sh.try_emit();
    }

    /// Feeds every held server byte (the client will deliver nothing more, or the server lost
    /// bytes), then the server's end if it came; `ts` caps the pieces' times.
    fn release_held(&mut self, ts: u64) {
        let Some(mut held) = self.held.take() else { return };
        let (bytes, pieces) = (std::mem::take(&mut held.bytes), std::mem::take(&mut held.pieces));
        let server_ended = held.server_ended.take();
        if held.answered_upto.is_some() && !self.ended[self.sh.client.unwrap_or(Peer::A).idx()] {
            // Kept (without bytes) until the requests it names are parsed.
            self.held = Some(held);
        }
        self.feed_server(&bytes, &pieces);
        if let (Some(server), Some(at)) = (self.sh.client.map(Peer::other), server_ended) {
            self.end_dir(server, at.min(ts));
        }
    }

    /// Feeds held server `bytes`, cut into `pieces` (ends relative to `bytes`), each at its time.
    fn feed_server(&mut self, bytes: &[u8], pieces: &[HeldPiece]) {
        let server = self.sh.client.map(Peer::other);
        if let Some(Dir::Resp(r)) = server.map(|s| &mut self.dirs[s.idx()]) {
            let mut start = 0;
            for p in pieces {
                r.feed(&bytes[start..p.end], p.at, p.acked, &mut self.sh);
                if p.gap > 0 {
                    r.gap(p.gap, p.at, &mut self.sh);
                }
                start = p.end;
            }
        }
    }

    /// Feeds bytes still held while probing for a PROXY header, before a gap, end or finish.
    fn flush_preamble(&mut self, from: Peer, ts: u64) {
        if let Some(held) = self.preamble[from.idx()].take() {
            self.feed(from, &held, ts, None);
        }
    }

    fn feed(&mut self, from: Peer, data: &[u8], ts: u64, acked: Option<u64>) {
        self.sh.seen[from.idx()] = true;
        let d = from.idx();
        if self.finished || self.ended[d] || data.is_empty() {
            return;
        }
        let fed = match &mut self.dirs[d] {
            Dir::Req(r) => {
                let first = self.sh.next_seq;
                let fed = r.feed(data, ts, acked, &mut self.sh);
                self.answered_early(first);
                self.release_due();
                fed
            }
            Dir::Resp(_) => {
                self.feed_or_hold_server(data, ts, acked);
                Fed::Ok
            }
            Dir::Off => Fed::Ok,
        };
        if let Fed::BecameServer(at) = fed {
            self.sh.client = Some(from.other());
            if let Dir::Req(r) = std::mem::replace(&mut self.dirs[d], Dir::Off) {
                let (resp, buf, start_ts) = r.into_resp();
                self.dirs[d] = Dir::Resp(resp);
                self.feed_or_hold_server(&buf, start_ts, acked);
                self.feed_or_hold_server(&data[at..], ts, acked);
            }
        }
        self.settle(ts);
    }

    /// `len` bytes of the `from` direction are lost and will never come, where their stream position
    /// is not known (see [`Conversation::on_stream_gap`]).
    pub fn on_gap(&mut self, from: Peer, len: u64, ts: u64) {
        self.gap(from, None, len, ts);
    }

    /// `len` bytes of the `from` direction, from stream offset `offset` on, are lost and will
    /// never come (declared at `ts`).
    pub fn on_stream_gap(&mut self, from: Peer, offset: u64, len: u64, ts: u64) {
        self.gap(from, Some(offset), len, ts);
    }

    fn gap(&mut self, from: Peer, offset: Option<u64>, len: u64, ts: u64) {
        self.positioned |= offset.is_some();
        self.flush_preamble(from, ts);
        self.sh.seen[from.idx()] = true;
        if self.finished || self.ended[from.idx()] || len == 0 {
            return;
        }
        if matches!(self.dirs[from.idx()], Dir::Resp(_)) {
            if let Some(held) = self.held.as_mut()
                && let Some(need) = held.pieces.last().map(|p| p.need)
            {
                // The lost bytes come after the held ones, and wait with them.
                held.pieces.push(HeldPiece { end: held.bytes.len(), need, at: ts, acked: None, gap: len });
                return;
            }
            self.release_held(ts);
        }
        match &mut self.dirs[from.idx()] {
            Dir::Req(r) => {
                r.gap(len, ts, &mut self.sh);
                if self.held.as_ref().is_some_and(|h| h.answered_upto.is_some()) {
                    // Answers went ahead of their requests (too many bytes to hold): the lost
                    // request's may have been among them.
                    self.sh.forget_lost_request();
                }
                if let Some(offset) = offset.filter(|_| self.sh.client == Some(from)) {
                    self.place_client((offset + len) as u32);
                }
                // Responses to requests lost in the gap come out as unexpected, not paired with
                // the requests after it.
                self.release_due();
            }
            Dir::Resp(r) => r.gap(len, ts, &mut self.sh),
            Dir::Off => {}
        }
        self.settle(ts);
    }

    /// The `from` direction ended (FIN): ends a response body read until close; an incomplete
    /// request body is finished with `gap`.
    pub fn on_end(&mut self, from: Peer, ts: u64) {
        self.sh.seen[from.idx()] = true;
        self.end_dir(from, ts);
    }

    fn end_dir(&mut self, from: Peer, ts: u64) {
        self.flush_preamble(from, ts);
        let d = from.idx();
        // The server's FIN overtook the request as its response did: the response keeps waiting
        // for the request, and the server's end is taken after it.
        if let Some(held) = self.held.as_mut()
            && !held.pieces.is_empty()
            && matches!(self.dirs[d], Dir::Resp(_))
            && !self.ended[from.other().idx()]
            && !self.finished
        {
            held.server_ended.get_or_insert(ts);
            return;
        }
        self.release_held(ts);
        if self.finished || self.ended[d] {
            return;
        }
        self.ended[d] = true;
        match &mut self.dirs[d] {
            Dir::Req(r) => r.end(ts, &mut self.sh),
            Dir::Resp(r) => r.end(ts, &mut self.sh),
            Dir::Off => {}
        }
        self.settle(ts);
    }

    /// The connection is over (closed, reset or expired): everything still waiting is emitted, in
    /// request order, without response where none came. Later calls are ignored.
    pub fn finish(&mut self, ts: u64) {
        if self.finished {
            return;
        }
        let client = self.sh.client.unwrap_or(Peer::A);
        self.end_dir(client, ts);
        self.end_dir(client.other(), ts);
        self.dirs = [Dir::Off, Dir::Off];
        while let Some(mut e) = self.sh.queue.pop_front() {
            if !e.req_done {
                e.req.gap = true;
                e.req.end_ts = ts;
            }
            self.sh.emit(e);
        }
        self.sh.queue = VecDeque::new();
        self.sh.ghosts = Vec::new();
        self.sh.proxy = None;
        self.finished = true;
    }

    /// Moves the pending outputs to `out` (appended, in order).
    pub fn drain(&mut self, out: &mut Vec<Output>) {
        out.append(&mut self.sh.out);
        // An idle connection keeps no allocation for outputs it may never have again.
        self.sh.out = Vec::new();
        self.sh.out_mem = 0;
    }

    /// Bytes held, for memory accounting (approximate): head buffers of heads being read (their
    /// capacity), request bodies, heads and slots of queued or not yet drained transactions, and
    /// what the connection keeps boxed beside its own state (a response being read, early server
    /// bytes, a PROXY header's addresses). Between messages, once drained, only the PROXY header's
    /// addresses if one came; 0 once finished and drained.
    pub fn buffered_bytes(&self) -> usize {
        let dirs: usize = self
            .dirs
            .iter()
            .map(|d| match d {
                Dir::Req(r) => r.head.mem(),
                Dir::Resp(r) => {
                    r.head.mem() + r.cur_mem + r.cur.as_ref().map_or(0, |_| size_of::<Response>())
                }
                Dir::Off => 0,
            })
            .sum();
        let queued: usize = self.sh.queue.iter().map(Entry::mem).sum();
        let slots =
            self.sh.queue.capacity() * size_of::<Entry>() + self.sh.out.capacity() * size_of::<Output>();
        let held: usize = self.preamble.iter().flatten().map(Vec::len).sum::<usize>()
            + self.held.as_ref().map_or(0, |h| {
                size_of::<HeldResponse>() + h.bytes.capacity() + h.pieces.capacity() * size_of::<HeldPiece>()
            });
        let proxy = self.sh.proxy.as_ref().map_or(0, |_| size_of::<ProxyHeader>());
        dirs + queued + slots + held + proxy + self.sh.out_mem
    }

    /// Applies role decisions and stops after a direction was fed.
    fn settle(&mut self, ts: u64) {
        if let (false, Some(client)) = (self.sh.stop_all, self.sh.client) {
            if let Dir::Req(r) = &mut self.dirs[client.idx()] {
                r.probing = false;
            }
            let s = client.other().idx();
            if matches!(self.dirs[s], Dir::Req(_)) {
                if let Dir::Req(r) = std::mem::replace(&mut self.dirs[s], Dir::Off) {
                    let (mut resp, buf, start_ts) = r.into_resp();
                    resp.feed(&buf, start_ts, None, &mut self.sh);
                    if self.ended[s] {
                        resp.end(ts, &mut self.sh);
                    }
                    self.dirs[s] = Dir::Resp(resp);
                }
            }
        }
        if self.sh.stop_all {
            self.dirs = [Dir::Off, Dir::Off];
        }
    }
}
