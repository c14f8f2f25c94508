use super::*;
use proptest::prelude::*;
use vxtap_testgen::frame::{Encap, TcpSpec, build, flags, inner_ethernet, udp_frame, vxlan_payload};

fn spec<'a>(src: &str, dst: &str, payload: &'a [u8]) -> TcpSpec<'a> {
    TcpSpec {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        seq: 1000,
        ack: 2000,
        flags: flags::ACK | flags::PSH,
        payload,
        vlans: &[],
        ip_extras: false,
    }
}

fn vxlan(vni: u32) -> Encap {
    Encap::Vxlan {
        vni,
        outer_src: "10.9.0.1".parse().unwrap(),
        outer_dst: "10.9.0.2".parse().unwrap(),
        sport: 55555,
    }
}

fn tcp(decoded: Decoded<'_>) -> Segment<'_> {
    match decoded {
        Decoded::Tcp(segment) => segment,
        other => panic!("expected a TCP segment, got {other:?}"),
    }
}

#[test]
fn vxlan_ipv4_tcp_segment() {
    let frame = build(vxlan(1377), &spec("10.0.0.7:51234", "10.0.1.20:80", b"GET / HTTP/1.1\r\n"));
    let seg = tcp(decode_frame(LinkType::Ethernet, &frame, &DecapConfig::default()).unwrap());
    assert_eq!(seg.payload, b"GET / HTTP/1.1\r\n");
    assert_eq!(seg.header.src, "10.0.0.7:51234".parse().unwrap());
    assert_eq!(seg.header.dst, "10.0.1.20:80".parse().unwrap());
    assert_eq!((seg.header.seq, seg.header.ack), (1000, 2000));
    assert!(seg.header.flags.contains(TcpFlags::ACK));
    assert!(!seg.header.flags.contains(TcpFlags::SYN));
    assert_eq!(seg.header.missing, 0);
    let tunnel = seg.header.tunnel.unwrap();
    assert_eq!((tunnel.kind, tunnel.vni), (TunnelKind::Vxlan, 1377));
    assert_eq!(tunnel.src, "10.9.0.1".parse::<IpAddr>().unwrap());
}

#[test]
fn ipv6_with_extension_header_and_qinq_vlans() {
    let mut s = spec("[2001:db8::7]:40000", "[2001:db8::20]:8080", b"hello");
    s.vlans = &[100, 200];
    s.ip_extras = true;
    let frame = build(vxlan(7), &s);
    let seg = tcp(decode_frame(LinkType::Ethernet, &frame, &DecapConfig::default()).unwrap());
    assert_eq!(seg.payload, b"hello");
    assert_eq!(seg.header.vlan, Some(100));
    assert_eq!(seg.header.dst.port(), 8080);
}

#[test]
fn ipv4_options_are_skipped() {
    let mut s = spec("10.0.0.1:1", "10.0.0.2:2", b"x");
    s.ip_extras = true;
    let frame = build(Encap::None, &s);
    let seg = tcp(decode_frame(LinkType::Ethernet, &frame, &DecapConfig::default()).unwrap());
    assert_eq!(seg.payload, b"x");
    assert!(seg.header.tunnel.is_none());
}

#[test]
fn geneve_around_vxlan_reports_the_vxlan_session() {
    let encap = Encap::GeneveVxlan {
        vni: 1377,
        outer_src: "10.9.0.1".parse().unwrap(),
        outer_dst: "10.9.0.2".parse().unwrap(),
    };
    let frame = build(encap, &spec("10.0.0.1:1234", "10.0.0.2:80", b"abc"));
    let seg = tcp(decode_frame(LinkType::Ethernet, &frame, &DecapConfig::default()).unwrap());
    assert_eq!(seg.payload, b"abc");
    let tunnel = seg.header.tunnel.unwrap();
    assert_eq!((tunnel.kind, tunnel.vni), (TunnelKind::Vxlan, 1377));
}

#[test]
fn udp_socket_payload_decodes_with_given_outer_addresses() {
    let inner = inner_ethernet(&spec("10.0.0.1:1234", "10.0.0.2:80", b"abc"));
    let payload = vxlan_payload(42, &inner);
    let (src, dst) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let seg = tcp(decode_udp_payload(src, dst, 4789, &payload, &DecapConfig::default()).unwrap());
    assert_eq!(seg.header.tunnel.unwrap().src, src);
    assert_eq!(seg.header.tunnel.unwrap().vni, 42);
    assert_eq!(seg.payload, b"abc");
}

#[test]
fn vni_filter_skips_other_sessions() {
    let cfg = DecapConfig { vnis: vec![1377], ..DecapConfig::default() };
    let frame = build(vxlan(99), &spec("10.0.0.1:1", "10.0.0.2:2", b""));
    assert_eq!(
        decode_frame(LinkType::Ethernet, &frame, &cfg).unwrap(),
        Decoded::Skipped(SkipReason::VniFiltered)
    );
}

#[test]
fn truncated_inner_payload_reports_missing_bytes() {
    let body = vec![b'a'; 1000];
    let frame = build(vxlan(1), &spec("10.0.0.1:1", "10.0.0.2:2", &body));
    let cut = &frame[..frame.len() - 300];
    let seg = tcp(decode_frame(LinkType::Ethernet, cut, &DecapConfig::default()).unwrap());
    assert_eq!(seg.payload.len(), 700);
    assert_eq!(seg.header.missing, 300);
}

#[test]
fn cooked_and_raw_link_types() {
    let inner = inner_ethernet(&spec("10.0.0.1:1", "10.0.0.2:2", b"sll"));
    let ip = &inner[14..];
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&0x0800u16.to_be_bytes());
    sll.extend_from_slice(ip);
    let mut sll2 = 0x0800u16.to_be_bytes().to_vec();
    sll2.extend_from_slice(&[0u8; 18]);
    sll2.extend_from_slice(ip);
    for (link, frame) in
        [(LinkType::LinuxSll, &sll[..]), (LinkType::LinuxSll2, &sll2[..]), (LinkType::RawIp, ip)]
    {
        let seg = tcp(decode_frame(link, frame, &DecapConfig::default()).unwrap());
        assert_eq!(seg.payload, b"sll", "{link:?}");
    }
    assert_eq!(LinkType::from_dlt(276), Some(LinkType::LinuxSll2));
    assert_eq!(LinkType::from_dlt(9999), None);
}

#[test]
fn malformed_layers_are_typed_errors() {
    let frame = build(vxlan(1), &spec("10.0.0.1:1", "10.0.0.2:2", b"payload"));
    let cfg = DecapConfig::default();
    // Cut inside the VXLAN header (14 eth + 20 ip + 8 udp + 4).
    let mut cut = frame[..46].to_vec();
    cut[16..18].copy_from_slice(&32u16.to_be_bytes());
    assert_eq!(decode_frame(LinkType::Ethernet, &cut, &cfg), Err(DecapError::VxlanMalformed));
    // VXLAN without the I flag.
    let mut bad = frame.clone();
    bad[42] = 0;
    assert_eq!(decode_frame(LinkType::Ethernet, &bad, &cfg), Err(DecapError::VxlanMalformed));
    // Inner IP version 5.
    let mut bad = frame.clone();
    bad[50 + 14] = 0x55;
    assert_eq!(decode_frame(LinkType::Ethernet, &bad, &cfg), Err(DecapError::UnknownNetwork));
    // Inner TCP header cut short.
    let inner_tcp_start = 50 + 14 + 20;
    assert_eq!(
        decode_frame(LinkType::Ethernet, &frame[..inner_tcp_start + 10], &cfg),
        Err(DecapError::TcpMalformed)
    );
    assert_eq!(decode_frame(LinkType::LinuxSll, &[0; 10], &cfg), Err(DecapError::SllTruncated));
}

#[test]
fn nested_tunnels_are_bounded() {
    let (src, dst): (IpAddr, IpAddr) = ("10.9.0.1".parse().unwrap(), "10.9.0.2".parse().unwrap());
    let mut frame = inner_ethernet(&spec("10.0.0.1:1", "10.0.0.2:2", b"deep"));
    for _ in 0..6 {
        frame = udp_frame(src, dst, 1, 4789, &vxlan_payload(1, &frame));
    }
    assert_eq!(
        decode_frame(LinkType::Ethernet, &frame, &DecapConfig::default()),
        Err(DecapError::TooManyTunnels)
    );
}

proptest! {
    #[test]
    fn plain_ipv4_reads_as_the_general_parser(
        head in proptest::collection::vec(any::<u8>(), 20..24),
        version_ihl in prop_oneof![Just(0x45u8), any::<u8>()],
        total in prop_oneof![0u16..80, any::<u16>()],
        fragment in prop_oneof![Just(0u16), Just(0x4000u16), any::<u16>()],
        rest in proptest::collection::vec(any::<u8>(), 0..60),
    ) {
        let mut packet = head;
        packet[0] = version_ihl;
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        packet[6..8].copy_from_slice(&fragment.to_be_bytes());
        packet.extend_from_slice(&rest);
        if let Some(fast) = super::plain_ipv4(&packet) {
            prop_assert_eq!(Ok(fast), super::IpPayload::parse(&packet));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), link in 0usize..4) {
        let link = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp][link];
        let _ = decode_frame(link, &bytes, &DecapConfig::default());
        let _ = decode_udp_payload(UNSPEC, UNSPEC, 4789, &bytes, &DecapConfig::default());
        let _ = decode_udp_payload(UNSPEC, UNSPEC, 6081, &bytes, &DecapConfig::default());
    }

    #[test]
    fn any_truncation_of_a_valid_frame_never_panics(cut in 0usize..200) {
        let frame = build(vxlan(1), &spec("10.0.0.1:1", "10.0.0.2:2", b"GET / HTTP/1.1\r\n\r\n"));
        let _ = decode_frame(LinkType::Ethernet, &frame[..cut.min(frame.len())], &DecapConfig::default());
    }
}

const UNSPEC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
