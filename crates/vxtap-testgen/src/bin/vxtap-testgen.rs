//! `vxtap-testgen mix`: writes a pcap of mirrored HTTP traffic and the JSON lines of the requests in it.
//! `vxtap-testgen score`: compares vxtap's events with those requests.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use vxtap_testgen::mix::{ExpectedRequest, Impairments, MixEncap, MixItem, MixParams, stream_mix};
use vxtap_testgen::pcap::{LINKTYPE_ETHERNET, PcapWriter};
use vxtap_testgen::score::score;

#[derive(Parser, Debug)]
#[command(name = "vxtap-testgen", version, about = "Generates mirrored-traffic test captures for vxtap")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a mix of concurrent HTTP/1.x connections: a pcap plus one JSON line per request.
    Mix(Box<MixArgs>),
    /// Score vxtap's EVE events against a mix's expected requests; prints one JSON line.
    Score(ScoreArgs),
}

#[derive(clap::Args, Debug)]
struct ScoreArgs {
    /// The expected requests (`mix --expected`).
    #[arg(long)]
    expected: PathBuf,
    /// vxtap's events (JSON lines; only `http` events count).
    #[arg(long)]
    events: PathBuf,
    /// Exit 1 unless every intact request is exact, nothing is extra and every damaged one is flagged.
    #[arg(long)]
    require_perfect: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum EncapArg {
    Vxlan,
    Geneve,
    None,
}

#[derive(clap::Args, Debug)]
struct MixArgs {
    /// Capture file to write (classic pcap, Ethernet, microsecond timestamps).
    #[arg(long)]
    out: PathBuf,
    /// JSON-lines file of the expected requests (fields: src, dst, method, target, target_b64, version,
    /// host, body_b64, body_len, chunked, intact, conn, seq, ts_us).
    #[arg(long)]
    expected: PathBuf,
    /// Number of TCP connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Requests per connection, `A..B` (both ends included) or `N`.
    #[arg(long, default_value = "1..8", value_parser = parse_range)]
    requests_per_conn: RangeInclusive<usize>,
    /// Fraction of connections over IPv6.
    #[arg(long, default_value_t = 0.2)]
    ipv6: f64,
    /// Seed: the same arguments give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability of dropping a frame.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability of duplicating a frame.
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// Probability of swapping a frame with one 1-5 positions later.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Mirror packet length: cut every inner frame to N bytes.
    #[arg(long)]
    truncate: Option<usize>,
    /// Encapsulation.
    #[arg(long, value_enum, default_value_t = EncapArg::Vxlan)]
    encap: EncapArg,
    /// VXLAN network identifier.
    #[arg(long, default_value_t = 12345)]
    vni: u32,
    /// Only client-to-server segments (one-direction mirror session).
    #[arg(long)]
    client_only: bool,
    /// Largest TCP payload per segment.
    #[arg(long, default_value_t = 1448)]
    mss: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 300_000)]
    body_max: usize,
    /// Fraction of bodies from 64 KiB up to --body-max.
    #[arg(long, default_value_t = 0.01)]
    large_bodies: f64,
    /// Fraction of HTTP/1.1 bodies sent chunked.
    #[arg(long, default_value_t = 0.1)]
    chunked: f64,
    /// Fraction of HTTP/1.0 connections.
    #[arg(long, default_value_t = 0.05)]
    http10: f64,
    /// Fraction of odd request-targets.
    #[arg(long, default_value_t = 0.1)]
    odd_targets: f64,
    /// Fraction of pipelining connections.
    #[arg(long, default_value_t = 0.05)]
    pipelined: f64,
    /// Fraction of connections sending one byte per segment.
    #[arg(long, default_value_t = 0.01)]
    byte_at_a_time: f64,
    /// Fraction of connections whose sequence numbers wrap.
    #[arg(long, default_value_t = 0.1)]
    wrap: f64,
    /// Fraction of connections with VLAN-tagged inner frames.
    #[arg(long, default_value_t = 0.0)]
    vlan: f64,
    /// Fraction of connections with IPv4 options / IPv6 hop-by-hop headers.
    #[arg(long, default_value_t = 0.0)]
    ip_extras: f64,
    /// Mean gap between connection starts, in microseconds (smaller: more concurrent connections).
    #[arg(long, default_value_t = 250)]
    conn_gap_us: u64,
    /// Idle microseconds every connection stays open after its last exchange before it closes (longer
    /// than the span of connection starts: every connection open at once).
    #[arg(long, default_value_t = 0)]
    hold_us: u64,
    /// Fraction of connections that reuse the client and server addresses and ports of a connection
    /// that just closed (as a client may once the server closed first and holds the TIME-WAIT),
    /// with initial sequence numbers a clock advanced since that one started (RFC 6528, as Linux).
    #[arg(long, default_value_t = 0.0)]
    reuse_ports: f64,
    /// Timestamp of the first frame, microseconds since the Unix epoch.
    #[arg(long, default_value_t = 1_700_000_000_000_000)]
    start_us: u64,
}

fn parse_range(s: &str) -> Result<RangeInclusive<usize>, String> {
    let num = |t: &str| t.trim().parse::<usize>().map_err(|e| format!("{t:?}: {e}"));
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (num(a)?, num(b.strip_prefix('=').unwrap_or(b))?),
        None => (num(s)?, num(s)?),
    };
    if a > b {
        return Err(format!("empty range {s}"));
    }
    Ok(a..=b)
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Mix(args) => run_mix(&args).map(|()| true),
        Command::Score(args) => run_score(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vxtap-testgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_mix(a: &MixArgs) -> std::io::Result<()> {
    let fractions = [
        ("ipv6", a.ipv6),
        ("loss", a.loss),
        ("dup", a.dup),
        ("reorder", a.reorder),
        ("reuse-ports", a.reuse_ports),
    ];
    for (name, p) in fractions {
        if !(0.0..=1.0).contains(&p) {
            return Err(std::io::Error::other(format!("--{name} must be between 0 and 1")));
        }
    }
    let params = MixParams {
        seed: a.seed,
        connections: a.connections,
        requests_per_conn: a.requests_per_conn.clone(),
        ipv6_fraction: a.ipv6,
        encap: match a.encap {
            EncapArg::Vxlan => MixEncap::Vxlan { vni: a.vni },
            EncapArg::Geneve => MixEncap::Geneve { vni: a.vni },
            EncapArg::None => MixEncap::None,
        },
        mss: a.mss,
        body_max: a.body_max,
        large_body_fraction: a.large_bodies,
        chunked_fraction: a.chunked,
        http10_fraction: a.http10,
        odd_target_fraction: a.odd_targets,
        pipelined_fraction: a.pipelined,
        byte_at_a_time_fraction: a.byte_at_a_time,
        wrap_fraction: a.wrap,
        vlan_fraction: a.vlan,
        ip_extras_fraction: a.ip_extras,
        client_only: a.client_only,
        mean_conn_gap_us: a.conn_gap_us,
        hold_us: a.hold_us,
        reuse_ports_fraction: a.reuse_ports,
        start_us: a.start_us,
        impairments: Impairments {
            loss: a.loss,
            duplication: a.dup,
            reorder: a.reorder,
            truncate_to: a.truncate,
        },
    };
    let started = Instant::now();
    let mut pcap = PcapWriter::new(
        BufWriter::with_capacity(1 << 20, File::create(&a.out)?),
        LINKTYPE_ETHERNET,
        262_144,
    )?
    .cut_at_snaplen(true);
    let mut jsonl = BufWriter::with_capacity(1 << 20, File::create(&a.expected)?);
    let (mut frames, mut bytes, mut requests, mut intact) = (0u64, 0u64, 0u64, 0u64);
    for item in stream_mix(&params) {
        match item {
            MixItem::Frame(ts, f) => {
                frames += 1;
                bytes += f.len() as u64;
                pcap.write(ts, &f)?;
            }
            MixItem::Expected(e) => {
                requests += 1;
                intact += u64::from(e.intact);
                jsonl.write_all(e.to_json_line().as_bytes())?;
                jsonl.write_all(b"\n")?;
            }
        }
    }
    pcap.into_inner()?;
    jsonl.flush()?;
    eprintln!(
        "vxtap-testgen: {} connections, {requests} requests ({intact} intact), {frames} frames, {:.1} MB of frames, \
         {:.2}s",
        a.connections,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Prints the score; `Ok(false)` when `--require-perfect` and it is not.
fn run_score(a: &ScoreArgs) -> std::io::Result<bool> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| std::io::Error::other(format!("{}: {e}", p.display())))
    };
    let bad =
        |p: &PathBuf, n: usize, e: String| std::io::Error::other(format!("{}:{}: {e}", p.display(), n + 1));
    let mut expected = Vec::new();
    for (n, line) in read(&a.expected)?.lines().enumerate() {
        expected.push(ExpectedRequest::from_json_line(line).map_err(|e| bad(&a.expected, n, e))?);
    }
    let mut events = Vec::new();
    for (n, line) in read(&a.events)?.lines().enumerate() {
        events.push(serde_json::from_str(line).map_err(|e| bad(&a.events, n, e.to_string()))?);
    }
    let s = score(&expected, &events);
    println!("{}", serde_json::to_string(&s).map_err(std::io::Error::other)?);
    Ok(s.is_perfect() || !a.require_perfect)
}
