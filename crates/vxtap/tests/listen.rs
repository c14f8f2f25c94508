//! `vxtap listen` on loopback: VXLAN datagrams in, events out; health, metrics, SIGHUP reopen of the
//! events file, and a drain on SIGTERM that still emits every request.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_get, metric, signal, wait_for};
use vxtap_testgen::mix::{MixParams, generate_mix};
use vxtap_testgen::ports::unused_port;
use vxtap_testgen::score::score;

#[test]
fn listen_receives_reopens_on_sighup_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("eve.json");
    let rotated = dir.path().join("eve.json.1");
    let (udp, health) = (unused_port(), unused_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .args(["listen", "--udp", &format!("127.0.0.1:{udp}"), "--health", &format!("127.0.0.1:{health}")])
        .args(["--events", events.to_str().unwrap(), "--log-format", "json", "--drain-timeout", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("health", || http_get(health, "/-/healthcheck").is_some_and(|(s, _)| s == 200));
    assert_eq!(http_get(health, "/-/ping").map(|(s, t)| (s, t.ends_with("PONG"))), Some((200, true)));

    let mix =
        generate_mix(&MixParams { seed: 41, connections: 80, ipv6_fraction: 0.3, ..MixParams::default() });
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let half = mix.frames.len() / 2;
    let send = |frames: &[(u64, Vec<u8>)]| {
        for (i, (_, frame)) in frames.iter().enumerate() {
            // Outer Ethernet (14) + IPv4 (20) + UDP (8): the socket gets the VXLAN header onwards.
            sender.send_to(&frame[42..], ("127.0.0.1", udp)).unwrap();
            if i % 200 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    send(&mix.frames[..half]);
    wait_for("first events", || metric(health, "vxtap_packets_total") == half as u64);
    wait_for("events written", || std::fs::metadata(&events).is_ok_and(|m| m.len() > 0));
    std::fs::rename(&events, &rotated).unwrap();
    signal(&child, libc::SIGHUP);
    wait_for("reopened file", || events.exists());
    send(&mix.frames[half..]);
    wait_for("all packets", || metric(health, "vxtap_packets_total") == mix.frames.len() as u64);
    wait_for("per-VNI counter", || metric(health, "vxtap_vni_segments_total{vni=\"12345\"}") > 0);
    // The receive socket's own counters: every datagram taken in, none dropped by the kernel.
    let frames = mix.frames.len() as u64;
    wait_for("socket counter", || metric(health, "vxtap_udp_datagrams_total{receiver=\"0\"}") == frames);
    let (_, text) = http_get(health, "/metrics").unwrap();
    assert!(text.contains("vxtap_udp_kernel_drops_total{receiver=\"0\"} 0"), "{text}");

    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let logs: Vec<&str> = stderr.lines().collect();
    assert!(
        logs.iter()
            .filter(|l| l.contains("\"level\""))
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
    assert!(stderr.contains("draining"), "{stderr}");

    let read = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (before, after) = (read(&rotated), read(&events));
    assert!(!before.is_empty() && !after.is_empty(), "{} then {}", before.len(), after.len());
    let all: Vec<_> = before.into_iter().chain(after).collect();
    let s = score(&mix.expected, &all);
    assert_eq!((s.exact, s.missing, s.extra), (s.intact, 0, 0), "{s:?}");
}

#[test]
fn health_is_503_while_draining() {
    let (udp, health) = (unused_port(), unused_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .args(["listen", "--udp", &format!("127.0.0.1:{udp}"), "--health", &format!("127.0.0.1:{health}")])
        .args(["--drain-timeout", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("health", || http_get(health, "/-/healthcheck").is_some_and(|(s, _)| s == 200));
    // A flow that never finishes keeps the drain busy only as long as the engine needs; health must
    // turn 503 from the signal on, before the process exits.
    let mut poller = TcpStream::connect(("127.0.0.1", health)).unwrap();
    signal(&child, libc::SIGTERM);
    let mut saw_503 = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if write!(poller, "GET /-/healthcheck HTTP/1.1\r\nHost: x\r\n\r\n").is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match poller.read(&mut buf) {
            Ok(n) if n >= 12 && &buf[9..12] == b"503" => {
                saw_503 = true;
                break;
            }
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(saw_503, "health never answered 503 during the drain");
}
