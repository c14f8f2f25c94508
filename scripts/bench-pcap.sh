#!/usr/bin/env bash
# Builds vxtap and vxtap-testgen (release) and generates the benchmarks' mirror pcap once: VXLAN,
# CONNECTIONS interleaved IPv4/IPv6 keep-alive connections (default 22,222: about 100,000 requests,
# bodies up to 300 KB), with the expected requests beside it. Prints the pcap's path.
#   scripts/bench-pcap.sh [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-22222}
out=${BENCH_DIR:-target/bench}
mkdir -p "$out"
cargo build --release --quiet -p vxtap -p vxtap-testgen >&2
pcap="$out/mix-$connections.pcap"
if [ ! -f "$pcap" ]; then
    target/release/vxtap-testgen mix --out "$pcap.tmp" --expected "$out/mix-$connections.jsonl" \
        --connections "$connections" --seed 42 --conn-gap-us 50 --ipv6 0.2 >&2
    mv "$pcap.tmp" "$pcap"
fi
echo "$pcap"
