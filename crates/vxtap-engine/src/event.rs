//! EVE JSON events (Suricata's `http` and `alert` layouts) from request records.

use std::net::SocketAddr;

use vxtap_decap::Tunnel;
use vxtap_detect::Finding;
use vxtap_http::{Header, Transaction, host_without_port};

use crate::json::{Json, timestamp};

/// Where a transaction came from: the addressing an event reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Flow identifier shared by all events of one connection.
    pub flow_id: u64,
    /// The client.
    pub src: SocketAddr,
    /// The server.
    pub dst: SocketAddr,
    /// The tunnel that carried the packets, if any.
    pub tunnel: Option<Tunnel>,
    /// When a PROXY protocol header named the real client (`src`), the TCP connection's own
    /// endpoints: the proxy (load balancer) and the server it connected to.
    pub proxy: Option<(SocketAddr, SocketAddr)>,
    /// For HTTP mirror input: the proxy that sent the copy (reported as `mirror` in place of
    /// `tunnel`).
    pub mirror: Option<SocketAddr>,
    /// The event's `hostname` when the input knows better than the Host header (a mirror copy's
    /// Host without the `-shadow` suffix); `None` derives it from Host.
    pub hostname: Option<Vec<u8>>,
}

impl Default for Origin {
    fn default() -> Self {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Origin {
            flow_id: 0,
            src: unspecified,
            dst: unspecified,
            tunnel: None,
            proxy: None,
            mirror: None,
            hostname: None,
        }
    }
}

/// Appends one `http` event line for `tx`, then one `alert` line per finding.
pub fn write_events(out: &mut Vec<u8>, origin: &Origin, tx: &Transaction, findings: &[Finding]) {
    write_event(out, origin, tx, None);
    for finding in findings {
        write_event(out, origin, tx, Some(finding));
    }
}

/// About how many bytes [`write_events`] writes for a transaction with `findings` alerts (more
/// when much needs escaping): lets the caller have the room ready instead of growing its buffer
/// in the middle of large events.
pub(crate) fn size_hint(tx: &Transaction, findings: usize) -> usize {
    let req = &tx.request;
    let response_headers = tx.response.iter().flat_map(|r| &r.headers);
    let heads: usize =
        req.headers.iter().chain(response_headers).map(|h| h.name.len() + h.value.len() + 32).sum();
    (1 + findings) * (req.body.len().div_ceil(3) * 4 + req.target.len() + heads + 1024)
}

fn write_event(out: &mut Vec<u8>, origin: &Origin, tx: &Transaction, alert: Option<&Finding>) {
    let ts = tx.response.as_ref().map_or(tx.request.end_ts, |r| r.end_ts.max(tx.request.end_ts));
    let mut j = Json::new(out);
    j.open();
    j.key(b"timestamp");
    j.raw(|buf| {
        buf.push(b'"');
        timestamp(buf, ts);
        buf.push(b'"');
    });
    j.num(b"flow_id", origin.flow_id);
    j.str(b"event_type", if alert.is_some() { b"alert" } else { b"http" });
    j.ip(b"src_ip", origin.src.ip());
    j.num(b"src_port", u64::from(origin.src.port()));
    j.ip(b"dest_ip", origin.dst.ip());
    j.num(b"dest_port", u64::from(origin.dst.port()));
    j.str(b"proto", b"TCP");
    j.str(b"app_proto", b"http");
    if let Some(t) = origin.tunnel {
        j.key(b"tunnel");
        j.open();
        j.str(b"type", t.kind.as_str().as_bytes());
        j.num(b"vni", u64::from(t.vni));
        j.ip(b"src_ip", t.src);
        j.ip(b"dest_ip", t.dst);
        j.close();
    }
    if let Some(peer) = origin.mirror {
        j.key(b"mirror");
        j.open();
        j.str(b"type", b"http");
        j.ip(b"peer_ip", peer.ip());
        j.num(b"peer_port", u64::from(peer.port()));
        j.close();
    }
    if let Some((peer, server)) = origin.proxy {
        j.key(b"proxy");
        j.open();
        j.ip(b"src_ip", peer.ip());
        j.num(b"src_port", u64::from(peer.port()));
        j.ip(b"dest_ip", server.ip());
        j.num(b"dest_port", u64::from(server.port()));
        j.close();
    }
    if let Some(finding) = alert {
        write_alert(&mut j, finding);
    }
    write_http(&mut j, origin, tx);
    j.close();
    out.push(b'\n');
}

fn write_alert(j: &mut Json<'_>, f: &Finding) {
    j.key(b"alert");
    j.open();
    j.str(b"action", b"allowed");
    j.num(b"signature_id", u64::from(f.signature_id));
    j.num(b"rev", u64::from(f.rev));
    j.str(b"signature", f.signature.as_bytes());
    j.str(b"category", f.category.as_bytes());
    j.num(b"severity", u64::from(f.severity));
    j.key(b"metadata");
    j.open();
    string_array(j, b"attack_class", f.attack_class.iter().map(|s| s.as_bytes()));
    string_array(j, b"location", f.location.iter().map(|s| s.as_bytes()));
    string_array(j, b"fragment", std::iter::once(f.fragment.as_bytes()));
    j.close();
    j.close();
}

fn string_array<'v, const N: usize>(j: &mut Json<'_>, key: &[u8; N], values: impl Iterator<Item = &'v [u8]>) {
    j.key(key);
    j.open_array();
    for v in values {
        j.str_element(v);
    }
    j.close_array();
}

fn write_http(j: &mut Json<'_>, origin: &Origin, tx: &Transaction) {
    let req = &tx.request;
    j.key(b"http");
    j.open();
    match (&origin.hostname, find(&req.headers, b"host")) {
        (Some(name), _) => j.str(b"hostname", name),
        (None, Some(host)) => j.str(b"hostname", host_without_port(host)),
        (None, None) => {}
    }
    j.str(b"url", &req.target);
    j.str(b"http_method", &req.method);
    j.str(b"protocol", &req.protocol);
    if let Some(ua) = find(&req.headers, b"user-agent") {
        j.str(b"http_user_agent", ua);
    }
    if let Some(ct) = find(&req.headers, b"content-type") {
        j.str(b"http_content_type", ct);
    }
    if let Some(referer) = find(&req.headers, b"referer") {
        j.str(b"http_refer", referer);
    }
    if let Some(id) = find(&req.headers, b"x-request-id") {
        j.str(b"request_id", id);
    }
    if let Some(resp) = &tx.response {
        j.num(b"status", u64::from(resp.status));
        j.num(b"length", resp.body_len);
    }
    headers(j, b"request_headers", &req.headers);
    if let Some(resp) = &tx.response {
        headers(j, b"response_headers", &resp.headers);
    }
    if !req.body.is_empty() {
        j.base64(b"http_request_body", &req.body);
    }
    j.num(b"request_body_len", req.body_len);
    if req.body_truncated {
        j.bool(b"http_request_body_truncated", true);
    }
    j.bool(b"gap", req.gap);
    if tx.response.as_ref().is_some_and(|r| r.gap) {
        j.bool(b"response_gap", true);
    }
    j.close();
}

fn headers<const N: usize>(j: &mut Json<'_>, key: &[u8; N], headers: &[Header]) {
    j.key(key);
    j.open_array();
    for h in headers {
        j.element();
        j.open();
        j.str(b"name", &h.name);
        j.str(b"value", &h.value);
        j.close();
    }
    j.close_array();
}

/// The first header named `name` (ASCII case-insensitive).
pub(crate) fn find<'h>(headers: &'h [Header], name: &[u8]) -> Option<&'h [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(host_without_port(b"shop.example:8080"), b"shop.example");
        assert_eq!(host_without_port(b"shop.example"), b"shop.example");
        assert_eq!(host_without_port(b"[2001:db8::1]:80"), b"[2001:db8::1]");
        assert_eq!(host_without_port(b" a:b "), b"a:b");
    }
}
