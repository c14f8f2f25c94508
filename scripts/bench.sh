#!/usr/bin/env bash
# Whole-pipeline benchmark: generates a mirror pcap of ~100,000 HTTP requests over thousands of
# interleaved connections, runs `vxtap pcap` on it (1 and 2 workers, with and without detection) and
# tshark on the same file, and prints MB/s, requests/s, peak RSS and the ratio to tshark.
#   scripts/bench.sh [CONNECTIONS] [--no-tshark]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-22222}
tshark=1
[ "${2:-}" = "--no-tshark" ] && tshark=0
out=${BENCH_DIR:-target/bench}
mkdir -p "$out"
cargo build --release --quiet -p vxtap -p vxtap-testgen
pcap="$out/mix-$connections.pcap"
if [ ! -f "$pcap" ]; then
    target/release/vxtap-testgen mix --out "$pcap" --expected "$out/mix-$connections.jsonl" \
        --connections "$connections" --seed 42 --conn-gap-us 50 --ipv6 0.2
fi
bytes=$(stat -c %s "$pcap")
requests=$(wc -l < "$out/mix-$connections.jsonl")
cat "$pcap" > /dev/null # page cache: every run reads from memory

run() { # label, command...
    local label=$1; shift
    local best=""
    for _ in 1 2 3; do
        /usr/bin/time -f "%e %M" -o "$out/time" "$@" > "$out/events" 2> "$out/stderr"
        read -r wall rss < "$out/time"
        if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$wall; best_rss=$rss; fi
    done
    local found
    found=$(grep -c '"event_type":"http"' "$out/events" || true)
    awk -v l="$label" -v w="$best" -v r="$best_rss" -v b="$bytes" -v q="$requests" -v f="$found" 'BEGIN{
        printf "| %-28s | %8.3f | %9.1f | %10.0f | %8.1f | %6d / %d |\n", l, w, b/w/1e6, q/w, r/1024, f, q }'
    echo "$best" > "$out/wall-$label"
}

echo "file: $pcap, $((bytes / 1000000)) MB, $requests requests, $(nproc) cores"
echo "| run                          |   wall s |      MB/s | requests/s | peak MiB | events |"
echo "|---|---|---|---|---|---|"
run "vxtap 1 worker"            target/release/vxtap pcap "$pcap" --workers 1
run "vxtap 2 workers"           target/release/vxtap pcap "$pcap" --workers 2
run "vxtap 1 worker no-detect"  target/release/vxtap pcap "$pcap" --workers 1 --no-detect
run "vxtap 2 workers no-detect" target/release/vxtap pcap "$pcap" --workers 2 --no-detect
if [ "$tshark" = 1 ] && command -v tshark >/dev/null; then
    /usr/bin/time -f "%e %M" -o "$out/time" tshark -r "$pcap" -Y http.request -T fields \
        -e http.request.method -e http.request.uri > "$out/tshark" 2>/dev/null
    read -r twall trss < "$out/time"
    tfound=$(wc -l < "$out/tshark")
    awk -v w="$twall" -v r="$trss" -v b="$bytes" -v q="$requests" -v f="$tfound" 'BEGIN{
        printf "| %-28s | %8.3f | %9.1f | %10.0f | %8.1f | %6d / %d |\n", "tshark", w, b/w/1e6, q/w, r/1024, f, q }'
    for label in "vxtap 1 worker" "vxtap 1 worker no-detect"; do
        awk -v t="$twall" -v v="$(cat "$out/wall-$label")" -v l="$label" 'BEGIN{ printf "ratio tshark / %s: %.0fx\n", l, t/v }'
    done
fi
