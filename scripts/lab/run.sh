#!/usr/bin/env bash
# vxtap end-to-end lab: real HTTP through nginx in network namespaces, mirrored with tc into a kernel
# VXLAN device (VNI 1377, UDP 4789, MTU 9001), received by vxtap in a third namespace.
#
#   cli (client, lab.py) --veth c0|s0 MTU 1500--> srv (nginx :80, tc mirred ingress+egress of s0 -> vx0)
#   srv vx0 (vxlan 1377) --veth t0|t1 MTU 9100--> tap (vxtap listen --udp 0.0.0.0:4789; dumpcap)
#
# Usage (from the repo root, as root):
#   scripts/lab/run.sh [--vxtap PATH] [--out DIR] [--plumbing] [--no-capture] [--mtu N]
#                      [--cases a,b,c] [--keep-out] [--one-way] [--impair SPEC] [--iface-mode]
#                      [--drain-check] [--replay-check] [-- extra vxtap listen args]
#   --vxtap PATH   vxtap binary (default: $VXTAP, else <repo>/target/release/vxtap)
#   --plumbing     no vxtap: check with tshark that every client byte reaches the tap namespace
#   --no-capture   do not record the mirrored VXLAN stream to $OUT/mirror.pcapng
#   --mtu N        MTU of the cli<->srv link (default 1500; up to 9001 for jumbo inner frames)
#   --cases LIST   client cases (default all; see `lab.py client --help`)
#   --one-way      mirror only client->server frames (s0 ingress), as a mirror filter or an NLB
#                  splitting directions would: requests must still come out, without responses
#   --out DIR      where sent.jsonl, events.jsonl, logs and the capture go (default: a temp dir,
#                  removed on success unless --keep-out)
#   --impair SPEC  a userspace UDP relay in the tap namespace between vx0 and vxtap impairs the mirror:
#                  loss=P,dup=P,reorder=P,truncate=N,tprob=P,seed=S,maxdelay=K (see README); the
#                  checker then judges each request by whether all its own bytes arrived
#   --iface-mode   vxtap captures the VXLAN frames on the tap veth (listen --udp off --iface t1)
#   --drain-check  strict drain and metrics checks: 503 seen while draining, exit within the drain
#                  timeout, /metrics packets/requests equal to what arrived and what was written
#   --replay-check ALB replay: vxtap gets --replay http://127.0.0.1:8080, an nginx in the tap namespace
#                  (JSON access log) in front of lab.py replay-recorder; every request with an exact
#                  event must arrive there once, as sent, with the added X-Forwarded-* headers
#                  (adds the client case fwd)
# Environment: VXTAP, VXTAP_ARGS (extra listen args), LAB_ID (namespace prefix, default: PID),
#              LAB_LINGER (seconds of idle time before the pre-SIGTERM scrape, default 0).
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
IMPAIR=""
IFACE_MODE=0
DRAIN_CHECK=0
REPLAY_CHECK=0
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
        --impair) IMPAIR="$2"; shift 2 ;;
        --iface-mode) IFACE_MODE=1; shift ;;
        --drain-check) DRAIN_CHECK=1; shift ;;
        --replay-check) REPLAY_CHECK=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,34p' "$0" | grep -v '^set '; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then echo "run.sh: needs root (network namespaces)" >&2; exit 2; fi
if [ "$MTU" -gt 9001 ] || [ "$MTU" -lt 1280 ]; then echo "run.sh: --mtu 1280..9001" >&2; exit 2; fi
if [ -n "$IMPAIR" ] && { [ "$IFACE_MODE" = 1 ] || [ "$PLUMBING" = 1 ]; }; then
    echo "run.sh: --impair goes with the UDP receiver only (not --iface-mode / --plumbing)" >&2; exit 2
fi
if [ "$REPLAY_CHECK" = 1 ] && [ "$PLUMBING" = 1 ]; then
    echo "run.sh: --replay-check needs vxtap (not --plumbing)" >&2; exit 2
fi
if [ "$REPLAY_CHECK" = 1 ] && [[ ",$CASES," != *,fwd,* ]]; then CASES="$CASES,fwd"; fi
if [ -n "$IMPAIR" ]; then  # fail early on a bad spec
    python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import lab; lab.parse_impair(sys.argv[2])' \
        "$HERE" "$IMPAIR" || exit 2
fi
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
# --replay-check, tap namespace loopback only: vxtap -> nginx (the "ALB") -> replay-recorder
REPLAY_PORT=8080
RECORDER_PORT=8082
DRAIN=10
# the port vx0 sends to: vxtap's 4789, or the impairment relay's 4790 (which forwards to 4789)
VXPORT=4789
if [ -n "$IMPAIR" ]; then VXPORT=4790; fi

if [ -z "$OUT" ]; then OUT="$(mktemp -d /tmp/vxlab.XXXXXX)"; AUTO_OUT=1; else AUTO_OUT=0; fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT"/{sent,conns,sent-hold,conns-hold,events,relay,replay-recorded}.jsonl "$OUT"/mirror.pcapng \
      "$OUT"/release "$OUT"/ready "$OUT"/{relay-summary,sink-summary,settle,drain,check,run,replay-check}.json \
      "$OUT"/relayed.pcap "$OUT"/replay-check.txt
NGX="$OUT/nginx"
RNGX="$OUT/replay-nginx"   # --replay-check: the replay target's nginx
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
    # no IPv6 on the underlay: no router solicitations or MLD reports there (only VXLAN crosses it)
    nse "$NS_S" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/t0/disable_ipv6'
    nse "$NS_T" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/t1/disable_ipv6'
    ip -n "$NS_S" link add vx0 type vxlan id "$VNI" remote "$UND_T" local "$UND_S" dstport "$VXPORT" \
        dev t0 nolearning
    ip -n "$NS_S" link set vx0 mtu 9001
    # vx0's own IPv6 (router solicitations, MLD reports) would go into the tunnel as stray frames
    nse "$NS_S" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/vx0/disable_ipv6'
    # no segmentation offloads: what reaches the mirror is what a NIC would put on the wire
    # (without this the mirror carries 64 KB GSO super-frames, which AWS never sends)
    nse "$NS_C" python3 "$LAB" offload-off c0
    nse "$NS_S" python3 "$LAB" offload-off s0 t0 vx0
    nse "$NS_T" python3 "$LAB" offload-off t1
    # no router solicitations on the mirrored link: stray frames at random times would hide a
    # receiver that only processes what it holds when the next frame comes (the lab waits for quiet)
    nse "$NS_S" sh -c 'for k in router_solicitations accept_ra; do echo 0 >/proc/sys/net/ipv6/conf/s0/$k; done'
    nse "$NS_C" sh -c 'for k in router_solicitations accept_ra; do echo 0 >/proc/sys/net/ipv6/conf/c0/$k; done'
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
    local mac_s0 mac_c0 mac_t1 mac_t0
    mac_s0="$(nse "$NS_S" cat /sys/class/net/s0/address)"
    mac_c0="$(nse "$NS_C" cat /sys/class/net/c0/address)"
    mac_t1="$(nse "$NS_T" cat /sys/class/net/t1/address)"
    mac_t0="$(nse "$NS_S" cat /sys/class/net/t0/address)"
    ip -n "$NS_S" neigh replace "$UND_T" lladdr "$mac_t1" dev t0 nud permanent
    # (and back: no ARP probes on the underlay, where --iface-mode counts every frame)
    ip -n "$NS_T" neigh replace "$UND_S" lladdr "$mac_t0" dev t1 nud permanent
    ip -n "$NS_S" neigh replace "$CLI4" lladdr "$mac_c0" dev s0 nud permanent
    ip -n "$NS_S" neigh replace "$CLI6" lladdr "$mac_c0" dev s0 nud permanent
    ip -n "$NS_C" neigh replace "$SRV4" lladdr "$mac_s0" dev c0 nud permanent
    ip -n "$NS_C" neigh replace "$SRV6" lladdr "$mac_s0" dev c0 nud permanent
}

# ---------------------------------------------------------------- nginx
# The start of a foreground, single-process nginx configuration whose files live under $1; the
# caller's text continues inside `http {`.
nginx_conf_head() {
    cat <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/logs/error.log notice;
events { worker_connections 1024; }
http {
    default_type text/plain;
EOF
}

start_nginx() {
    mkdir -p "$NGX"/{body,proxy,fastcgi,uwsgi,scgi,logs}
    { nginx_conf_head "$NGX"; cat <<EOF
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
    } >"$NGX/nginx.conf"
    ip netns exec "$NS_S" nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" \
        >"$NGX/logs/stdout.log" 2>&1 &
    PIDS+=($!)
    NGINX_PID=$!
    # probe over loopback (not mirrored), so no lab traffic is seen before the cases start
    if ! nse "$NS_S" python3 "$LAB" wait-tcp 127.0.0.1:80 '[::1]:80' --timeout 10; then
        log "nginx did not start:"; cat "$NGX/logs/error.log" >&2; exit 1
    fi
}

# ---------------------------------------------------------------- replay target (--replay-check)
# In the tap namespace, on its loopback only: nginx on 127.0.0.1:$REPLAY_PORT (vxtap's --replay
# target, an "internal ALB") logs each request as one JSON line (the headers vxtap adds) and proxies
# it over keep-alive to lab.py replay-recorder on 127.0.0.1:$RECORDER_PORT, which records method,
# target, headers and body sha256/length. nginx answers TRACE itself with 405 before any location;
# `error_page 405 = @origin` hands that request to the same proxy, so TRACE reaches the recorder too.
start_replay_target() {
    ip netns exec "$NS_T" python3 "$LAB" replay-recorder --listen "127.0.0.1:$RECORDER_PORT" \
        --out "$OUT/replay-recorded.jsonl" --max-seconds 300 >"$OUT/replay-recorder.log" 2>&1 &
    RECORDER_PID=$!; PIDS+=("$RECORDER_PID")
    mkdir -p "$RNGX"/{body,proxy,fastcgi,uwsgi,scgi,logs}
    rm -f "$RNGX/logs/access.jsonl"   # (nginx appends)
    local proxy="proxy_pass http://recorder; proxy_http_version 1.1; proxy_set_header Connection \"\";
            proxy_set_header Host \$http_host; proxy_read_timeout 20s;"
    { nginx_conf_head "$RNGX"; cat <<EOF
    log_format replay escape=json '{"t":"\$msec","method":"\$request_method","uri":"\$request_uri",'
        '"protocol":"\$server_protocol","host":"\$http_host","xff":"\$http_x_forwarded_for",'
        '"xfport":"\$http_x_forwarded_port","xfproto":"\$http_x_forwarded_proto",'
        '"xscheme":"\$http_x_scheme","xsaddr":"\$http_x_server_addr",'
        '"xsport":"\$http_x_server_port","xrid":"\$http_x_request_id","cl":"\$content_length",'
        '"status":"\$status","upstream_status":"\$upstream_status","conn":"\$connection",'
        '"conn_requests":"\$connection_requests"}';
    access_log $RNGX/logs/access.jsonl replay;
    client_body_temp_path $RNGX/body;
    proxy_temp_path $RNGX/proxy;
    fastcgi_temp_path $RNGX/fastcgi;
    uwsgi_temp_path $RNGX/uwsgi;
    scgi_temp_path $RNGX/scgi;
    client_max_body_size 32m;
    client_body_buffer_size 64k;
    large_client_header_buffers 8 32k;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    upstream recorder {
        server 127.0.0.1:$RECORDER_PORT;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$REPLAY_PORT;
        server_name _;
        error_page 405 = @origin;
        location / { $proxy }
        location @origin { $proxy }
    }
}
EOF
    } >"$RNGX/nginx.conf"
    ip netns exec "$NS_T" nginx -p "$RNGX" -c "$RNGX/nginx.conf" -e "$RNGX/logs/error.log" \
        >"$RNGX/logs/stdout.log" 2>&1 &
    RNGX_PID=$!; PIDS+=("$RNGX_PID")
    # (wait-tcp's probes are connections without a request: nginx logs nothing for them)
    if ! nse "$NS_T" python3 "$LAB" wait-tcp "127.0.0.1:$RECORDER_PORT" "127.0.0.1:$REPLAY_PORT" \
            --timeout 10; then
        log "replay target did not start:"; cat "$OUT/replay-recorder.log" "$RNGX/logs/error.log" >&2
        exit 1
    fi
    log "replay target up: nginx 127.0.0.1:$REPLAY_PORT (pid $RNGX_PID) -> replay-recorder" \
        "127.0.0.1:$RECORDER_PORT (pid $RECORDER_PID), tap namespace loopback"
}

stop_replay_target() {  # after vxtap has exited: it has sent (or given up on) every replay
    stop_pid "$RNGX_PID" 5
    stop_pid "$RECORDER_PID" 5
    log "$(tail -1 "$OUT/replay-recorder.log" | cut -c1-300)"
}

# ---------------------------------------------------------------- capture
start_capture() {
    [ "$CAPTURE" = 1 ] || return 0
    ip netns exec "$NS_T" dumpcap -q -B 128 -i t1 -f "udp port $VXPORT" -s 0 -w "$OUT/mirror.pcapng" \
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
    local input=(--udp 0.0.0.0:4789)
    if [ "$IFACE_MODE" = 1 ]; then input=(--udp off --iface t1); fi
    local replay=()
    if [ "$REPLAY_CHECK" = 1 ]; then replay=(--replay "http://127.0.0.1:$REPLAY_PORT"); fi
    local args=(listen "${input[@]}" --events "$OUT/events.jsonl" --health "$HEALTH"
                --vni "$VNI" --body-limit 16MiB --drain-timeout "$DRAIN" "${replay[@]}"
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

# --iface-mode: nothing listens on 4789 but this sink (no ICMP port unreachable back to vx0)
start_sink() {
    ip netns exec "$NS_T" python3 "$LAB" udp-sink --bind 0.0.0.0:4789 --summary "$OUT/sink-summary.json" \
        --max-seconds 300 >"$OUT/sink.log" 2>&1 &
    SINK_PID=$!; PIDS+=("$SINK_PID")
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q "^sink: bound" "$OUT/sink.log" 2>/dev/null && return 0
        alive "$SINK_PID" || break
        sleep 0.05
    done
    log "udp sink did not start"; cat "$OUT/sink.log" >&2; exit 1
}

# --impair: vx0 -> relay (UND_T:4790) -> vxtap (UND_T:4789), started after vxtap so that vxtap gets
# every datagram the relay forwards
start_relay() {
    ip netns exec "$NS_T" python3 "$LAB" relay --listen "$UND_T:$VXPORT" --to "$UND_T:4789" \
        --impair "$IMPAIR" --log "$OUT/relay.jsonl" --summary "$OUT/relay-summary.json" \
        --pcap "$OUT/relayed.pcap" --max-seconds 300 >"$OUT/relay.log" 2>&1 &
    RELAY_PID=$!; PIDS+=("$RELAY_PID")
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q "^relay: " "$OUT/relay.log" 2>/dev/null && return 0
        alive "$RELAY_PID" || break
        sleep 0.05
    done
    log "relay did not start"; cat "$OUT/relay.log" >&2; exit 1
}

stop_relay() {  # SIGTERM: the relay forwards what it still holds, then writes relay-summary.json
    stop_pid "$RELAY_PID" 10
    [ -s "$OUT/relay-summary.json" ] || { log "relay wrote no summary"; cat "$OUT/relay.log" >&2; return 1; }
    log "$(tail -1 "$OUT/relay.log" | cut -c1-300)"
}

stop_vxtap() {  # SIGTERM: vxtap drains open flows and must exit 0 within --drain-timeout
    local rc
    # the probe sends SIGTERM and polls /-/healthcheck until vxtap is gone (drain.json)
    nse "$NS_T" python3 "$LAB" drain-probe --pid "$VXTAP_PID" --health "$HEALTH" \
        --timeout "$((DRAIN + 5))" --json "$OUT/drain.json" || true
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
MODE=vxtap
if [ "$PLUMBING" = 1 ]; then MODE=plumbing; fi
if [ "$ONEWAY" = 1 ]; then MODE="$MODE one-way"; fi
if [ "$IFACE_MODE" = 1 ]; then MODE="$MODE iface"; fi
if [ -n "$IMPAIR" ]; then MODE="$MODE impair=$IMPAIR"; fi
if [ "$REPLAY_CHECK" = 1 ]; then MODE="$MODE replay"; fi
log "lab $ID: out=$OUT mtu=$MTU mode=$MODE"
setup_net
start_nginx
start_capture
if [ "$IFACE_MODE" = 1 ]; then start_sink; fi
if [ "$PLUMBING" = 0 ]; then
    if [ "$REPLAY_CHECK" = 1 ]; then start_replay_target; fi
    start_vxtap
    if [ -n "$IMPAIR" ]; then start_relay; fi
    # baseline: vxtap's packet count and the namespace's UDP counters, once both are still
    BASE="$(nse "$NS_T" python3 "$LAB" counters --health "$HEALTH")"
    UDP_BEFORE="$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["udp"]))' "$BASE")"
else
    UDP_BEFORE="$(nse "$NS_T" python3 "$LAB" udp-drops)"
fi

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

VXTAP_RC=""
CHECK_RC=0
REPORT_RC=0
RELAY_RC=0
REPLAY_RC=0
if [ "$PLUMBING" = 1 ]; then
    sleep 1   # let the last mirrored packets arrive
    UDP_AFTER="$(nse "$NS_T" python3 "$LAB" udp-drops)"
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
    # the relay forwards what it holds back and stops; then wait until vxtap has taken in every
    # datagram and written every event, scrape /metrics, and SIGTERM at once
    if [ -n "$IMPAIR" ]; then stop_relay || RELAY_RC=1; fi
    sleep "${LAB_LINGER:-0}"   # (debugging: give vxtap extra idle time before the scrape)
    SETTLE_ARGS=(--base "$BASE")
    if [ -n "$IMPAIR" ]; then SETTLE_ARGS=(--relay-summary "$OUT/relay-summary.json"); fi
    # lossless, both directions: every request's flow is complete (or, for hold, answered), so every
    # event must be written now, before SIGTERM, not held back until something else arrives
    if [ -z "$IMPAIR" ] && [ "$ONEWAY" = 0 ]; then
        SETTLE_ARGS+=(--want-requests-from "$OUT/sent.jsonl" --want-requests-from "$OUT/sent-hold.jsonl")
    fi
    nse "$NS_T" python3 "$LAB" settle --health "$HEALTH" --events "$OUT/events.jsonl" \
        "${SETTLE_ARGS[@]}" --timeout 5 --metrics-out "$OUT/metrics.txt" --json "$OUT/settle.json" \
        || log "warning: vxtap did not settle (see settle.json)"
    UDP_AFTER="$(nse "$NS_T" python3 "$LAB" udp-drops)"
    stop_vxtap
    touch "$OUT/release"; set +e; wait "$HOLD_PID"; set -e
    if [ "$IFACE_MODE" = 1 ]; then stop_pid "$SINK_PID" 3; fi
    stop_capture
    SENT=(--sent "$OUT/sent.jsonl")
    [ -s "$OUT/sent-hold.jsonl" ] && SENT+=(--sent "$OUT/sent-hold.jsonl")
    CHECK_EXTRA=()
    if [ "$ONEWAY" = 1 ]; then CHECK_EXTRA+=(--one-way); fi
    if [ -n "$IMPAIR" ]; then CHECK_EXTRA+=(--relay-log "$OUT/relay.jsonl"); fi
    python3 "$LAB" check "${SENT[@]}" --events "$OUT/events.jsonl" --vni "$VNI" "${CHECK_EXTRA[@]}" \
        --json "$OUT/check.json" | tee "$OUT/check.txt" || CHECK_RC=$?
    # drain and metrics (issue 8): report always; fail on them with --drain-check
    REPORT_EXTRA=()
    if [ "$DRAIN_CHECK" = 1 ]; then REPORT_EXTRA+=(--strict); fi
    python3 "$LAB" run-report --out "$OUT" --drain-timeout "$DRAIN" --vxtap-rc "$VXTAP_RC" \
        "${REPORT_EXTRA[@]}" | tee "$OUT/run-report.txt" || REPORT_RC=$?
    if [ "$REPLAY_CHECK" = 1 ]; then
        stop_replay_target
        REPLAY_EXTRA=()
        # impaired: requests with missing bytes are skipped by design (counted in the summary)
        if [ -n "$IMPAIR" ]; then REPLAY_EXTRA+=(--allow-skipped); fi
        python3 "$LAB" replay-check "${SENT[@]}" --events "$OUT/events.jsonl" --vni "$VNI" \
            --recorder "$OUT/replay-recorded.jsonl" --nginx-log "$RNGX/logs/access.jsonl" \
            --summary "$OUT/vxtap.stderr" --json "$OUT/replay-check.json" "${REPLAY_EXTRA[@]}" \
            | tee "$OUT/replay-check.txt" || REPLAY_RC=$?
    fi
fi
log "tap UDP counters before: $UDP_BEFORE"
log "tap UDP counters after:  $UDP_AFTER"

FAIL=()
[ "$CLIENT_RC" = 0 ] || FAIL+=("client errors (rc $CLIENT_RC, see client.log)")
[ -z "$VXTAP_RC" ] || [ "$VXTAP_RC" = 0 ] || FAIL+=("vxtap exit code $VXTAP_RC")
[ "$CHECK_RC" = 0 ] || FAIL+=("checker failed")
[ "$RELAY_RC" = 0 ] || FAIL+=("impairment relay failed (relay.log)")
[ "$REPORT_RC" = 0 ] || FAIL+=("drain/metrics checks failed (run-report.txt)")
[ "$REPLAY_RC" = 0 ] || FAIL+=("replay checks failed (replay-check.txt)")
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
