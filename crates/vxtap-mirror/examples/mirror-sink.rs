//! A stand-alone HTTP mirror target: runs [`vxtap_mirror::MirrorServer`] and prints one JSON line per
//! copy on stdout, until stdin is closed; then prints the counters as one JSON line on stderr.
//!
//! ```text
//! cargo run --release -p vxtap-mirror --example mirror-sink -- \
//!     --listen 127.0.0.1:8445 --trusted-proxies 127.0.0.1/32 [--allow CIDR,…] [--body-limit BYTES] \
//!     [--tls-cert PEM --tls-key PEM] [--threads N] [--body-start-timeout-ms MS] [--body-timeout-ms MS]
//!     [--quiet]
//! ```
//!
//! Each line: `{"method","target","target_b64","protocol","headers":[[name,value],…],"body_b64",
//! "body_len","body_truncated","gap","client","server","peer","hostname","request_id",
//! "addresses_trusted","tls","start_ts","end_ts"}`. `--quiet` prints nothing per copy (benchmarks).
//! This is what `scripts/mirror-lab/` runs until `vxtap listen --http-mirror` exists.

use std::io::{BufWriter, Read, Write};
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use vxtap_mirror::{Cidr, MirrorConfig, MirrorServer, MirroredRequest, TlsFiles};

fn usage(msg: &str) -> ! {
    eprintln!("mirror-sink: {msg}");
    eprintln!(
        "usage: mirror-sink --listen ADDR:PORT [--trusted-proxies CIDR,..] [--allow CIDR,..] \
         [--body-limit BYTES] [--tls-cert PEM --tls-key PEM] [--threads N] [--body-start-timeout-ms MS] [--body-timeout-ms MS] [--quiet]"
    );
    std::process::exit(2)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn line(c: &MirroredRequest) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let r = &c.request;
    json!({
        "method": lossy(&r.method),
        "target": lossy(&r.target),
        "target_b64": b64.encode(&r.target),
        "protocol": lossy(&r.protocol),
        "headers": r.headers.iter().map(|h| [lossy(&h.name), lossy(&h.value)]).collect::<Vec<_>>(),
        "body_b64": b64.encode(&r.body),
        "body_len": r.body_len,
        "body_truncated": r.body_truncated,
        "gap": r.gap,
        "client": c.client.to_string(),
        "server": c.server.to_string(),
        "peer": c.peer.to_string(),
        "hostname": lossy(&c.hostname),
        "request_id": c.request_id.as_deref().map(lossy),
        "addresses_trusted": c.addresses_trusted,
        "tls": c.tls,
        "start_ts": r.start_ts,
        "end_ts": r.end_ts,
    })
}

fn main() {
    let mut cfg = MirrorConfig::new("127.0.0.1:8445".parse().unwrap());
    let (mut cert, mut key, mut quiet) = (None, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--listen" => cfg.listen = value().parse().unwrap_or_else(|e| usage(&format!("--listen: {e}"))),
            "--trusted-proxies" => {
                cfg.trusted_proxies = Cidr::parse_list(&value()).unwrap_or_else(|e| usage(&e.to_string()))
            }
            "--allow" => cfg.allow = Cidr::parse_list(&value()).unwrap_or_else(|e| usage(&e.to_string())),
            "--body-limit" => cfg.body_limit = value().parse().unwrap_or_else(|e| usage(&format!("{e}"))),
            "--threads" => cfg.threads = value().parse().unwrap_or_else(|e| usage(&format!("{e}"))),
            "--body-timeout-ms" => {
                cfg.body_timeout =
                    Duration::from_millis(value().parse().unwrap_or_else(|e| usage(&format!("{e}"))))
            }
            "--body-start-timeout-ms" => {
                cfg.body_start_timeout =
                    Duration::from_millis(value().parse().unwrap_or_else(|e| usage(&format!("{e}"))))
            }
            "--tls-cert" => cert = Some(value()),
            "--tls-key" => key = Some(value()),
            "--quiet" => quiet = true,
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    match (cert, key) {
        (Some(cert), Some(key)) => cfg.tls = Some(TlsFiles { cert: cert.into(), key: key.into() }),
        (None, None) => {}
        _ => usage("--tls-cert and --tls-key go together"),
    }
    for w in cfg.warnings() {
        eprintln!("mirror-sink: warning: {w}");
    }
    let (server, rx) = MirrorServer::start_channel(cfg, 1 << 16).unwrap_or_else(|e| {
        eprintln!("mirror-sink: {e}");
        std::process::exit(1)
    });
    eprintln!("mirror-sink: listening on {}", server.local_addr());
    // Stdin closing is the signal to stop.
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = stop_tx.send(());
    });
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let print = |c: MirroredRequest, out: &mut BufWriter<_>| {
        if !quiet {
            let _ = writeln!(out, "{}", line(&c));
        }
    };
    loop {
        crossbeam_channel::select! {
            recv(rx) -> c => match c {
                Ok(c) => {
                    print(c, &mut out);
                    if rx.is_empty() {
                        let _ = out.flush();
                    }
                }
                Err(_) => break,
            },
            recv(stop_rx) -> _ => break,
        }
    }
    let stats = server.shutdown(Duration::from_secs(2));
    while let Ok(c) = rx.try_recv() {
        print(c, &mut out);
    }
    let _ = out.flush();
    eprintln!(
        "{}",
        json!({"stats": {
            "connections_accepted": stats.connections_accepted,
            "connections_rejected": stats.connections_rejected,
            "tls_handshake_errors": stats.tls_handshake_errors,
            "copies": stats.copies,
            "copies_http10": stats.copies_http10,
            "copies_http11": stats.copies_http11,
            "copies_http2": stats.copies_http2,
            "delivered": stats.delivered,
            "sink_full": stats.sink_full,
            "answered": stats.answered,
            "refused": stats.refused,
            "truncated": stats.truncated,
            "budget_truncated": stats.budget_truncated,
            "body_bytes": stats.body_bytes,
            "header_timeouts": stats.header_timeouts,
            "body_timeouts": stats.body_timeouts,
            "body_incomplete": stats.body_incomplete,
            "head_too_large": stats.head_too_large,
            "parse_errors": stats.parse_errors,
        }})
    );
}
