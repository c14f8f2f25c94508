#!/usr/bin/env bash
# Live benchmark: `tcpreplay --topspeed` of the benchmark mirror pcap (scripts/bench-pcap.sh) over a
# veth pair into `vxtap listen` in another network namespace, as a mirror NLB would deliver it. Prints
# what each layer took in or dropped (tcpreplay, the veth, the UDP socket, vxtap's queues) and scores
# the events against the requests in the pcap. Root only; traffic stays inside the two namespaces.
#   scripts/live-bench.sh [CONNECTIONS] [--check] [-- extra `vxtap listen` arguments]
# --check: exit 1 unless no frame was lost anywhere and every request came out exact (the test suite
# runs it this way on a small pcap).
# Env: BENCH_DIR (default target/bench), MBPS (tcpreplay --mbps instead of --topspeed), LOOPS (1),
# PIN=1 (tcpreplay on CPU 0, vxtap on CPU 1: vxtap gets exactly one core, tcpreplay the other).
set -euo pipefail
cd "$(dirname "$0")/.."
connections=22222
check=0
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
        --check) check=1 ;;
        *) connections=$1 ;;
    esac
    shift
done
[ "${1:-}" = "--" ] && shift
[ "$(id -u)" -eq 0 ] || { echo "live-bench: needs root (network namespaces)" >&2; exit 1; }
if ! command -v tcpreplay >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpreplay >/dev/null
fi
out=${BENCH_DIR:-target/bench}
pcap=$(scripts/bench-pcap.sh "$connections")
expected="$out/mix-$connections.jsonl"
events="$out/live-events.jsonl"
rm -f "$events"

tx="vxlb-$$-tx"
rx="vxlb-$$-rx"
vxtap_pid=""
cleanup() {
    [ -n "$vxtap_pid" ] && kill "$vxtap_pid" 2>/dev/null && wait "$vxtap_pid" 2>/dev/null
    ip netns del "$tx" 2>/dev/null || true
    ip netns del "$rx" 2>/dev/null || true
}
trap cleanup EXIT

# The generated frames go from 02:00:00:00:00:01 to 02:00:00:00:00:02, outer 10.200.0.x → 10.201.0.10.
ip netns add "$tx"
ip netns add "$rx"
ip link add lbt0 netns "$tx" type veth peer name lbt1 netns "$rx"
ip -n "$tx" link set lbt0 mtu 9100 up
ip -n "$rx" link set lbt1 address 02:00:00:00:00:02 mtu 9100 up
ip -n "$rx" link set lo up
ip -n "$rx" addr add 10.201.0.10/16 dev lbt1
ip netns exec "$rx" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.lbt1.rp_filter=0

pin_rx=(); pin_tx=()
[ "${PIN:-0}" = 1 ] && pin_rx=(taskset -c 1) && pin_tx=(taskset -c 0)
ip netns exec "$rx" "${pin_rx[@]}" target/release/vxtap listen --udp 0.0.0.0:4789 --events "$events" \
    --health 127.0.0.1:9445 --drain-timeout 120 --log-format json "$@" 2> "$out/live-stderr" &
vxtap_pid=$!
metrics() { ip netns exec "$rx" curl -s --max-time 2 http://127.0.0.1:9445/metrics; }
sum_metric() { # the sum of every series of metric $1 in the Prometheus text on stdin
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
metric() { metrics | sum_metric "$1"; }
for _ in $(seq 100); do
    ip netns exec "$rx" curl -sf --max-time 1 http://127.0.0.1:9445/-/ping >/dev/null && break
    sleep 0.1
done

frames=$(capinfos -c -M "$pcap" 2>/dev/null | awk "/Number of packets/ { print \$NF }")
rate=(--topspeed)
[ -n "${MBPS:-}" ] && rate=(--mbps "$MBPS")
ip netns exec "$tx" "${pin_tx[@]}" tcpreplay -i lbt0 -K "${rate[@]}" --loop "${LOOPS:-1}" "$pcap" > "$out/tcpreplay.txt" 2>&1
# Wait until vxtap has taken in everything the socket holds (its packet counter stops moving).
last=-1
for _ in $(seq 600); do
    now=$(metric vxtap_packets_total)
    [ "$now" = "$last" ] && break
    last=$now
    sleep 1
done
metrics > "$out/live-metrics.txt"
kill -TERM "$vxtap_pid"
wait "$vxtap_pid" || true
vxtap_pid=""

sent=$(awk '/Actual:/ { print $2; exit }' "$out/tcpreplay.txt")
pps=$(grep -o '[0-9.]* pps' "$out/tcpreplay.txt" | head -1)
mbps=$(grep -o '[0-9.]* Mbps' "$out/tcpreplay.txt" | head -1)
veth_rx=$(ip -n "$rx" -s link show lbt1 2>/dev/null | awk '/RX:/ { getline; print $2 " received, " $4 " dropped" }')
udp=$(ip netns exec "$rx" awk '/^Udp:/ { if (!h) { split($0, k); h = 1 } else { for (i = 2; i <= NF; i++) v[k[i]] = $i } }
    END { print v["InDatagrams"] " in, " v["RcvbufErrors"] " receive-buffer drops, " v["InErrors"] " errors" }' /proc/net/snmp)
m() { sum_metric "$1" < "$out/live-metrics.txt"; }
score=$(target/release/vxtap-testgen score --expected "$expected" --events "$events")
echo "pcap: $pcap ($frames frames, $(wc -l < "$expected") requests), vxtap listen $*"
echo "tcpreplay: $sent frames sent, $pps, $mbps"
echo "veth (rx side): $veth_rx"
echo "kernel UDP (rx namespace): $udp"
echo "vxtap: $(m vxtap_udp_datagrams_total) datagrams, $(m vxtap_udp_kernel_drops_total) socket drops," \
    "$(m vxtap_queue_drops_total) worker-queue drops, $(m vxtap_requests_total) requests"
echo "score: $score"
echo "summary: $(tail -1 "$out/live-stderr")"
if [ "$check" = 1 ]; then
    received=$(m vxtap_udp_datagrams_total)
    perfect=$(echo "$score" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(int(s["exact"] == s["intact"] and s["extra"] == 0))')
    if [ "$sent" != "$frames" ] || [ "$received" != "$frames" ] || [ "$perfect" != 1 ]; then
        echo "live-bench: FAILED: $frames frames in the pcap, $sent sent, $received received; score $score" >&2
        exit 1
    fi
    echo "live-bench: every frame received, every request exact"
fi
