//! Scoring vxtap's EVE `http` events against the requests a generator says it sent: the one measure of
//! correctness shared by the integration tests, the offline benchmark and the live benchmark.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde_json::Value;

use crate::mix::ExpectedRequest;

/// How a set of events compares with what was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Score {
    /// Requests the generator sent whose bytes all arrived.
    pub intact: usize,
    /// Intact requests found with exact method, target, body, body length and server address.
    pub exact: usize,
    /// Intact requests found but not exact.
    pub inexact: usize,
    /// Intact requests not found.
    pub missing: usize,
    /// Events that match no sent request (phantoms), or a request more often than it was sent.
    pub extra: usize,
    /// Events for requests that lost bytes, flagged `gap: true`.
    pub damaged_flagged: usize,
    /// Events for requests that lost bytes, not flagged.
    pub damaged_unflagged: usize,
}

impl std::ops::AddAssign for Score {
    fn add_assign(&mut self, o: Score) {
        self.intact += o.intact;
        self.exact += o.exact;
        self.inexact += o.inexact;
        self.missing += o.missing;
        self.extra += o.extra;
        self.damaged_flagged += o.damaged_flagged;
        self.damaged_unflagged += o.damaged_unflagged;
    }
}

impl Score {
    /// Every intact request exact, nothing extra, every damaged one flagged.
    pub fn is_perfect(&self) -> bool {
        self.exact == self.intact && self.extra == 0 && self.damaged_unflagged == 0
    }
}

/// How bytes appear once an event string is parsed: UTF-8 as is, other bytes as U+0000..U+00FF (the
/// `\u00XX` escapes of the event format).
pub fn as_event_text(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|&b| char::from(b)));
    }
    out
}

type Key = (String, u16, String, String);

fn key_of_expected(e: &ExpectedRequest) -> Key {
    (e.src.ip().to_string(), e.src.port(), e.method.clone(), as_event_text(&e.target))
}

fn key_of_event(v: &Value) -> Key {
    let h = &v["http"];
    (
        v["src_ip"].as_str().unwrap_or_default().to_string(),
        v["src_port"].as_u64().unwrap_or_default() as u16,
        h["http_method"].as_str().unwrap_or_default().to_string(),
        h["url"].as_str().unwrap_or_default().to_string(),
    )
}

/// Matches `http` events (other event types are ignored) to expected requests: same client, method
/// and target, in order for repeats.
pub fn score(expected: &[ExpectedRequest], events: &[Value]) -> Score {
    let mut by_key: HashMap<Key, Vec<&ExpectedRequest>> = HashMap::new();
    for e in expected {
        by_key.entry(key_of_expected(e)).or_default().push(e);
    }
    let mut s = Score { intact: expected.iter().filter(|e| e.intact).count(), ..Score::default() };
    let mut found_intact = 0;
    for ev in events.iter().filter(|v| v["event_type"] == "http") {
        let Some(candidates) = by_key.get_mut(&key_of_event(ev)).filter(|c| !c.is_empty()) else {
            s.extra += 1;
            continue;
        };
        let h = &ev["http"];
        let gap = h["gap"].as_bool().unwrap_or(false);
        // No body field is an empty body; one that is not base64 matches nothing.
        let body = match h["http_request_body"].as_str() {
            Some(b) => B64.decode(b).ok(),
            None => Some(Vec::new()),
        };
        let exact = |e: &ExpectedRequest| {
            e.intact
                && !gap
                && body.as_ref() == Some(&e.body)
                && h["request_body_len"].as_u64() == Some(e.body.len() as u64)
                && ev["dest_ip"] == e.dst.ip().to_string()
        };
        // Same client, method and target more than once (a port reused, or a repeated request): the
        // one this event matches exactly, else one as damaged as the event says, else the first.
        let pick = candidates
            .iter()
            .position(|e| exact(e))
            .or_else(|| candidates.iter().position(|e| e.intact != gap))
            .unwrap_or(0);
        let e = candidates.remove(pick);
        if !e.intact {
            if gap {
                s.damaged_flagged += 1;
            } else {
                s.damaged_unflagged += 1;
            }
            continue;
        }
        found_intact += 1;
        if exact(e) {
            s.exact += 1;
        } else {
            s.inexact += 1;
        }
    }
    s.missing = s.intact - found_intact;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::{MixParams, generate_mix};

    fn event_for(e: &ExpectedRequest, body: &[u8], gap: bool) -> Value {
        serde_json::json!({
            "event_type": "http", "src_ip": e.src.ip().to_string(), "src_port": e.src.port(),
            "dest_ip": e.dst.ip().to_string(),
            "http": {"http_method": e.method, "url": as_event_text(&e.target),
                     "http_request_body": B64.encode(body), "request_body_len": body.len(), "gap": gap}
        })
    }

    #[test]
    fn exact_missing_inexact_and_extra_are_told_apart() {
        let mix = generate_mix(&MixParams {
            connections: 4,
            requests_per_conn: 2..=2,
            seed: 3,
            ..Default::default()
        });
        let sent = &mix.expected;
        let mut events: Vec<Value> = sent.iter().map(|e| event_for(e, &e.body, false)).collect();
        assert!(score(sent, &events).is_perfect());
        events.pop();
        events[0] = event_for(&sent[0], b"not the body", false);
        events.push(event_for(&sent[1], &sent[1].body, false)); // a second copy of one request
        let s = score(sent, &events);
        assert_eq!((s.exact, s.inexact, s.missing, s.extra), (sent.len() - 2, 1, 1, 1));
        assert!(!s.is_perfect());
    }
}
