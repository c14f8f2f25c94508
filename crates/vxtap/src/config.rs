//! Command line and TOML configuration, merged: a flag overrides the file, the file overrides defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use vxtap_capture::UdpOptions;
use vxtap_decap::DecapConfig;
use vxtap_engine::{EngineConfig, Overload};
use vxtap_http::HttpConfig;
use vxtap_mirror::{Cidr, MirrorConfig, TlsFiles};
use vxtap_reassembly::ReassemblyConfig;
use vxtap_replay::{Pacing, ReplayConfig};

/// vxtap: turns mirrored traffic (AWS VPC traffic mirroring's VXLAN, GWLB's GENEVE, pcap files) into
/// Suricata-style EVE JSON HTTP events.
#[derive(Parser, Debug)]
#[command(name = "vxtap", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read pcap/pcapng files in order, write events, exit 0 (2 if a file was bad).
    Pcap {
        /// Capture files (pcap or pcapng; Ethernet, Linux SLL/SLL2 or raw IP; tunnelled or plain).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Replay pacing: fast (default), original (capture timing), or a multiple such as 200% or 2x
        #[arg(long, value_name = "SPEED")]
        speed: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Receive VXLAN/GENEVE on UDP and/or capture an interface until SIGTERM/SIGINT.
    Listen {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        listen: Box<ListenArgs>,
    },
}

/// Options of both commands.
#[derive(Args, Debug, Default)]
pub struct CommonArgs {
    /// Write EVE JSON lines to PATH (`-` is stdout) [default: -]
    #[arg(long, value_name = "PATH")]
    pub events: Option<String>,
    /// Accept only these VXLAN/GENEVE VNIs; others are counted and dropped [default: all]
    #[arg(long, value_name = "N[,N...]", value_delimiter = ',')]
    pub vni: Option<Vec<u32>>,
    /// Inner TCP server ports treated as HTTP [default: any port where HTTP is seen]
    #[arg(long, value_name = "P[,P...]", value_delimiter = ',')]
    pub ports: Option<Vec<u16>>,
    /// Request body bytes kept per request, e.g. 1MiB [default: 1MiB]
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub body_limit: Option<u64>,
    /// Skip the attack detector
    #[arg(long)]
    pub no_detect: bool,
    /// Ceiling on all buffered stream and body bytes; past it, flows are cut and counted [default: 1GiB]
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub memcap: Option<u64>,
    /// Reassembly/detection worker threads [default: one per core]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Close flows idle this long, seconds [default: 30]
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// UDP port of VXLAN [default: 4789]
    #[arg(long, value_name = "PORT")]
    pub vxlan_port: Option<u16>,
    /// UDP port of GENEVE [default: 6081]
    #[arg(long, value_name = "PORT")]
    pub geneve_port: Option<u16>,
    /// Replay every complete request to this http:// or https:// target (an internal ALB)
    #[arg(long, value_name = "URL")]
    pub replay: Option<String>,
    /// Concurrent replay requests [default: 64]
    #[arg(long, value_name = "N")]
    pub replay_concurrency: Option<usize>,
    /// Seconds before a replayed request times out [default: 10]
    #[arg(long, value_name = "SECS")]
    pub replay_timeout: Option<u64>,
    /// PEM file of CA certificates trusted for an https:// replay target, besides the public roots
    #[arg(long, value_name = "FILE")]
    pub replay_ca: Option<PathBuf>,
    /// Add X-Vxtap-Response-Status/-Length/-Time-Us headers from the observed response
    #[arg(long)]
    pub replay_response_headers: bool,
    /// Added replay headers to leave out: x-forwarded-for, x-forwarded-port, x-forwarded-proto,
    /// x-scheme, x-server-addr, x-server-port, x-request-id
    #[arg(long, value_name = "HEADER[,HEADER...]", value_delimiter = ',')]
    pub replay_omit: Option<Vec<String>>,
    /// Log lines on stderr as human-readable text or JSON [default: human]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// TOML configuration file (keys documented in configs/vxtap.toml); flags override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// Options of `listen`.
#[derive(Args, Debug, Default)]
pub struct ListenArgs {
    /// UDP address for VXLAN (or GENEVE when the port is the GENEVE port); `off` disables it
    /// [default: 0.0.0.0:4789]
    #[arg(long, value_name = "ADDR:PORT|off")]
    pub udp: Option<String>,
    /// Capture this interface with libpcap (needs CAP_NET_RAW)
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    /// Health, ping and metrics HTTP server for the NLB [default: 0.0.0.0:9445]
    #[arg(long, value_name = "ADDR:PORT")]
    pub health: Option<SocketAddr>,
    /// Seconds to finish open flows after SIGTERM/SIGINT [default: 30]
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,
    /// UDP receive threads, each with its own SO_REUSEPORT socket [default: 1]
    #[arg(long, value_name = "N")]
    pub receivers: Option<usize>,
    /// Kernel receive buffer of each UDP socket: what a burst can queue while the workers catch up.
    /// The kernel doubles it and holds that much at most, only while datagrams wait; past
    /// net.core.rmem_max only when vxtap may force it (root or CAP_NET_ADMIN) [default: 256MiB]
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub recv_buffer: Option<u64>,
    /// Accept VXLAN/GENEVE datagrams only from these outer source blocks; others are counted and
    /// dropped [default: any]
    #[arg(long, value_name = "CIDR[,CIDR...]", value_delimiter = ',')]
    pub udp_allow: Option<Vec<String>>,
    /// HTTP mirror input: accept request copies from nginx `mirror`, Envoy/Istio, Traefik here
    /// (conventionally port 8445); each is answered 204 at once [default: off]
    #[arg(long, value_name = "ADDR:PORT")]
    pub http_mirror: Option<SocketAddr>,
    /// Proxies whose X-Forwarded-For / Forwarded / X-Real-IP / X-Server-Addr headers are believed
    #[arg(long, value_name = "CIDR[,CIDR...]", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Serve the HTTP mirror only to these peers; others get 403 [default: any]
    #[arg(long, value_name = "CIDR[,CIDR...]", value_delimiter = ',')]
    pub http_mirror_allow: Option<Vec<String>>,
    /// TLS certificate chain (PEM) for an HTTPS mirror listener; needs --http-mirror-tls-key
    #[arg(long, value_name = "FILE")]
    pub http_mirror_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the HTTPS mirror listener
    #[arg(long, value_name = "FILE")]
    pub http_mirror_tls_key: Option<PathBuf>,
}

/// The TOML file: every key optional, unknown keys rejected.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    events: Option<String>,
    vni: Option<Vec<u32>>,
    ports: Option<Vec<u16>>,
    body_limit: Option<Size>,
    detect: Option<bool>,
    memcap: Option<Size>,
    workers: Option<usize>,
    idle_timeout: Option<u64>,
    vxlan_port: Option<u16>,
    geneve_port: Option<u16>,
    log_format: Option<LogFormat>,
    replay: Option<String>,
    replay_concurrency: Option<usize>,
    replay_timeout: Option<u64>,
    replay_ca: Option<PathBuf>,
    replay_response_headers: Option<bool>,
    replay_omit: Option<Vec<String>>,
    speed: Option<String>,
    listen: Option<ListenFile>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    udp: Option<String>,
    iface: Option<String>,
    health: Option<SocketAddr>,
    drain_timeout: Option<u64>,
    receivers: Option<usize>,
    recv_buffer: Option<Size>,
    udp_allow: Option<Vec<String>>,
    http_mirror: Option<SocketAddr>,
    trusted_proxies: Option<Vec<String>>,
    http_mirror_allow: Option<Vec<String>>,
    http_mirror_tls_cert: Option<PathBuf>,
    http_mirror_tls_key: Option<PathBuf>,
}

/// A byte size: a number, or a string such as `16MiB`.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(#[serde(deserialize_with = "size_from_text")] u64),
}

impl Size {
    fn get(self) -> u64 {
        match self {
            Size::Bytes(n) | Size::Text(n) => n,
        }
    }
}

fn size_from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse_size(&text).map_err(serde::de::Error::custom)
}

/// Parses `1234`, `64KiB`, `16MiB`, `1GiB`, `500KB`, `2MB`, `1G` (case-insensitive).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is not a size such as 1048576 or 16MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("size `{text}` is too large"))
}

/// Everything a run needs, resolved.
#[derive(Debug)]
pub struct Settings {
    pub engine: EngineConfig,
    pub events: String,
    pub udp: Option<SocketAddr>,
    pub iface: Option<String>,
    pub health: SocketAddr,
    pub drain_timeout_secs: u64,
    pub receivers: usize,
    /// Requested kernel receive buffer of each UDP socket, in bytes.
    pub recv_buffer: usize,
    pub log_format: LogFormat,
    pub replay: Option<ReplayConfig>,
    pub udp_allow: Vec<Cidr>,
    pub http_mirror: Option<MirrorConfig>,
}

/// Parses a list of CIDR blocks (a bare address is a /32 or /128), naming the option on error.
fn cidrs(option: &str, list: Option<Vec<String>>) -> Result<Vec<Cidr>> {
    list.unwrap_or_default()
        .iter()
        .map(|c| Cidr::parse_list(c).map_err(|e| anyhow::anyhow!("{option}: {e}")))
        .collect::<Result<Vec<Vec<Cidr>>>>()
        .map(|v| v.into_iter().flatten().collect())
}

fn load_file(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {}", path.display(), e.to_string().trim()))
}

/// How long a live input waits for room in a full worker queue before it drops a batch: long enough
/// that a burst is absorbed by the kernel's buffer (the socket's, `--recv-buffer`; libpcap's,
/// 64 MiB) instead of dropped, short enough that a worker that stopped making progress
/// shows as counted drops within a tenth of a second.
const LIVE_QUEUE_WAIT: Duration = Duration::from_millis(100);

/// Merges flags, file and defaults. `live` selects the live-input policy (wait, then drop on
/// overload; wall clock).
pub fn resolve(
    common: &CommonArgs,
    listen: Option<&ListenArgs>,
    speed: Option<&str>,
    live: bool,
) -> Result<Settings> {
    let mut file = match &common.config {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };
    let speed = speed.map(str::to_string).or(file.speed.clone());
    let speed = speed.as_deref();
    let lf = file.listen.take().unwrap_or_default();
    let default_listen = ListenArgs::default();
    let la = listen.unwrap_or(&default_listen);
    let replay = replay_config(common, &file, speed)?;
    let http_mirror = match la.http_mirror.or(lf.http_mirror) {
        None => None,
        Some(addr) => {
            let mut m = MirrorConfig::new(addr);
            m.trusted_proxies =
                cidrs("--trusted-proxies", la.trusted_proxies.clone().or(lf.trusted_proxies.clone()))?;
            m.allow =
                cidrs("--http-mirror-allow", la.http_mirror_allow.clone().or(lf.http_mirror_allow.clone()))?;
            m.body_limit =
                usize::try_from(common.body_limit.or(file.body_limit.map(Size::get)).unwrap_or(1 << 20))?;
            let cert = la.http_mirror_tls_cert.clone().or(lf.http_mirror_tls_cert.clone());
            let key = la.http_mirror_tls_key.clone().or(lf.http_mirror_tls_key.clone());
            m.tls = match (cert, key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                (None, None) => None,
                _ => bail!("--http-mirror-tls-cert and --http-mirror-tls-key go together"),
            };
            Some(m)
        }
    };
    let udp_allow = cidrs("--udp-allow", la.udp_allow.clone().or(lf.udp_allow.clone()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = common.workers.or(file.workers).unwrap_or(cores);
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let body_limit = common.body_limit.or(file.body_limit.map(Size::get)).unwrap_or(1 << 20);
    let memcap = common.memcap.or(file.memcap.map(Size::get)).unwrap_or(1 << 30);
    let idle = common.idle_timeout.or(file.idle_timeout).unwrap_or(30);
    let decap = DecapConfig {
        vxlan_port: common.vxlan_port.or(file.vxlan_port).unwrap_or(4789),
        geneve_port: common.geneve_port.or(file.geneve_port).unwrap_or(6081),
        vnis: common.vni.clone().or(file.vni).unwrap_or_default(),
    };
    let http = HttpConfig { body_limit: usize::try_from(body_limit)?, ..HttpConfig::default() };
    let reassembly = ReassemblyConfig {
        idle_timeout_us: idle.saturating_mul(1_000_000),
        memcap: usize::try_from(memcap)?,
        ..ReassemblyConfig::default()
    };
    let engine = EngineConfig {
        workers,
        decap,
        reassembly,
        http,
        detect: !common.no_detect && file.detect.unwrap_or(true),
        ports: common.ports.clone().or(file.ports).unwrap_or_default(),
        overload: if live { Overload::WaitThenDrop(LIVE_QUEUE_WAIT) } else { Overload::Block },
        wall_clock: live,
        ..EngineConfig::default()
    };
    let recv_buffer = la.recv_buffer.or(lf.recv_buffer.map(Size::get));
    let recv_buffer = recv_buffer.map_or(Ok(UdpOptions::default().recv_buffer_bytes), usize::try_from)?;
    let udp_text = la.udp.clone().or(lf.udp).unwrap_or_else(|| "0.0.0.0:4789".into());
    let udp = match udp_text.as_str() {
        "off" => None,
        addr => Some(addr.parse().with_context(|| format!("--udp: `{addr}` is not ADDR:PORT or off"))?),
    };
    Ok(Settings {
        engine,
        events: common.events.clone().or(file.events).unwrap_or_else(|| "-".into()),
        udp,
        iface: la.iface.clone().or(lf.iface),
        health: la.health.or(lf.health).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9445))),
        drain_timeout_secs: la.drain_timeout.or(lf.drain_timeout).unwrap_or(30),
        receivers: la.receivers.or(lf.receivers).unwrap_or(1).max(1),
        recv_buffer,
        log_format: common.log_format.or(file.log_format).unwrap_or_default(),
        replay,
        udp_allow,
        http_mirror,
    })
}

/// The replay client's configuration, when a target is given.
fn replay_config(
    common: &CommonArgs,
    file: &FileConfig,
    speed: Option<&str>,
) -> Result<Option<ReplayConfig>> {
    let Some(target) = common.replay.clone().or(file.replay.clone()) else {
        if speed.is_some() {
            bail!("--speed paces replay: it needs --replay URL");
        }
        return Ok(None);
    };
    let mut cfg = ReplayConfig::new(target);
    if let Some(n) = common.replay_concurrency.or(file.replay_concurrency) {
        cfg.concurrency = n;
    }
    if let Some(secs) = common.replay_timeout.or(file.replay_timeout) {
        cfg.timeout = Duration::from_secs(secs);
    }
    cfg.ca_file = common.replay_ca.clone().or(file.replay_ca.clone());
    cfg.add_response_headers =
        common.replay_response_headers || file.replay_response_headers.unwrap_or(false);
    for name in common.replay_omit.clone().or(file.replay_omit.clone()).unwrap_or_default() {
        let h = &mut cfg.headers;
        let flag = match name.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => &mut h.forwarded_for,
            "x-forwarded-port" => &mut h.forwarded_port,
            "x-forwarded-proto" => &mut h.forwarded_proto,
            "x-scheme" => &mut h.scheme,
            "x-server-addr" => &mut h.server_addr,
            "x-server-port" => &mut h.server_port,
            "x-request-id" => &mut h.request_id,
            other => bail!("--replay-omit: unknown header `{other}`"),
        };
        *flag = false;
    }
    if let Some(speed) = speed {
        cfg.pacing = parse_speed(speed).map_err(|e| anyhow::anyhow!("--speed: {e}"))?;
    }
    Ok(Some(cfg))
}

/// `fast` (as fast as possible), `original` (capture timing), or a multiple such as `200%` or `2x`.
pub fn parse_speed(text: &str) -> Result<Pacing, String> {
    let t = text.trim().to_ascii_lowercase();
    let factor = match t.as_str() {
        "fast" | "max" => return Ok(Pacing::AsFastAsPossible),
        "original" | "1x" | "100%" => return Ok(Pacing::Original),
        _ => t
            .strip_suffix('%')
            .and_then(|p| p.parse::<f64>().ok().map(|p| p / 100.0))
            .or_else(|| t.strip_suffix('x').and_then(|x| x.parse::<f64>().ok())),
    };
    match factor {
        Some(f) if f.is_finite() && f > 0.0 => Ok(Pacing::Multiple(f)),
        _ => Err(format!("`{text}` is not fast, original, N% or Nx")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_config_parses_with_its_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/vxtap.toml");
        let common = CommonArgs { config: Some(path), ..CommonArgs::default() };
        let s = resolve(&common, None, None, false).unwrap();
        let defaults = resolve(&CommonArgs::default(), None, None, false).unwrap();
        assert_eq!(format!("{s:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("fast"), Ok(Pacing::AsFastAsPossible));
        assert_eq!(parse_speed("original"), Ok(Pacing::Original));
        assert_eq!(parse_speed("200%"), Ok(Pacing::Multiple(2.0)));
        assert_eq!(parse_speed("0.5x"), Ok(Pacing::Multiple(0.5)));
        assert!(parse_speed("0%").is_err());
        assert!(parse_speed("warp").is_err());
    }

    #[test]
    fn replay_options() {
        let common = CommonArgs {
            replay: Some("http://127.0.0.1:1".into()),
            replay_omit: Some(vec!["X-Request-ID".into()]),
            ..CommonArgs::default()
        };
        let s = resolve(&common, None, Some("200%"), false).unwrap();
        let replay = s.replay.unwrap();
        assert!(!replay.headers.request_id && replay.headers.forwarded_for);
        assert_eq!(replay.pacing, Pacing::Multiple(2.0));
        let bad = CommonArgs { replay_omit: Some(vec!["x-nope".into()]), ..common };
        assert!(resolve(&bad, None, None, false).unwrap_err().to_string().contains("x-nope"));
        assert!(resolve(&CommonArgs::default(), None, Some("2x"), false).is_err(), "--speed needs --replay");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("500kb"), Ok(500_000));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("12 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn file_is_merged_under_flags_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "workers = 3\nbody_limit = \"2MiB\"\nvni = [7]\n[listen]\nudp = \"off\"\n")
            .unwrap();
        let common = CommonArgs { config: Some(path.clone()), workers: Some(1), ..CommonArgs::default() };
        let s = resolve(&common, None, None, true).unwrap();
        assert_eq!(s.engine.workers, 1);
        assert_eq!(s.engine.http.body_limit, 2 << 20);
        assert_eq!(s.engine.decap.vnis, vec![7]);
        assert_eq!(s.udp, None);
        assert_eq!(s.recv_buffer, UdpOptions::default().recv_buffer_bytes);
        std::fs::write(&path, "[listen]\nrecv_buffer = \"8MiB\"\n").unwrap();
        assert_eq!(resolve(&common, None, None, true).unwrap().recv_buffer, 8 << 20);
        let flag = ListenArgs { recv_buffer: Some(16 << 20), ..ListenArgs::default() };
        assert_eq!(resolve(&common, Some(&flag), None, true).unwrap().recv_buffer, 16 << 20);
        std::fs::write(&path, "wokers = 3\n").unwrap();
        let err = resolve(&common, None, None, true).unwrap_err().to_string();
        assert!(err.contains("wokers"), "{err}");
        std::fs::write(&path, "memcap = \"lots\"\n").unwrap();
        assert!(resolve(&common, None, None, true).is_err());
    }
}
