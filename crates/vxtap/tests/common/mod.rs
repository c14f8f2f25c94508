//! Helpers for the binary's integration tests: write generated mixes as pcaps, run `vxtap pcap`, and
//! score its events against the requests the generator says it sent.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use vxtap_testgen::mix::{ExpectedRequest, Mix};
use vxtap_testgen::pcap::{LINKTYPE_ETHERNET, PcapWriter};

/// Writes a mix's frames as a classic pcap.
pub fn write_pcap(mix: &Mix, path: &Path) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = PcapWriter::new(file, LINKTYPE_ETHERNET, 262_144).unwrap();
    for (ts, frame) in &mix.frames {
        writer.write(*ts, frame).unwrap();
    }
    writer.flush().unwrap();
}

/// Runs the vxtap binary with `args`.
pub fn vxtap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vxtap")).args(args).output().expect("vxtap runs")
}

/// Parses stdout as JSON lines.
pub fn events(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
        .collect()
}

/// The stderr summary line of a run.
pub fn summary(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line =
        stderr.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no summary: {stderr}"));
    serde_json::from_str(line).unwrap()
}

/// How bytes appear once an event string is parsed: UTF-8 as is, other bytes as U+0000..U+00FF.
pub fn as_event_text(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|&b| char::from(b)));
    }
    out
}

/// How a set of events compares with what was sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Score {
    /// Requests the generator sent whose bytes all arrived.
    pub intact: usize,
    /// Intact requests found with exact method, target and body.
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

/// Matches `http` events to expected requests (same client, method, target; in order for repeats).
pub fn score(expected: &[ExpectedRequest], events: &[Value]) -> Score {
    let mut by_key: HashMap<Key, Vec<&ExpectedRequest>> = HashMap::new();
    for e in expected {
        by_key.entry(key_of_expected(e)).or_default().push(e);
    }
    let mut s = Score { intact: expected.iter().filter(|e| e.intact).count(), ..Score::default() };
    let mut found_intact = 0;
    for ev in events.iter().filter(|v| v["event_type"] == "http") {
        let Some(candidates) = by_key.get_mut(&key_of_event(ev)) else {
            s.extra += 1;
            continue;
        };
        if candidates.is_empty() {
            s.extra += 1;
            continue;
        }
        let h = &ev["http"];
        let gap = h["gap"].as_bool().unwrap_or(false);
        // Same client, method and target more than once: an event without a gap is the intact one.
        let pick = candidates.iter().position(|e| e.intact != gap).unwrap_or(0);
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
        let body = h["http_request_body"]
            .as_str()
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
            .unwrap_or_default();
        let len_ok = h["request_body_len"].as_u64() == Some(e.body.len() as u64);
        if body == e.body && len_ok && !gap && ev["dest_ip"] == e.dst.ip().to_string() {
            s.exact += 1;
        } else {
            s.inexact += 1;
        }
    }
    s.missing = s.intact - found_intact;
    s
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text))
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill with a pid we spawned and a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn metric(port: u16, name: &str) -> u64 {
    let (_, text) = http_get(port, "/metrics").unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}
