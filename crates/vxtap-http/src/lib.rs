//! Sans-IO HTTP/1.x conversation parser.
//!
//! A [`Conversation`] receives the two reassembled byte streams of one TCP connection, in chunks of
//! any size, together with gap notifications (bytes that will never come) and end-of-stream, and
//! produces [`Output`]s: request/response [`Transaction`]s in request order, and [`Anomaly`]
//! notices for the caller to count. It does no I/O, reads no clock and never panics; its memory is
//! bounded by [`HttpConfig`].
//!
//! ```
//! use vxtap_http::{Conversation, HttpConfig, Output, Peer};
//!
//! let mut conv = Conversation::new(HttpConfig::default(), Some(Peer::A));
//! conv.on_packet(Peer::B); // the SYN-ACK: the server side is captured, so requests wait for responses
//! conv.on_data(Peer::A, b"POST /login HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\n\r\na=1", 10);
//! conv.on_data(Peer::B, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 20);
//! let mut out = Vec::new();
//! conv.drain(&mut out);
//! let Output::Transaction(tx) = &out[0] else { panic!("expected a transaction") };
//! assert_eq!(tx.client, Peer::A);
//! assert_eq!(tx.request.method, b"POST");
//! assert_eq!(tx.request.target, b"/login");
//! assert_eq!(tx.request.body, b"a=1");
//! assert_eq!(tx.response.as_ref().map(|r| r.status), Some(200));
//! ```
//!
//! Rules in short:
//! - Roles: the hinted peer is the client; without a hint, the first direction that starts with a
//!   request line is the client, one starting with `HTTP/` is the server.
//! - A transaction is emitted once: when its response is complete; at once when no packet was ever
//!   seen from the server (one-direction mirror) and it answered on no other connection either
//!   ([`Conversation::expect_answers_from`]); when more than [`HttpConfig::max_pending`] requests
//!   wait; or at [`Conversation::finish`].
//! - After a gap or a malformed message the parser resynchronises on a strict request (or status)
//!   line at the start of a line; bytes inside a correctly framed body never become a request.
//! - Body bytes lost in a gap are counted in `body_len` but not stored in `body`; the message is
//!   marked `gap`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chunked;
mod conv;
mod head;
mod proxy;
#[cfg(test)]
mod tests;

pub use conv::Conversation;
pub use head::{is_scheme_char, is_tchar, is_token};
pub use proxy::ProxyHeader;

/// A Host value without its port: `shop.example:8080` → `shop.example`, `[::1]:80` → `[::1]`; the
/// `hostname` of events, whichever way the request came in.
pub fn host_without_port(host: &[u8]) -> &[u8] {
    let host = host.trim_ascii();
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    }
}

/// Limits of one conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Request body bytes kept per request (decoded); the rest is only counted. Default 1 MiB.
    pub body_limit: usize,
    /// Largest request or response head (start line, headers, empty line) and chunked trailer section.
    /// Default 1 MiB.
    pub max_head_bytes: usize,
    /// Most complete requests held while waiting for their responses; beyond it the oldest is emitted
    /// without response. Default 64.
    pub max_pending: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { body_limit: 1 << 20, max_head_bytes: 1 << 20, max_pending: 64 }
    }
}

/// One end of the connection. `A` is the side that sent the first packet (or the SYN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The side that sent the first packet / SYN.
    A,
    /// The other side.
    B,
}

impl Peer {
    /// The other end.
    pub fn other(self) -> Peer {
        match self {
            Peer::A => Peer::B,
            Peer::B => Peer::A,
        }
    }

    fn idx(self) -> usize {
        match self {
            Peer::A => 0,
            Peer::B => 1,
        }
    }
}

/// One header line: original bytes and case, in wire order, duplicates kept. Folded continuation
/// lines are joined to the value with one space; surrounding whitespace is trimmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Field name as sent.
    pub name: Vec<u8>,
    /// Field value as sent, without leading/trailing whitespace.
    pub value: Vec<u8>,
}

/// A parsed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Method token as sent (any token: `GET`, `PURGE`, `M-SEARCH`, lowercase too).
    pub method: Vec<u8>,
    /// Request-target exactly as sent (origin-, absolute-, authority- or asterisk-form).
    pub target: Vec<u8>,
    /// Protocol, e.g. `HTTP/1.1`.
    pub protocol: Vec<u8>,
    /// Header lines in wire order.
    pub headers: Vec<Header>,
    /// The first `body_limit` decoded (de-chunked) body bytes that were captured.
    pub body: Vec<u8>,
    /// Full decoded body length, including bytes lost in gaps and bytes beyond `body_limit`.
    pub body_len: u64,
    /// True when `body_limit` cut the body.
    pub body_truncated: bool,
    /// True when bytes of the body were missing (gap, or the stream ended inside the body).
    pub gap: bool,
    /// Timestamp (µs, as given by the caller) of the chunk carrying the first byte of the request.
    pub start_ts: u64,
    /// Timestamp of the chunk that completed the request.
    pub end_ts: u64,
}

/// A parsed response (the final one; interim 1xx responses are skipped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Protocol, e.g. `HTTP/1.1`.
    pub protocol: Vec<u8>,
    /// Status code.
    pub status: u16,
    /// Reason phrase (may be empty).
    pub reason: Vec<u8>,
    /// Header lines in wire order.
    pub headers: Vec<Header>,
    /// Body length seen (decoded), including bytes lost in gaps; the body itself is not kept.
    pub body_len: u64,
    /// True when bytes of the response body were missing.
    pub gap: bool,
    /// Timestamp of the chunk (or end / finish call) that completed the response.
    pub end_ts: u64,
}

/// A request and, when it was seen, its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The peer that sent the request.
    pub client: Peer,
    /// The request.
    pub request: Request,
    /// The response, if one was paired with the request.
    pub response: Option<Response>,
    /// The real client and listener from a PROXY protocol header at the start of the connection.
    pub proxy: Option<ProxyHeader>,
}

/// What kind of non-HTTP traffic was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotHttpKind {
    /// A TLS record (`0x16 0x03`) at the start of a direction.
    Tls,
    /// The HTTP/2 connection preface `PRI * HTTP/2.0`.
    Http2,
    /// Anything else that does not start like HTTP/1.x.
    Unknown,
}

/// Something unusual, for the caller to count; parsing goes on unless said otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Anomaly {
    /// The conversation does not start like HTTP/1.x. `Tls` and `Http2` stop the conversation;
    /// `Unknown` is reported once and the parser keeps looking for a request line.
    NotHttp(NotHttpKind),
    /// A gap hit a request head (or the space between requests); the partial head was dropped.
    RequestHeadLost,
    /// A gap hit a response head (or the space between responses).
    ResponseHeadLost,
    /// A request that cannot be parsed or framed (bad request line, header line, Content-Length,
    /// Transfer-Encoding or chunk framing); it is skipped.
    MalformedRequest,
    /// A response that cannot be parsed or framed; it is skipped.
    MalformedResponse,
    /// A head exceeded [`HttpConfig::max_head_bytes`].
    HeadTooLarge,
    /// The connection switched protocols (101, CONNECT 2xx, or non-HTTP data after an upgrade
    /// request): parsing stops.
    Upgraded,
    /// A gap inside a request or response body; the message is marked `gap`.
    BodyGap,
    /// The client direction ended inside a request head.
    RequestIncomplete,
    /// The server direction ended inside a response head.
    ResponseIncomplete,
    /// A response came while no request was waiting for one; it was dropped.
    UnexpectedResponse,
    /// A stream started like a PROXY protocol header but was not a valid one; it is parsed as HTTP.
    ProxyMalformed,
}

impl Anomaly {
    /// Counter name, snake_case.
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::NotHttp(NotHttpKind::Tls) => "not_http_tls",
            Anomaly::NotHttp(NotHttpKind::Http2) => "not_http_http2",
            Anomaly::NotHttp(NotHttpKind::Unknown) => "not_http_unknown",
            Anomaly::RequestHeadLost => "request_head_lost",
            Anomaly::ResponseHeadLost => "response_head_lost",
            Anomaly::MalformedRequest => "malformed_request",
            Anomaly::MalformedResponse => "malformed_response",
            Anomaly::HeadTooLarge => "head_too_large",
            Anomaly::Upgraded => "upgraded",
            Anomaly::BodyGap => "body_gap",
            Anomaly::RequestIncomplete => "request_incomplete",
            Anomaly::ResponseIncomplete => "response_incomplete",
            Anomaly::UnexpectedResponse => "unexpected_response",
            Anomaly::ProxyMalformed => "proxy_malformed",
        }
    }
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// One result of parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // transactions are the common case; boxing would cost an allocation each
pub enum Output {
    /// A request, with its response when one was seen.
    Transaction(Transaction),
    /// An anomaly to count.
    Anomaly(Anomaly),
}
