#!/usr/bin/env bash
# vxtap end-to-end lab: real HTTP through nginx in network namespaces, mirrored with tc into a kernel
# VXLAN device (VNI 1377, UDP 4789, MTU 9001), received by vxtap in a third namespace.
#
#   cli (client, lab.py) --veth c0|s0 MTU 1500--> srv (nginx :80, tc mirred ingress+egress of s0 -> vx0)
#   srv vx0 (vxlan 1377) --veth t0|t1 MTU 9100--> tap (vxtap listen --udp 0.0.0.0:4789; dumpcap)
#
# Usage (from the repo root, as root):
#   scripts/lab/run.sh [--vxtap PATH] [--out DIR] [--plumbing] [--no-capture] [--mtu N]
#                      [--cases a,b,c] [--keep-out] [-- extra vxtap listen args]
#   --vxtap PATH   vxtap binary (default: $VXTAP, else <repo>/target/release/vxtap)
#   --plumbing     no vxtap: check with tshark that every client byte reaches the tap namespace
#   --no-capture   do not record the mirrored VXLAN stream to $OUT/mirror.pcapng
#   --mtu N        MTU of the cli<->srv link (default 1500; up to 9001 for jumbo inner frames)
#   --cases LIST   client cases (default all; see `lab.py client --help`)
#   --one-way      mirror only client->server frames (s0 ingress), as a mirror filter or an NLB
#                  splitting directions would: requests must still come out, without responses
#   --out DIR      where sent.jsonl, events.jsonl, logs and the capture go (default: a temp dir,
#                  removed on success unless --keep-out)
# Environment: VXTAP, VXTAP_ARGS (extra listen args), LAB_ID (namespace prefix, default: PID).
# Exit 0 only if every check passes. Namespaces and processes are removed on any exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB="$HERE/lab.py"
ROOT="$(cd "$HERE/../.." && pwd)"
VXTAP="${VXTAP:-$ROOT/target/release/vxtap}"
OUT=""
PLUMBING=0
CAPTURE=1
MTU=1500
CASES=all
KEEP=0
ONEWAY=0
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --vxtap) VXTAP="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --plumbing) PLUMBING=1; shift ;;
        --no-capture) CAPTURE=0; shift ;;
        --mtu) MTU="$2"; shift 2 ;;
        --cases) CASES="$2"; shift 2 ;;
        --keep-out) KEEP=1; shift ;;
        --one-way) ONEWAY=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then echo "run.sh: needs root (network namespaces)" >&2; exit 2; fi
if [ "$MTU" -gt 9001 ] || [ "$MTU" -lt 1280 ]; then echo "run.sh: --mtu 1280..9001" >&2; exit 2; fi
if [ "$PLUMBING" = 0 ] && [ ! -x "$VXTAP" ]; then
    echo "run.sh: no vxtap binary at $VXTAP (cargo build --release, or --vxtap PATH, or --plumbing)" >&2
    exit 2
fi
for tool in ip tc nginx python3 timeout; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 2; }
done
if [ "$CAPTURE" = 1 ] || [ "$PLUMBING" = 1 ]; then
    command -v dumpcap >/dev/null || { echo "run.sh: dumpcap not found (or use --no-capture)" >&2; exit 2; }
fi

ID="${LAB_ID:-$$}"
NS_C="vxlab-$ID-cli"; NS_S="vxlab-$ID-srv"; NS_T="vxlab-$ID-tap"
# addresses exist only inside these namespaces
SRV4=10.77.1.1; CLI4=10.77.1.2; SRV6=fd00:77:1::1; CLI6=fd00:77:1::2
UND_S=10.77.2.1; UND_T=10.77.2.2
VNI=1377
HEALTH=127.0.0.1:9445   # inside the tap namespace: its own loopback, no clash between runs
DRAIN=10

if [ -z "$OUT" ]; then OUT="$(mktemp -d /tmp/vxlab.XXXXXX)"; AUTO_OUT=1; else AUTO_OUT=0; fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT"/{sent,conns,sent-hold,conns-hold,events}.jsonl "$OUT"/mirror.pcapng "$OUT"/release \
      "$OUT"/ready
NGX="$OUT/nginx"
PIDS=()   # every process we start, by PID
RESULT=1

log() { printf '[lab %s] %s\n' "$(date +%T)" "$*" >&2; }
# (never background nse: $! must be the real process, so that stopping it by PID works)
nse() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

alive() {  # alive PID: running and not a zombie
    local st
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    st="${st##*) }"
    [ "${st%% *}" != Z ]
}

stop_pid() {  # stop_pid PID [grace seconds]: TERM, wait, then KILL; reaps it if it is our child
    local pid="$1" grace="${2:-3}" i
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 20; i++)); do alive "$pid" || break; sleep 0.05; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid ns
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 2; done
    for ns in "$NS_C" "$NS_S" "$NS_T"; do
        # anything still running inside our own namespaces was started by this script
        for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid" 1; done
        ip netns del "$ns" 2>/dev/null
    done
    if [ "$RESULT" = 0 ] && [ "$AUTO_OUT" = 1 ] && [ "$KEEP" = 0 ]; then
        rm -rf "$OUT"
    else
        log "artifacts kept in $OUT"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- topology
setup_net() {
    local ns
    for ns in "$NS_C" "$NS_S" "$NS_T"; do
        if ip netns list | grep -qw "$ns"; then log "namespace $ns exists (LAB_ID clash?)"; exit 2; fi
    done
    ip netns add "$NS_C"; ip netns add "$NS_S"; ip netns add "$NS_T"
    for ns in "$NS_C" "$NS_S" "$NS_T"; do ip -n "$ns" link set lo up; done
    # client <-> server: normal MTU, so TCP segments are real-size
    ip -n "$NS_S" link add s0 mtu "$MTU" type veth peer name c0 netns "$NS_C" mtu "$MTU"
    ip -n "$NS_S" addr add "$SRV4/24" dev s0
    ip -n "$NS_S" addr add "$SRV6/64" dev s0 nodad
    ip -n "$NS_C" addr add "$CLI4/24" dev c0
    ip -n "$NS_C" addr add "$CLI6/64" dev c0 nodad
    # server <-> tap: the VXLAN underlay, room for a 9001-byte inner packet plus 50 bytes of VXLAN
    ip -n "$NS_S" link add t0 mtu 9100 type veth peer name t1 netns "$NS_T" mtu 9100
    ip -n "$NS_S" addr add "$UND_S/24" dev t0
    ip -n "$NS_T" addr add "$UND_T/24" dev t1
    ip -n "$NS_S" link add vx0 type vxlan id "$VNI" remote "$UND_T" local "$UND_S" dstport 4789 \
        dev t0 nolearning
    ip -n "$NS_S" link set vx0 mtu 9001
    # no segmentation offloads: what reaches the mirror is what a NIC would put on the wire
    # (without this the mirror carries 64 KB GSO super-frames, which AWS never sends)
    nse "$NS_C" python3 "$LAB" offload-off c0
    nse "$NS_S" python3 "$LAB" offload-off s0 t0 vx0
    nse "$NS_T" python3 "$LAB" offload-off t1
    ip -n "$NS_S" link set s0 up; ip -n "$NS_C" link set c0 up
    ip -n "$NS_S" link set t0 up; ip -n "$NS_T" link set t1 up; ip -n "$NS_S" link set vx0 up
    # mirror every frame of s0, both directions, IPv4 and IPv6 alike (protocol all)
    tc -n "$NS_S" qdisc add dev s0 clsact
    tc -n "$NS_S" filter add dev s0 ingress protocol all u32 match u32 0 0 \
        action mirred egress mirror dev vx0
    if [ "$ONEWAY" = 0 ]; then
        tc -n "$NS_S" filter add dev s0 egress protocol all u32 match u32 0 0 \
            action mirred egress mirror dev vx0
    fi
    # static neighbours: no ARP/NDP round trips or queued first packets
    local mac_s0 mac_c0 mac_t1
    mac_s0="$(nse "$NS_S" cat /sys/class/net/s0/address)"
    mac_c0="$(nse "$NS_C" cat /sys/class/net/c0/address)"
    mac_t1="$(nse "$NS_T" cat /sys/class/net/t1/address)"
    ip -n "$NS_S" neigh replace "$UND_T" lladdr "$mac_t1" dev t0 nud permanent
    ip -n "$NS_S" neigh replace "$CLI4" lladdr "$mac_c0" dev s0 nud permanent
    ip -n "$NS_S" neigh replace "$CLI6" lladdr "$mac_c0" dev s0 nud permanent
    ip -n "$NS_C" neigh replace "$SRV4" lladdr "$mac_s0" dev c0 nud permanent
    ip -n "$NS_C" neigh replace "$SRV6" lladdr "$mac_s0" dev c0 nud permanent
}

# ---------------------------------------------------------------- nginx
start_nginx() {
    mkdir -p "$NGX"/{body,proxy,fastcgi,uwsgi,scgi,logs}
    cat >"$NGX/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log notice;
events { worker_connections 1024; }
http {
    default_type text/plain;
    access_log $NGX/logs/access.log;
    client_body_temp_path $NGX/body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    client_max_body_size 10m;
    client_body_buffer_size 64k;
    large_client_header_buffers 4 16k;
    keepalive_requests 1000;
    keepalive_timeout 60s;
    server {
        listen 80;
        listen [::]:80 ipv6only=on;
        server_name _;
        # proxy_pass makes nginx read the whole body (and send 100 Continue) before answering;
        # the backend reports the length it got, which the client checks
        location / {
            proxy_pass http://127.0.0.1:8081;
            proxy_set_header Host \$host;
        }
    }
    server {
        listen 127.0.0.1:8081;
        location / { return 200 "ok m=\$request_method len=\$content_length\n"; }
    }
}
EOF
    ip netns exec "$NS_S" nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" \
        >"$NGX/logs/stdout.log" 2>&1 &
    PIDS+=($!)
    NGINX_PID=$!
    # probe over loopback (not mirrored), so no lab traffic is seen before the cases start
    if ! nse "$NS_S" python3 "$LAB" wait-tcp 127.0.0.1:80 '[::1]:80' --timeout 10; then
        log "nginx did not start:"; cat "$NGX/logs/error.log" >&2; exit 1
    fi
}

# ---------------------------------------------------------------- capture
start_capture() {
    [ "$CAPTURE" = 1 ] || return 0
    ip netns exec "$NS_T" dumpcap -q -B 128 -i t1 -f "udp port 4789" -s 0 -w "$OUT/mirror.pcapng" \
        >"$OUT/dumpcap.log" 2>&1 &
    PIDS+=($!)
    CAP_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$OUT/mirror.pcapng" ] && return 0
        alive "$CAP_PID" || break
        sleep 0.05
    done
    log "dumpcap did not start"; cat "$OUT/dumpcap.log" >&2; exit 1
}

stop_capture() {
    [ "$CAPTURE" = 1 ] || return 0
    sleep 0.3
    stop_pid "$CAP_PID" 5
    CAP_DROPS="$(sed -n 's|.*received/dropped on interface [^:]*: [0-9]*/\([0-9]*\).*|\1|p' "$OUT/dumpcap.log")"
    if [ -n "$CAP_DROPS" ] && [ "$CAP_DROPS" != 0 ]; then
        log "warning: dumpcap dropped $CAP_DROPS packets: mirror.pcapng is incomplete"
    fi
}

# ---------------------------------------------------------------- vxtap
start_vxtap() {
    VXTAP="$(cd "$(dirname "$VXTAP")" && pwd)/$(basename "$VXTAP")"
    # shellcheck disable=SC2206
    local env_extra=(${VXTAP_ARGS:-})
    local args=(listen --udp 0.0.0.0:4789 --events "$OUT/events.jsonl" --health "$HEALTH"
                --vni "$VNI" --body-limit 16MiB --drain-timeout "$DRAIN"
                "${env_extra[@]}" "${EXTRA[@]}")
    echo "$VXTAP ${args[*]}" >"$OUT/vxtap.cmd"
    ip netns exec "$NS_T" env RUST_BACKTRACE=1 "$VXTAP" "${args[@]}" >"$OUT/vxtap.stdout" 2>"$OUT/vxtap.stderr" &
    VXTAP_PID=$!
    PIDS+=("$VXTAP_PID")
    if ! nse "$NS_T" python3 "$LAB" wait-http "$HEALTH" /-/ping --timeout 15 --status 200 >/dev/null; then
        log "vxtap health $HEALTH/-/ping did not answer; stderr:"; tail -20 "$OUT/vxtap.stderr" >&2
        exit 1
    fi
    if ! alive "$VXTAP_PID"; then log "vxtap exited early"; tail -20 "$OUT/vxtap.stderr" >&2; exit 1; fi
    log "vxtap up (pid $VXTAP_PID): $(cat "$OUT/vxtap.cmd")"
}

stop_vxtap() {  # SIGTERM: vxtap drains open flows and must exit 0 within --drain-timeout
    local i rc
    nse "$NS_T" python3 "$LAB" wait-http "$HEALTH" /metrics --timeout 3 --print \
        >"$OUT/metrics.txt" 2>/dev/null || log "warning: GET /metrics failed"
    kill -TERM "$VXTAP_PID"
    for ((i = 0; i < (DRAIN + 5) * 20; i++)); do
        alive "$VXTAP_PID" || break
        sleep 0.05
    done
    if alive "$VXTAP_PID"; then
        log "FAIL: vxtap still running $((DRAIN + 5))s after SIGTERM; killing"
        kill -KILL "$VXTAP_PID" 2>/dev/null || true
        VXTAP_RC=137
    fi
    set +e; wait "$VXTAP_PID"; rc=$?; set -e
    VXTAP_RC="${VXTAP_RC:-$rc}"
    log "vxtap exited with $VXTAP_RC; summary: $(tail -1 "$OUT/vxtap.stderr" | cut -c1-400)"
}

# ---------------------------------------------------------------- main
T0=$(date +%s)
log "lab $ID: out=$OUT mtu=$MTU mode=$([ "$PLUMBING" = 1 ] && echo plumbing || echo vxtap)$([ "$ONEWAY" = 1 ] && echo ' one-way')"
setup_net
start_nginx
start_capture
[ "$PLUMBING" = 1 ] || start_vxtap
UDP_BEFORE="$(nse "$NS_T" python3 "$LAB" udp-drops)"

# a connection that stays open across SIGTERM: its requests must come out of the drain
ip netns exec "$NS_C" python3 "$LAB" hold --out "$OUT" --v4 "$SRV4" --ready "$OUT/ready" \
    --release "$OUT/release" --max-hold 60 >"$OUT/hold.log" 2>&1 &
HOLD_PID=$!; PIDS+=("$HOLD_PID")

CLIENT_RC=0
# in the background so that a signal to this script is handled at once
ip netns exec "$NS_C" timeout 120 python3 "$LAB" client --out "$OUT" --v4 "$SRV4" --v6 "$SRV6" \
    --cases "$CASES" >"$OUT/client.log" 2>&1 &
CLIENT_PID=$!; PIDS+=("$CLIENT_PID")
wait "$CLIENT_PID" || CLIENT_RC=$?
cat "$OUT/client.log" >&2
for ((i = 0; i < 100; i++)); do [ -e "$OUT/ready" ] && break; sleep 0.05; done
[ -e "$OUT/ready" ] || { log "hold client not ready"; CLIENT_RC=1; }
sleep 1   # let the last mirrored packets arrive

UDP_AFTER="$(nse "$NS_T" python3 "$LAB" udp-drops)"
log "tap UDP counters before: $UDP_BEFORE"
log "tap UDP counters after:  $UDP_AFTER"

VXTAP_RC=""
CHECK_RC=0
if [ "$PLUMBING" = 1 ]; then
    touch "$OUT/release"; set +e; wait "$HOLD_PID"; set -e
    stop_capture
    SENT=(--sent "$OUT/sent.jsonl"); CONNS=(--conns "$OUT/conns.jsonl")
    [ -s "$OUT/sent-hold.jsonl" ] && SENT+=(--sent "$OUT/sent-hold.jsonl")
    [ -s "$OUT/conns-hold.jsonl" ] && CONNS+=(--conns "$OUT/conns-hold.jsonl")
    python3 "$LAB" tshark-check --pcap "$OUT/mirror.pcapng" "${CONNS[@]}" "${SENT[@]}" \
        --max-frame 9065 --want-ipv6 $([ "$MTU" -gt 1500 ] && echo "--min-frame $((MTU + 64))") \
        $([ "$ONEWAY" = 1 ] && echo --one-way) \
        | tee "$OUT/tshark-check.txt" || CHECK_RC=$?
    if [ "${CAP_DROPS:-0}" != 0 ]; then log "(the capture lost packets: a plumbing failure may be the capture's own)"; fi
else
    stop_vxtap
    touch "$OUT/release"; set +e; wait "$HOLD_PID"; set -e
    stop_capture
    SENT=(--sent "$OUT/sent.jsonl")
    [ -s "$OUT/sent-hold.jsonl" ] && SENT+=(--sent "$OUT/sent-hold.jsonl")
    python3 "$LAB" check "${SENT[@]}" --events "$OUT/events.jsonl" --vni "$VNI" \
        $([ "$ONEWAY" = 1 ] && echo --one-way) \
        --json "$OUT/check.json" | tee "$OUT/check.txt" || CHECK_RC=$?
fi

FAIL=()
[ "$CLIENT_RC" = 0 ] || FAIL+=("client errors (rc $CLIENT_RC, see client.log)")
[ -z "$VXTAP_RC" ] || [ "$VXTAP_RC" = 0 ] || FAIL+=("vxtap exit code $VXTAP_RC")
[ "$CHECK_RC" = 0 ] || FAIL+=("checker failed")
drops="$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(b["RcvbufErrors"]-a["RcvbufErrors"])' "$UDP_BEFORE" "$UDP_AFTER")"
[ "$drops" = 0 ] || FAIL+=("kernel dropped $drops mirrored datagrams at the tap socket (UDP RcvbufErrors): vxtap did not read fast enough / SO_RCVBUF too small")
log "finished in $(( $(date +%s) - T0 ))s"
if [ ${#FAIL[@]} -eq 0 ]; then
    RESULT=0
    log "LAB PASS"
    exit 0
fi
for f in "${FAIL[@]}"; do log "FAIL: $f"; done
log "LAB FAIL"
exit 1
