#!/usr/bin/env bash
# Builds vxtap and turns the embedded sample mirror capture (VXLAN, IPv4 and IPv6 connections) into
# EVE JSON events on stdout; the summary line goes to stderr. Installs libpcap-dev when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s libpcap-dev >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "libpcap-dev is missing: run as root, or apt-get install libpcap-dev first" >&2
        exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpcap-dev >/dev/null
fi
exec cargo run --release --quiet -p vxtap -- pcap testdata/sample.pcap "$@"
