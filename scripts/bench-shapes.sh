#!/usr/bin/env bash
# The ratio to tshark on traffic of other shapes than the benchmark pcap's: for each shape, a mirror
# pcap generated with SEED (a seed no earlier run used gives files vxtap was never tuned on), tshark
# once and `vxtap pcap` RUNS times with and without the detector (median wall time, to the
# millisecond), all in the same run; then the score of vxtap's events against the generator's list.
#   scripts/bench-shapes.sh [SEED] [RUNS]      (default: 91, 5)
# Env: BENCH_DIR (default target/bench); the files go to $BENCH_DIR/shapes-SEED and are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/page-cache.sh
seed=${1:-91}
runs=${2:-5}
[ "$runs" -ge 1 ] 2> /dev/null || { echo "bench-shapes: RUNS must be a number from 1" >&2; exit 1; }
out=${BENCH_DIR:-target/bench}/shapes-$seed
mkdir -p "$out"
command -v tshark >/dev/null || { echo "bench-shapes: needs tshark (apt-get install tshark)" >&2; exit 1; }
cargo build --release --quiet -p vxtap -p vxtap-testgen

# name: vxtap-testgen mix options. The first three are of the benchmark's kind (~100,000 requests
# over thousands of interleaved connections), the last two smaller.
shapes=(
    "reorder-ipv6: --connections 20000 --conn-gap-us 50 --reorder 0.01 --ipv6 0.5"
    "geneve-chunked: --connections 24000 --conn-gap-us 50 --encap geneve --chunked 0.3 --pipelined 0.2"
    "client-only: --connections 22000 --conn-gap-us 50 --client-only --dup 0.01"
    "small-reorder: --connections 5000 --reorder 0.02 --dup 0.01"
    "large-bodies: --connections 5000 --large-bodies 0.2 --mss 536"
)

millis() { date +%s%3N; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
vxtap_median() { # pcap, extra arguments...: median wall ms of `runs` runs (the lower middle one when
    # even); events of the last in $out/events; a failed run ends the script
    local pcap=$1; shift
    for _ in $(seq "$runs"); do
        # the previous run's events are deleted untimed: the shell's truncation would free their
        # page cache inside the timed run
        rm -f "$out/events"
        local start; start=$(millis)
        if ! target/release/vxtap pcap "$pcap" "$@" > "$out/events" 2> "$out/stderr"; then
            echo "bench-shapes: vxtap pcap $pcap $* failed:" >&2
            tail -5 "$out/stderr" >&2
            exit 1
        fi
        echo $(($(millis) - start))
    done | median
}

echo "seed $seed, $runs vxtap runs each, $(nproc) cores"
echo "| shape | MB | requests | tshark s | vxtap s, ratio | --no-detect s, ratio | exact / intact, extra |"
echo "|---|---|---|---|---|---|---|"
for shape in "${shapes[@]}"; do
    name=${shape%%:*}
    read -r -a options <<< "${shape#*:}"
    pcap=$out/$name.pcap
    expected=$out/$name.jsonl
    if [ ! -f "$pcap" ]; then
        target/release/vxtap-testgen mix --out "$pcap.tmp" --expected "$expected" --seed "$seed" \
            "${options[@]}" 2> /dev/null
        mv "$pcap.tmp" "$pcap"
    fi
    load_into_page_cache "$pcap" # every run reads from memory, the same way
    rm -f "$out/tshark"
    start=$(millis)
    # to a file, as vxtap's events go to one (and as in bench.sh)
    tshark -r "$pcap" -Y http.request -T fields -e http.request.method -e http.request.uri \
        > "$out/tshark" 2> /dev/null
    tshark_ms=$(($(millis) - start))
    plain_ms=$(vxtap_median "$pcap" --no-detect)
    detect_ms=$(vxtap_median "$pcap")
    score=$(target/release/vxtap-testgen score --expected "$expected" --events "$out/events" | python3 -c \
        'import json,sys; s=json.load(sys.stdin); print("%d / %d, %d" % (s["exact"], s["intact"], s["extra"]))')
    awk -v n="$name" -v b="$(stat -c %s "$pcap")" -v q="$(wc -l < "$expected")" -v t="$tshark_ms" \
        -v d="$detect_ms" -v p="$plain_ms" -v s="$score" 'BEGIN {
        printf "| %s | %.0f | %d | %.2f | %.3f, %.0fx | %.3f, %.0fx | %s |\n",
            n, b / 1e6, q, t / 1000, d / 1000, t / d, p / 1000, t / p, s }'
done
