#!/usr/bin/env bash
# Profiles `vxtap pcap` on the benchmark pcap with linux-perf (DWARF call stacks) and draws a
# flamegraph of each run with inferno; prints where the time goes, by whole subtrees.
#   scripts/profile.sh [CONNECTIONS] [-- extra vxtap arguments]
# Writes target/profile/{detect,no-detect}.{folded,svg}. Installs linux-perf (apt) and inferno
# (cargo) when missing. Needs perf_event_paranoid <= 1 or root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/page-cache.sh
connections=22222
if [ $# -gt 0 ] && [ "$1" != "--" ]; then connections=$1; shift; fi
[ "${1:-}" = "--" ] && shift
out=target/profile
mkdir -p "$out"

if ! command -v perf >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
if ! command -v inferno-flamegraph >/dev/null; then
    cargo install --quiet --locked inferno
fi
pcap=$(scripts/bench-pcap.sh "$connections")
load_into_page_cache "$pcap" # the profile is of vxtap, not of the disk

for mode in detect no-detect; do
    args=()
    [ "$mode" = no-detect ] && args=(--no-detect)
    perf record --quiet -o "$out/$mode.data" -F 1999 --call-graph dwarf,32768 \
        target/release/vxtap pcap "$pcap" "${args[@]}" "$@" > /dev/null 2> "$out/$mode.stderr"
    perf script -i "$out/$mode.data" 2> /dev/null | inferno-collapse-perf > "$out/$mode.folded"
    rm -f "$out/$mode.data"
    inferno-flamegraph --minwidth 0.1 --title "vxtap pcap ($mode), $connections connections" \
        < "$out/$mode.folded" > "$out/$mode.svg"
    echo "== $mode: $out/$mode.svg; share of all samples, each function with everything it calls"
    python3 - "$out/$mode.folded" <<'PY'
import sys
from collections import Counter
within, total = Counter(), 0
for line in open(sys.argv[1]):
    stack, count = line.rsplit(" ", 1)
    count = int(count)
    total += count
    frames = stack.split(";")
    within[frames[0]] += count  # the thread
    for name in set(frames[1:]):
        within[name] += count
wanted = ("vxtap", "regex", "aho_corasick", "libinjection", "memcpy", "memmove", "malloc", "free",
          "rjem", "_copy_to_iter", "copy_folio", "page_fault", "hashbrown", "base64")
for name, count in within.most_common():
    share = 100 * count / total
    if share < 1.5:
        break
    if name.startswith("vxtap-") or name == "vxtap" or (
            any(w in name for w in wanted) and "{closure" not in name and "closure_env" not in name):
        print(f"{share:5.1f}%  {name[:120]}")
PY
done
