//! What one replayed request needs.

use std::net::SocketAddr;

/// The response that was observed for a captured request, for the optional `X-Vxtap-Response-*`
/// headers ([`ReplayConfig::add_response_headers`](crate::ReplayConfig::add_response_headers)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObservedResponse {
    /// Status code (`X-Vxtap-Response-Status`).
    pub status: u16,
    /// Decoded body length (`X-Vxtap-Response-Length`).
    pub body_len: u64,
    /// Time from the end of the request to the end of the response, µs (`X-Vxtap-Response-Time-Us`).
    pub duration_us: u64,
}

/// One request to replay, with what the forwarding headers are made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayJob {
    /// The request as captured (method, target, headers in order, decoded body, completeness flags).
    pub request: vxtap_http::Request,
    /// The original client (`X-Forwarded-For`, `X-Forwarded-Port`).
    pub client: SocketAddr,
    /// The original server (`X-Server-Addr`, `X-Server-Port`, and `Host` when the request had none).
    pub server: SocketAddr,
    /// Capture time of the request, µs; used only by [`Pacing`](crate::Pacing).
    pub capture_ts_us: u64,
    /// The observed response, if any.
    pub response: Option<ObservedResponse>,
    /// The request's forwarding headers were already resolved into `client` and `server` (HTTP mirror
    /// input from a trusted proxy, whose `X-Forwarded-For` already names the client): the added headers
    /// are computed from `client` and `server` and replace the captured ones, instead of appending
    /// the client to `X-Forwarded-For` a second time. False for packet input.
    pub forwarded_resolved: bool,
}

impl ReplayJob {
    /// A job for packet input: no observed response, forwarding headers not resolved.
    pub fn new(
        request: vxtap_http::Request,
        client: SocketAddr,
        server: SocketAddr,
        capture_ts_us: u64,
    ) -> Self {
        ReplayJob { request, client, server, capture_ts_us, response: None, forwarded_resolved: false }
    }

    /// Bytes this job holds, roughly: what the queue's byte limit counts.
    pub fn size_estimate(&self) -> usize {
        let r = &self.request;
        let headers: usize = r.headers.iter().map(|h| h.name.len() + h.value.len() + 56).sum();
        std::mem::size_of::<Self>()
            + r.method.len()
            + r.target.len()
            + r.protocol.len()
            + headers
            + r.body.len()
    }
}
