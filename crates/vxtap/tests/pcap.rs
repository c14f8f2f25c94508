//! `vxtap pcap` end to end on generated mirror captures with known requests, and on the committed sample.

mod common;

use common::{events, summary, vxtap, write_pcap};
use vxtap_testgen::mix::{MixEncap, MixParams, generate_mix};
use vxtap_testgen::score::{Score, score};

fn run_mix(params: MixParams, extra_args: &[&str]) -> (Score, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mix.pcap");
    let mix = generate_mix(&params);
    write_pcap(&mix, &pcap);
    let mut args = vec!["pcap", pcap.to_str().unwrap(), "--body-limit", "16MiB"];
    args.extend_from_slice(extra_args);
    let out = vxtap(&args);
    assert!(out.status.success(), "vxtap failed: {}", String::from_utf8_lossy(&out.stderr));
    (score(&mix.expected, &events(&out)), summary(&out))
}

fn assert_all_exact(s: &Score) {
    assert!(s.intact > 0);
    assert_eq!((s.exact, s.inexact, s.missing, s.extra), (s.intact, 0, 0, 0), "{s:?}");
}

#[test]
fn vxlan_ipv4_and_ipv6_interleaved_all_exact() {
    let params = MixParams { seed: 7, connections: 300, ipv6_fraction: 0.4, ..MixParams::default() };
    let (s, summary) = run_mix(params, &["--workers", "2"]);
    assert_all_exact(&s);
    assert_eq!(summary["requests"].as_u64(), Some(s.intact as u64));
    assert_eq!(summary["gaps"].as_u64(), Some(0));
}

#[test]
fn geneve_with_vlans_and_ip_options_all_exact() {
    let params = MixParams {
        seed: 8,
        connections: 150,
        encap: MixEncap::Geneve { vni: 1377 },
        vlan_fraction: 0.5,
        ip_extras_fraction: 0.5,
        ..MixParams::default()
    };
    assert_all_exact(&run_mix(params, &["--workers", "1"]).0);
}

#[test]
fn plain_one_direction_capture_all_exact() {
    let params = MixParams {
        seed: 9,
        connections: 150,
        encap: MixEncap::None,
        client_only: true,
        pipelined_fraction: 0.3,
        byte_at_a_time_fraction: 0.1,
        ..MixParams::default()
    };
    assert_all_exact(&run_mix(params, &["--workers", "2"]).0);
}

#[test]
fn vni_filter_keeps_only_the_chosen_session() {
    let params =
        MixParams { seed: 10, connections: 40, encap: MixEncap::Vxlan { vni: 99 }, ..MixParams::default() };
    let (s, summary) = run_mix(params, &["--vni", "1377"]);
    assert_eq!(s.exact, 0);
    assert!(summary["skipped"]["vni_filtered"].as_u64().unwrap() > 0);
}

#[test]
fn bad_files_are_named_and_the_rest_still_processed() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.pcap");
    let mix = generate_mix(&MixParams { seed: 11, connections: 20, ..MixParams::default() });
    write_pcap(&mix, &good);
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").unwrap();
    let truncated = dir.path().join("truncated.pcap");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2 + 7]).unwrap();
    let missing = dir.path().join("missing.pcap");
    let out = vxtap(&[
        "pcap",
        garbage.to_str().unwrap(),
        missing.to_str().unwrap(),
        truncated.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in ["garbage.pcap", "missing.pcap", "truncated.pcap"] {
        assert!(
            stderr.lines().any(|l| l.starts_with("vxtap:") && l.contains(name)),
            "{name} not named: {stderr}"
        );
    }
    let s = score(&mix.expected, &events(&out));
    assert_eq!(s.exact, s.intact, "the good file's requests all come out: {s:?}");
}

#[test]
fn committed_sample_matches_committed_events() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let out = vxtap(&["pcap", root.join("sample.pcap").to_str().unwrap(), "--workers", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent: Vec<_> = std::fs::read_to_string(root.join("sample.expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| vxtap_testgen::mix::ExpectedRequest::from_json_line(l).unwrap())
        .collect();
    assert_all_exact(&score(&sent, &events(&out)));
    let expected = std::fs::read_to_string(root.join("sample.events.jsonl")).unwrap();
    let got = String::from_utf8(out.stdout).unwrap();
    assert_eq!(got, expected, "regenerate with scripts/regen-testdata.sh after an intended change");
}

#[test]
fn outer_ip_fragments_are_reassembled() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("frag.pcap");
    let mut mix = generate_mix(&MixParams { seed: 12, connections: 60, ..MixParams::default() });
    // A mirror path with a 1280-byte MTU: every large VXLAN datagram arrives in fragments, the last
    // fragment first.
    mix.frames = std::mem::take(&mut mix.frames)
        .into_iter()
        .flat_map(|(ts, frame)| {
            let mut parts = if frame.len() > 1294 {
                vxtap_testgen::frame::fragment_ipv4(&frame, 1256)
            } else {
                vec![frame]
            };
            parts.reverse();
            parts.into_iter().map(move |f| (ts, f))
        })
        .collect();
    write_pcap(&mix, &pcap);
    let out = vxtap(&["pcap", pcap.to_str().unwrap()]);
    assert!(out.status.success());
    assert_all_exact(&score(&mix.expected, &events(&out)));
    let summary = summary(&out);
    assert!(summary["outer_fragments"]["reassembled"].as_u64().unwrap() > 100, "{summary}");
    assert_eq!(summary["outer_fragments"]["failed"].as_u64(), Some(0));
}

/// Intact requests: at least 99.5% exact; no phantoms; every emitted damaged request flagged.
fn assert_recovers(s: &Score) {
    assert!(s.intact > 1000, "{s:?}");
    assert!(s.exact * 1000 >= s.intact * 995, "recall under 99.5%: {s:?}");
    assert_eq!((s.extra, s.damaged_unflagged, s.inexact), (0, 0, 0), "{s:?}");
}

fn impaired(seed: u64, loss: f64, duplication: f64, reorder: f64, truncate_to: Option<usize>) -> MixParams {
    MixParams {
        seed,
        connections: 1500,
        ipv6_fraction: 0.5,
        impairments: vxtap_testgen::mix::Impairments { loss, duplication, reorder, truncate_to },
        ..MixParams::default()
    }
}

#[test]
fn loss_duplication_and_reordering() {
    let (s, summary) = run_mix(impaired(31, 0.01, 0.03, 0.08, None), &["--workers", "2"]);
    assert_recovers(&s);
    assert!(summary["gaps"].as_u64().unwrap() > 0, "the mix did lose bytes: {summary}");
    eprintln!("loss 1% dup 3% reorder 8%: {s:?}");
}

#[test]
fn mirror_packet_length_truncation() {
    // A mirror session's packet length of 1200 cuts every full-size segment: requests that fit in
    // smaller segments stay exact, the others are flagged.
    let (s, summary) = run_mix(impaired(32, 0.0, 0.0, 0.0, Some(1200)), &["--workers", "2"]);
    assert_recovers(&s);
    assert!(s.damaged_flagged > 0, "{s:?}");
    assert!(summary["gap_bytes"].as_u64().unwrap() > 0);
    eprintln!("truncate 1200: {s:?}");
}

#[test]
fn one_direction_with_loss_and_reordering() {
    let mut params = impaired(33, 0.01, 0.02, 0.08, None);
    params.client_only = true;
    let (s, _) = run_mix(params, &["--workers", "1"]);
    assert_recovers(&s);
    eprintln!("client only, impaired: {s:?}");
}

#[test]
fn connections_that_reuse_a_closed_connections_ports_are_told_apart() {
    // Half the connections reuse the ports of one that just closed; with 2% loss some FINs and
    // handshakes are lost, so the new connection meets the old flow still open or just closed.
    let mut params = impaired(34, 0.02, 0.03, 0.08, None);
    params.reuse_ports_fraction = 0.5;
    let (s, summary) = run_mix(params, &["--workers", "2"]);
    assert_eq!(s.exact, s.intact, "every intact request exact: {s:?}");
    assert_eq!((s.extra, s.damaged_unflagged, s.inexact), (0, 0, 0), "{s:?}");
    assert!(summary["flows_reused"].as_u64().unwrap() > 0, "{summary}");
    eprintln!("reused ports, impaired: {s:?}");
}

/// Captures cut from the impaired lab runs (testdata/repro/README.md): each once lost or doubled a
/// request, or dropped a response that overtook its request.
#[test]
fn lab_reproductions_of_mirror_reordering_and_duplication() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/repro");
    let cases = [
        // (file, requests, requests with their status)
        ("response-before-request.pcap", 1, 1),
        ("dup-after-fin.pcap", 1, 1),
        ("dup-after-fin-keepalive.pcap", 50, 49),
        ("nosyn-first-data-late.pcap", 2, 1),
        ("synack-seen-first-data-late.pcap", 3, 1),
    ];
    for (file, requests, with_status) in cases {
        let out = vxtap(&["pcap", root.join(file).to_str().unwrap(), "--no-detect"]);
        assert!(out.status.success());
        let events = events(&out);
        let mut urls: Vec<&str> = events.iter().filter_map(|e| e["http"]["url"].as_str()).collect();
        let statuses = events.iter().filter(|e| e["http"]["status"].is_u64()).count();
        urls.sort();
        urls.dedup();
        assert_eq!((events.len(), urls.len()), (requests, requests), "{file}: every request once");
        assert!(statuses >= with_status, "{file}: {statuses} with status");
    }
}

/// Writes one client→server connection (SYN, then `request` in segments of `segment` bytes spaced
/// `gap_us` apart, then FIN) as a pcap of plain Ethernet frames.
fn one_connection_pcap(path: &std::path::Path, request: &[u8], segment: usize, gap_us: u64) {
    use vxtap_testgen::frame::{Encap, TcpSpec, build, flags};
    use vxtap_testgen::pcap::{LINKTYPE_ETHERNET, PcapWriter};
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut pcap = PcapWriter::new(file, LINKTYPE_ETHERNET, 65_535).unwrap();
    let mut spec = TcpSpec {
        src: "10.1.0.5:40001".parse().unwrap(),
        dst: "10.1.0.9:80".parse().unwrap(),
        seq: 7,
        ack: 0,
        flags: flags::SYN,
        payload: b"",
        vlans: &[],
        ip_extras: false,
    };
    let mut ts = 1_700_000_000_000_000u64;
    pcap.write(ts, &build(Encap::None, &spec)).unwrap();
    spec.flags = flags::ACK | flags::PSH;
    for (i, chunk) in request.chunks(segment).enumerate() {
        ts += gap_us;
        spec.seq = 8 + (i * segment) as u32;
        spec.payload = chunk;
        pcap.write(ts, &build(Encap::None, &spec)).unwrap();
    }
    spec.seq = 8 + request.len() as u32;
    spec.flags = flags::ACK | flags::FIN;
    spec.payload = b"";
    pcap.write(ts + gap_us, &build(Encap::None, &spec)).unwrap();
    pcap.flush().unwrap();
}

#[test]
fn a_request_dribbled_one_byte_at_a_time_over_forty_seconds_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.pcap");
    let request = b"POST /slow?x=1 HTTP/1.1\r\nHost: slow.example\r\nContent-Length: 11\r\n\r\nhello world";
    one_connection_pcap(&path, request, 1, 400_000); // 81 bytes, 0.4 s apart: 32 s
    let out = vxtap(&["pcap", path.to_str().unwrap()]);
    assert!(out.status.success());
    let events = events(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    let h = &events[0]["http"];
    assert_eq!(
        (h["url"].as_str(), h["request_body_len"].as_u64(), h["gap"].as_bool()),
        (Some("/slow?x=1"), Some(11), Some(false))
    );
}

#[test]
fn attacks_become_alert_events_counted_by_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attack.pcap");
    let request = b"GET /search?q=1%27%20OR%20%271%27%3D%271 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: sqlmap/1.7\r\n\r\n";
    one_connection_pcap(&path, request, 1448, 1000);
    let out = vxtap(&["pcap", path.to_str().unwrap()]);
    assert!(out.status.success());
    let events = events(&out);
    let alerts: Vec<_> = events.iter().filter(|e| e["event_type"] == "alert").collect();
    assert!(!alerts.is_empty(), "{events:?}");
    assert!(alerts.iter().all(|a| a["alert"]["signature_id"].is_u64() && a["http"]["url"].is_string()));
    let summary = summary(&out);
    assert!(summary["alerts_by_class"].as_object().is_some_and(|m| !m.is_empty()), "{summary}");
    let quiet = vxtap(&["pcap", path.to_str().unwrap(), "--no-detect"]);
    assert!(common::events(&quiet).iter().all(|e| e["event_type"] == "http"));
}

#[test]
fn requests_the_detector_read_only_in_part_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.pcap");
    // 300 arguments: past the detector's 192 values per request
    let args = (0..300).map(|i| format!("a{i}=1")).collect::<Vec<_>>().join("&");
    let request = format!("GET /p?{args} HTTP/1.1\r\nHost: shop.example\r\n\r\n");
    one_connection_pcap(&path, request.as_bytes(), 1448, 1000);
    let out = vxtap(&["pcap", path.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(summary(&out)["requests_inspected_in_part"], 1);
    let plain = dir.path().join("plain.pcap");
    one_connection_pcap(&plain, b"GET /p?a=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n", 1448, 1000);
    assert_eq!(summary(&vxtap(&["pcap", plain.to_str().unwrap()]))["requests_inspected_in_part"], 0);
}
