#!/usr/bin/env bash
# Whole-pipeline benchmark: generates a mirror pcap of ~100,000 HTTP requests over thousands of
# interleaved connections, runs `vxtap pcap` on it (1 and 2 workers, with and without detection) and
# tshark on the same file, and prints MB/s, requests/s, peak RSS and the ratio to tshark.
#   scripts/bench.sh [CONNECTIONS] [--no-tshark]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/page-cache.sh
connections=${1:-22222}
tshark=1
[ "${2:-}" = "--no-tshark" ] && tshark=0
out=${BENCH_DIR:-target/bench}
pcap=$(scripts/bench-pcap.sh "$connections")
expected="$out/mix-$connections.jsonl"
bytes=$(stat -c %s "$pcap")
requests=$(wc -l < "$expected")
load_into_page_cache "$pcap" # every run reads from memory, the same way

run() { # label, command...
    local label=$1; shift
    local best="" wall rss user sys
    for _ in 1 2 3; do
        /usr/bin/time -f "%e %M %U %S" -o "$out/time" "$@" > "$out/events" 2> "$out/stderr"
        read -r wall rss user sys < "$out/time"
        if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a<b)}'; then
            best=$wall; best_rss=$rss; best_cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')
        fi
    done
    local found
    found=$(target/release/vxtap-testgen score --expected "$expected" --events "$out/events" | python3 -c \
        'import json,sys; s=json.load(sys.stdin); print("%d / %d, %d extra" % (s["exact"], s["intact"], s["extra"]))')
    awk -v l="$label" -v w="$best" -v c="$best_cpu" -v r="$best_rss" -v b="$bytes" -v q="$requests" -v f="$found" 'BEGIN{
        printf "| %-28s | %7.3f | %7.3f | %8.1f | %10.0f | %8.1f | %s |\n", l, w, c, b/w/1e6, q/w, r/1024, f }'
    echo "$best" > "$out/wall-$label"
    echo "$best_cpu" > "$out/cpu-$label"
}

echo "file: $pcap, $((bytes / 1000000)) MB, $requests requests, $(nproc) cores"
echo "| run                          |  wall s |   cpu s | MB/s wall | requests/s | peak MiB | exact / sent, extra |"
echo "|---|---|---|---|---|---|---|"
run "vxtap 1 worker"            target/release/vxtap pcap "$pcap" --workers 1
run "vxtap 2 workers"           target/release/vxtap pcap "$pcap" --workers 2
run "vxtap 1 worker no-detect"  target/release/vxtap pcap "$pcap" --workers 1 --no-detect
run "vxtap 2 workers no-detect" target/release/vxtap pcap "$pcap" --workers 2 --no-detect
if [ "$tshark" = 1 ] && command -v tshark >/dev/null; then
    /usr/bin/time -f "%e %M %U %S" -o "$out/time" tshark -r "$pcap" -Y http.request -T fields \
        -e http.request.method -e http.request.uri > "$out/tshark" 2>/dev/null
    read -r twall trss tuser tsys < "$out/time"
    tcpu=$(awk -v u="$tuser" -v s="$tsys" 'BEGIN{print u+s}')
    tfound=$(wc -l < "$out/tshark")
    awk -v w="$twall" -v c="$tcpu" -v r="$trss" -v b="$bytes" -v q="$requests" -v f="$tfound" 'BEGIN{
        printf "| %-28s | %7.3f | %7.3f | %8.1f | %10.0f | %8.1f | %d requests found |\n", "tshark", w, c, b/w/1e6, q/w, r/1024, f }'
    for label in "vxtap 1 worker" "vxtap 2 workers" "vxtap 1 worker no-detect" "vxtap 2 workers no-detect"; do
        awk -v t="$twall" -v tc="$tcpu" -v v="$(cat "$out/wall-$label")" -v vc="$(cat "$out/cpu-$label")" -v l="$label" \
            'BEGIN{ printf "ratio tshark / %s: %.0fx wall, %.0fx CPU\n", l, t/v, tc/vc }'
    done
fi
