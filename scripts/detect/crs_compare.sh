#!/usr/bin/env bash
# Side-by-side with OWASP CRS: runs Debian's modsecurity-crs on nginx (libnginx-mod-http-modsecurity) at
# paranoia levels 1 and 2, in blocking mode (anomaly scoring, inbound threshold 5), bound to 127.0.0.1
# only, replays the labelled corpus through each (sequential, bounded, loopback only) and prints the
# true-positive rate per class and the false-positive rate; then the same for vxtap.
#
# Usage: scripts/detect/crs_compare.sh [CORPUS] (default testdata/detect/corpus.jsonl). Needs root for
# apt-get (only when the packages are missing) and to start nginx. Writes only under $WORK.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORPUS=${1:-testdata/detect/corpus.jsonl}
WORK=${WORK:-/tmp/vxtap-crs}
PORT1=${PORT1:-18081}
PORT2=${PORT2:-18082}
BACKEND=${BACKEND:-18089}

if ! dpkg -s libnginx-mod-http-modsecurity modsecurity-crs >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-http-modsecurity modsecurity-crs >/dev/null
fi
CRS_VERSION=$(dpkg-query -W -f='${Version}' modsecurity-crs)
MODSEC_VERSION=$(dpkg-query -W -f='${Version}' libmodsecurity3)

rm -rf "$WORK"
mkdir -p "$WORK/tmp" "$WORK/logs"
chmod 777 "$WORK/tmp"
cp /etc/nginx/unicode.mapping "$WORK/" 2>/dev/null || true

for PL in 1 2; do
    # The Debian recommended ModSecurity configuration, switched from DetectionOnly to blocking.
    sed -e 's/^SecRuleEngine DetectionOnly/SecRuleEngine On/' \
        -e 's#^SecAuditLog .*#SecAuditLog '"$WORK"'/logs/audit-pl'"$PL"'.log#' \
        -e 's/^SecStatusEngine On/SecStatusEngine Off/' \
        -e 's/^SecResponseBodyAccess On/SecResponseBodyAccess Off/' \
        -e 's#^SecTmpDir .*#SecTmpDir '"$WORK"'/tmp/#' -e 's#^SecDataDir .*#SecDataDir '"$WORK"'/tmp/#' \
        /etc/nginx/modsecurity.conf > "$WORK/modsec-pl$PL.conf"
    {
        echo "Include /etc/modsecurity/crs/crs-setup.conf"
        echo "SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=$PL\""
        # a REST API uses PUT / PATCH / DELETE: allow them, as any API deployment of CRS must
        echo "SecAction \"id:900200,phase:1,nolog,pass,t:none,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'\""
        # libmodsecurity 3 has no IncludeOptional
        [ -f /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf ] &&
            echo "Include /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf"
        echo "Include /usr/share/modsecurity-crs/rules/*.conf"
        [ -f /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf ] &&
            echo "Include /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf"
    } >> "$WORK/modsec-pl$PL.conf"
done

cat > "$WORK/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_http_modsecurity_module.so;
user root;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $WORK/tmp/body;
    proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fcgi;
    uwsgi_temp_path $WORK/tmp/uwsgi;
    scgi_temp_path $WORK/tmp/scgi;
    client_max_body_size 16m;
    underscores_in_headers on;
    ignore_invalid_headers off;
    server { listen 127.0.0.1:$BACKEND; location / { return 200 "ok\n"; } }
    server {
        listen 127.0.0.1:$PORT1;
        modsecurity on;
        modsecurity_rules_file $WORK/modsec-pl1.conf;
        location / { proxy_pass http://127.0.0.1:$BACKEND; }
    }
    server {
        listen 127.0.0.1:$PORT2;
        modsecurity on;
        modsecurity_rules_file $WORK/modsec-pl2.conf;
        location / { proxy_pass http://127.0.0.1:$BACKEND; }
    }
}
CONF

nginx -t -c "$WORK/nginx.conf" -p "$WORK" 2>&1 | tail -2
nginx -c "$WORK/nginx.conf" -p "$WORK"
trap 'kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true' EXIT
sleep 1

echo "OWASP CRS $CRS_VERSION on libmodsecurity $MODSEC_VERSION (nginx), blocking, inbound anomaly threshold 5"
for PL in 1 2; do
    PORT=$([ "$PL" = 1 ] && echo "$PORT1" || echo "$PORT2")
    echo "== CRS paranoia level $PL"
    python3 scripts/detect/replay.py --port "$PORT" --json "$WORK/crs-pl$PL.json" "$CORPUS"
done
echo "== vxtap"
cargo run --quiet --release -p vxtap-detect --example eval -- "$CORPUS"
