#!/usr/bin/env bash
# How vxtap's cost grows with the number of concurrent flows: for each count, a generated mirror pcap
# whose connections all start within the first second and stay open 1.5 s (so they are all open at
# once; about 100,000 small requests in all), run through `vxtap pcap --workers 1 --no-detect`: CPU per frame and per request, peak
# RSS, flows evicted, and the score of the events.
#   scripts/scale-bench.sh [COUNT...]      (default: 1000 100000 1000000)
# Env: BENCH_DIR (default target/bench), VXTAP_ARGS (more `vxtap pcap` arguments, e.g. --memcap 4GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-target/bench}
mkdir -p "$out"
cargo build --release --quiet -p vxtap -p vxtap-testgen
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 100000 1000000)
echo "| concurrent flows | frames | pcap MB | CPU s | ns/frame | µs/request | peak RSS MiB | evicted | exact / sent |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in "${counts[@]}"; do
    pcap="$out/scale-$n.pcap"
    expected="$out/scale-$n.jsonl"
    if [ ! -f "$pcap" ]; then
        # Starts spread over one second, each connection held open 1.5 s after its exchanges: all
        # open at once. About 100,000 requests in every file (at least one per connection).
        gap=$(( 1000000 / n )); [ "$gap" -ge 1 ] || gap=1
        per_conn=$(( 100000 / n )); [ "$per_conn" -ge 1 ] || per_conn=1
        target/release/vxtap-testgen mix --out "$pcap.tmp" --expected "$expected" --connections "$n" \
            --requests-per-conn "$per_conn" --conn-gap-us "$gap" --hold-us 1500000 --body-max 2000 --large-bodies 0 --seed 7 2>/dev/null
        mv "$pcap.tmp" "$pcap"
    fi
    # shellcheck disable=SC2086
    /usr/bin/time -f "%U %S %M" -o "$out/scale-time" target/release/vxtap pcap "$pcap" --workers 1 --no-detect \
        --events "$out/scale-events.jsonl" ${VXTAP_ARGS:-} 2> "$out/scale-stderr"
    read -r user sys rss < "$out/scale-time"
    summary=$(tail -1 "$out/scale-stderr")
    frames=$(echo "$summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["packets"])')
    evicted=$(echo "$summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["flows_evicted"])')
    score=$(target/release/vxtap-testgen score --expected "$expected" --events "$out/scale-events.jsonl" \
        | python3 -c 'import json,sys; s=json.load(sys.stdin); print("%d / %d" % (s["exact"], s["intact"]))')
    requests=$(wc -l < "$expected")
    awk -v n="$n" -v f="$frames" -v b="$(stat -c %s "$pcap")" -v u="$user" -v s="$sys" -v r="$rss" -v q="$requests" \
        -v e="$evicted" -v sc="$score" 'BEGIN{ c = u + s;
        printf "| %d | %d | %.0f | %.2f | %.0f | %.2f | %.0f | %d | %s |\n", n, f, b/1e6, c, c*1e9/f, c*1e6/q, r/1024, e, sc }'
    rm -f "$out/scale-events.jsonl"
done
