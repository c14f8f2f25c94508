//! Helpers for the binary's integration tests: write generated mixes as pcaps, run `vxtap pcap`, and
//! score its events against the requests the generator says it sent.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use vxtap_testgen::mix::Mix;
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
