#!/usr/bin/env bash
# Regenerates the committed sample capture and its expected events. Run after an intended change to
# the generator or the event format, then review the diff of testdata/sample.events.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p vxtap -p vxtap-testgen
target/release/vxtap-testgen mix --out testdata/sample.pcap --expected testdata/sample.expected.jsonl \
    --connections 12 --requests-per-conn 1..4 --ipv6 0.3 --seed 2026 --vni 1377 --body-max 4000
target/release/vxtap pcap testdata/sample.pcap --workers 1 > testdata/sample.events.jsonl
echo "testdata/sample.pcap: $(stat -c %s testdata/sample.pcap) bytes, $(wc -l < testdata/sample.events.jsonl) events"
