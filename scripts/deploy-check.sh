#!/usr/bin/env bash
# Checks everything under deploy/ and builds the Debian package:
#   1. Terraform module (deploy/terraform): parsed with python-hcl2 (installed with pip if missing) and
#      checked by deploy/check/tfcheck.py: references, resource types, NLB/target group/health check,
#      security-group ports, mirror target/filter/sessions, tags, outputs, example, templates, and the
#      `terraform fmt` layout. Where a terraform binary exists: `terraform fmt -check` too, and the
#      user-data and vxtap.toml templates are rendered (offline, no provider) and checked; where the
#      hashicorp/aws provider is in a local filesystem mirror (/opt/tf-plugins, VXTAP_TF_PLUGIN_MIRROR):
#      `terraform validate` of the module and the example, and `terraform test` (mocked provider).
#   2. systemd unit (deploy/systemd): required directives, `systemd-analyze verify` of the unit alone and
#      with its drop-ins, `systemd-analyze security` exposure; logrotate config; maintainer scripts.
#   3. Package: `cargo deb -p vxtap` (cargo-deb installed from crates.io if missing), contents listed
#      and checked; the packaged binary must accept the packaged config and the Terraform one.
#
#   scripts/deploy-check.sh           everything (a few minutes, most of it the release build)
#   VXTAP_SKIP_DEB=1                  skip the .deb build (config checks then use target/release/vxtap
#                                     if it exists)
#   VXTAP_STRICT_CONFIG=1             fail, rather than warn, when the binary rejects config keys the
#                                     Terraform module can write but vxtap does not implement yet
#   scripts/deploy-check.sh --sync    rewrite deploy/debian/vxtap.toml from configs/vxtap.toml
# Exits non-zero when any check fails; every check runs, then the failures are listed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PACKAGED_EVENTS='/var/log/vxtap/eve.json'
# deploy/debian/vxtap.toml is configs/vxtap.toml with this header and the events path of the package.
packaged_config() {
    printf '%s\n' \
        '# Installed as /etc/vxtap/vxtap.toml by the vxtap package and read by vxtap.service' \
        '# (`vxtap listen --config /etc/vxtap/vxtap.toml`). Generated from configs/vxtap.toml by' \
        '# scripts/deploy-check.sh --sync; only `events` differs. `systemctl restart vxtap` applies changes.' \
        '#'
    sed "s|^events = .*\$|events = \"$PACKAGED_EVENTS\"|" configs/vxtap.toml
}

if [ "${1:-}" = "--sync" ]; then
    packaged_config >deploy/debian/vxtap.toml
    echo "wrote deploy/debian/vxtap.toml"
    exit 0
fi

TMP=$(mktemp -d /tmp/vxtap-deploy-check.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FAILED=()
WARNINGS=()
BIN=""     # a vxtap binary to validate configs with (packaged one, else target/release/vxtap)

step() { printf '\n==> %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    FAILED+=("$*")
}
warn() {
    printf 'WARN: %s\n' "$*" >&2
    WARNINGS+=("$*")
}
ok() { printf 'ok: %s\n' "$*"; }

# --------------------------------------------------------------------------------------------------
# Optional tools (their checks are skipped with a warning when missing): installed as test.sh does.
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v logrotate >/dev/null 2>&1 || missing+=(logrotate)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if ((${#missing[@]})) && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$TMP/apt.log" 2>&1 ||
        warn "could not install ${missing[*]} (see the warnings below for what is skipped)"
fi

# --------------------------------------------------------------------------------------------------
step "python-hcl2"
# tfcheck.py reads python-hcl2 8's output shape (quoted labels and strings, ${...} expressions).
hcl2_ok() {
    python3 -c 'import sys, importlib.metadata as m; from hcl2 import load
sys.exit(0 if m.version("python-hcl2").split(".")[0] == "8" else 1)' 2>/dev/null
}
if ! hcl2_ok; then
    python3 -m pip install --quiet --disable-pip-version-check 'python-hcl2>=8,<9' >"$TMP/pip.log" 2>&1 ||
        { cat "$TMP/pip.log" >&2; fail "pip install python-hcl2"; }
fi
if hcl2_ok; then
    ok "python-hcl2 $(python3 -c 'import importlib.metadata as m; print(m.version("python-hcl2"))')"
fi

# --------------------------------------------------------------------------------------------------
step "Terraform module: parse, structure, layout (deploy/check/tfcheck.py)"
python3 deploy/check/tfcheck.py deploy/terraform || fail "tfcheck: Terraform module"

TERRAFORM=$(command -v terraform || true)
export TF_CLI_CONFIG_FILE="$TMP/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
: >"$TF_CLI_CONFIG_FILE"
if [ -n "$TERRAFORM" ]; then
    step "terraform fmt -check ($("$TERRAFORM" version | head -n 1))"
    if "$TERRAFORM" fmt -check -recursive -diff deploy/terraform; then
        ok "terraform fmt"
    else
        fail "terraform fmt -check deploy/terraform"
    fi
else
    step "terraform fmt: no terraform binary, layout checked by tfcheck.py only"
fi

# --------------------------------------------------------------------------------------------------
# `terraform validate` and `terraform test` (mocked provider, plans only) need the hashicorp/aws
# provider's schema: only from a local filesystem mirror, never downloaded here.
provider_mirror() {
    local d
    for d in "${VXTAP_TF_PLUGIN_MIRROR:-}" /opt/tf-plugins "$HOME/.terraform.d/plugins" \
        /usr/local/share/terraform/plugins /usr/share/terraform/plugins; do
        if [ -n "$d" ] && compgen -G "$d/registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*" >/dev/null; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

validate_and_test() {
    local mirror=$1
    local rc="$TMP/terraformrc-mirror"
    cat >"$rc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
EOF
    # A copy, so that init's lock file and .terraform stay out of the work tree.
    rm -rf "$TMP/tf"
    cp -r deploy/terraform "$TMP/tf"
    local status=0
    (
        cd "$TMP/tf"
        export TF_CLI_CONFIG_FILE="$rc" TF_DATA_DIR="$TMP/tf-data"
        "$TERRAFORM" init -backend=false -input=false -no-color >"$TMP/tf-init.log" 2>&1 || { cat "$TMP/tf-init.log" >&2; exit 1; }
        "$TERRAFORM" validate -no-color
        "$TERRAFORM" test -no-color
    ) || status=1
    (
        cd "$TMP/tf/examples/basic"
        export TF_CLI_CONFIG_FILE="$rc" TF_DATA_DIR="$TMP/tf-data-example"
        "$TERRAFORM" init -backend=false -input=false -no-color >"$TMP/tf-init-example.log" 2>&1 || { cat "$TMP/tf-init-example.log" >&2; exit 1; }
        printf 'examples/basic: '
        "$TERRAFORM" validate -no-color
    ) || status=1
    return "$status"
}

if [ -n "$TERRAFORM" ]; then
    if MIRROR=$(provider_mirror); then
        step "terraform validate + terraform test (provider from the local mirror $MIRROR, mocked, no AWS calls)"
        if validate_and_test "$MIRROR"; then
            ok "terraform validate (module, example) and terraform test"
        else
            fail "terraform validate / terraform test"
        fi
    else
        step "terraform validate/test: no local hashicorp/aws provider mirror (set VXTAP_TF_PLUGIN_MIRROR), skipped"
    fi
fi

# --------------------------------------------------------------------------------------------------
# Rendering the templates needs only Terraform's template engine: a provider-less configuration,
# applied offline. tfcheck.py has checked that main.tf passes exactly the variables the templates use.
render_templates() {
    local dir="$TMP/render"
    mkdir -p "$dir"
    cat >"$dir/main.tf" <<'EOF'
variable "templates" {
  type = string
}

locals {
  default_config = templatefile("${var.templates}/vxtap.toml.tftpl", {
    vni              = 1377
    http_ports       = [80]
    body_limit       = "1MiB"
    detect           = true
    memcap           = "1GiB"
    workers          = 0
    idle_timeout     = 30
    replay_url       = ""
    log_format       = ""
    vxlan_port       = 4789
    receivers        = 0
    recv_buffer      = ""
    health_port      = 9445
    drain_timeout    = 30
    http_mirror_port = 0
    trusted_proxies  = []
  })
  full_config = templatefile("${var.templates}/vxtap.toml.tftpl", {
    vni              = 42
    http_ports       = [80, 8080]
    body_limit       = "16MiB"
    detect           = false
    memcap           = "512MiB"
    workers          = 2
    idle_timeout     = 60
    replay_url       = "http://internal-filtering-alb.example.invalid:80"
    log_format       = "json"
    vxlan_port       = 4789
    receivers        = 2
    recv_buffer      = "512MiB"
    health_port      = 9445
    drain_timeout    = 45
    http_mirror_port = 8445
    trusted_proxies  = ["10.0.0.0/8", "192.168.0.0/16"]
  })
  url_user_data = templatefile("${var.templates}/user-data.sh.tftpl", {
    vxtap_config      = local.default_config
    package_url       = "https://artifacts.example.invalid/vxtap/vxtap_0.1.0-1_amd64.deb"
    package_s3_bucket = ""
    package_s3_key    = ""
    package_s3_region = ""
    package_sha256    = ""
    stop_timeout      = 45
    health_port       = 9445
    extra_user_data   = ""
  })
  s3_user_data = templatefile("${var.templates}/user-data.sh.tftpl", {
    vxtap_config      = local.full_config
    package_url       = ""
    package_s3_bucket = "artifacts-bucket"
    package_s3_key    = "vxtap/vxtap_0.1.0-1_amd64.deb"
    package_s3_region = ""
    package_sha256    = "0000000000000000000000000000000000000000000000000000000000000000"
    stop_timeout      = 60
    health_port       = 9445
    extra_user_data   = "apt-get install -y -qq jq"
  })
}

output "default_config" {
  value = local.default_config
}

output "full_config" {
  value = local.full_config
}

output "url_user_data" {
  value = local.url_user_data
}

output "s3_user_data" {
  value = local.s3_user_data
}
EOF
    (
        cd "$dir"
        "$TERRAFORM" init -input=false -no-color >init.log 2>&1 || { cat init.log >&2; exit 1; }
        "$TERRAFORM" apply -auto-approve -input=false -no-color -lock=false \
            -var "templates=$ROOT/deploy/terraform/templates" >apply.log 2>&1 || { cat apply.log >&2; exit 1; }
        for o in default_config full_config url_user_data s3_user_data; do
            "$TERRAFORM" output -raw "$o" >"$o.out"
        done
    )
}

if [ -n "$TERRAFORM" ]; then
    step "Terraform templates: render vxtap.toml and user data (offline), check them"
    if render_templates; then
        R="$TMP/render"
        python3 - "$R/default_config.out" "$R/full_config.out" <<'EOF' || fail "rendered vxtap.toml"
import sys, tomllib
default = tomllib.load(open(sys.argv[1], "rb"))
full = tomllib.load(open(sys.argv[2], "rb"))
want = {"events": "/var/log/vxtap/eve.json", "vni": [1377], "ports": [80], "body_limit": "1MiB",
        "detect": True, "memcap": "1GiB", "idle_timeout": 30, "vxlan_port": 4789}
bad = [f"{k} = {default.get(k)!r}, want {v!r}" for k, v in want.items() if default.get(k) != v]
lw = {"udp": "0.0.0.0:4789", "health": "0.0.0.0:9445", "drain_timeout": 30}
bad += [f"listen.{k} = {default['listen'].get(k)!r}, want {v!r}" for k, v in lw.items() if default["listen"].get(k) != v]
bad += [f"default config must not set {k}" for k in ("workers", "replay", "log_format") if k in default]
bad += [f"default config must not set listen.{k}" for k in ("receivers", "recv_buffer", "http_mirror", "trusted_proxies")
        if k in default["listen"]]
fw = {"vni": [42], "ports": [80, 8080], "workers": 2, "replay": "http://internal-filtering-alb.example.invalid:80",
      "detect": False, "log_format": "json"}
bad += [f"full: {k} = {full.get(k)!r}, want {v!r}" for k, v in fw.items() if full.get(k) != v]
flw = {"receivers": 2, "recv_buffer": "512MiB", "http_mirror": "0.0.0.0:8445", "trusted_proxies": ["10.0.0.0/8", "192.168.0.0/16"],
       "drain_timeout": 45}
bad += [f"full: listen.{k} = {full['listen'].get(k)!r}, want {v!r}" for k, v in flw.items()
        if full["listen"].get(k) != v]
for b in bad:
    print("rendered vxtap.toml:", b)
sys.exit(1 if bad else 0)
EOF
        for u in url_user_data s3_user_data; do
            f="$R/$u.out"
            size=$(wc -c <"$f")
            [ "$size" -lt 16384 ] || fail "$u: $size bytes, EC2 user data must stay under 16 KiB"
            bash -n "$f" || fail "$u: bash syntax"
            if command -v shellcheck >/dev/null 2>&1; then
                shellcheck -s bash -S warning "$f" || fail "$u: shellcheck"
            fi
            grep -q '^TimeoutStopSec=' "$f" || fail "$u: no TimeoutStopSec drop-in"
            grep -q -- '--force-confold' "$f" || fail "$u: the package install must keep the written config"
        done
        grep -qF "curl -fsSL --retry 10 --retry-connrefused --retry-delay 3 -o \"\$PKG\" 'https://artifacts.example.invalid/" "$R/url_user_data.out" ||
            fail "url_user_data: no download from package_url"
        grep -qF -- "--aws-sigv4" "$R/s3_user_data.out" || fail "s3_user_data: no signed S3 download"
        grep -qF "sha256sum -c" "$R/s3_user_data.out" || fail "s3_user_data: no checksum verification"
        grep -qF "apt-get install -y -qq jq" "$R/s3_user_data.out" || fail "s3_user_data: extra_user_data missing"
        python3 - "$R/url_user_data.out" "$R/default_config.out" <<'EOF' || fail "user data does not embed the config verbatim"
import sys
ud, cfg = open(sys.argv[1]).read(), open(sys.argv[2]).read()
body = ud.split("<<'VXTAP_CONFIG_EOF'\n", 1)[1].split("\nVXTAP_CONFIG_EOF\n", 1)[0]
sys.exit(0 if body.strip() == cfg.strip() else 1)
EOF
        ok "templates render; configs parse as TOML; user data passes bash -n$(command -v shellcheck >/dev/null && echo ' and shellcheck')"
    else
        fail "rendering the Terraform templates"
    fi
else
    step "Terraform templates: no terraform binary, rendering skipped (template variables checked by tfcheck.py)"
fi

# --------------------------------------------------------------------------------------------------
step "Packaged config: deploy/debian/vxtap.toml = configs/vxtap.toml with events in /var/log/vxtap"
if diff -u deploy/debian/vxtap.toml <(packaged_config) >"$TMP/config.diff"; then
    ok "in sync with configs/vxtap.toml"
else
    cat "$TMP/config.diff" >&2
    fail "deploy/debian/vxtap.toml differs from configs/vxtap.toml: run scripts/deploy-check.sh --sync"
fi
python3 -c "
import sys, tomllib
c = tomllib.load(open('deploy/debian/vxtap.toml', 'rb'))
sys.exit(0 if c.get('events') == '$PACKAGED_EVENTS' else 1)" || fail "deploy/debian/vxtap.toml: events must be $PACKAGED_EVENTS"

# --------------------------------------------------------------------------------------------------
step "systemd unit: deploy/systemd/vxtap.service"
UNIT=deploy/systemd/vxtap.service
for directive in \
    'Type=notify' \
    'NotifyAccess=main' \
    'WatchdogSec=30s' \
    'ExecStart=/usr/bin/vxtap listen --config /etc/vxtap/vxtap.toml' \
    'ExecReload=/bin/kill -HUP $MAINPID' \
    'Restart=on-failure' \
    'User=vxtap' \
    'LogsDirectory=vxtap' \
    'ReadWritePaths=/var/log/vxtap' \
    'ProtectSystem=strict' \
    'ProtectHome=yes' \
    'PrivateTmp=yes' \
    'NoNewPrivileges=yes' \
    'CapabilityBoundingSet=' \
    'AmbientCapabilities=' \
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
    'SystemCallFilter=@system-service' \
    'WantedBy=multi-user.target'; do
    grep -qxF "$directive" "$UNIT" || fail "$UNIT: no line \`$directive\`"
done
grep -qE '^LimitNOFILE=[0-9]+$' "$UNIT" || fail "$UNIT: no LimitNOFILE"
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$UNIT")
drain=$(python3 -c "import tomllib; print(tomllib.load(open('configs/vxtap.toml','rb')).get('listen',{}).get('drain_timeout',30))")
[ -n "$stop" ] && [ "$stop" -gt "$drain" ] || fail "$UNIT: TimeoutStopSec (${stop:-unset}) must exceed drain_timeout ($drain)"
if grep -qE '^(AmbientCapabilities|CapabilityBoundingSet)=.*CAP_' "$UNIT"; then
    fail "$UNIT: capabilities belong in the iface-capture drop-in, not the unit"
fi
if grep -qE '^Type=notify' "$UNIT" && ! grep -q '^WatchdogSec=' "$UNIT"; then
    warn "$UNIT: Type=notify without WatchdogSec"
fi
grep -qxF 'AmbientCapabilities=CAP_NET_RAW' deploy/systemd/iface-capture.conf ||
    fail "iface-capture.conf: no AmbientCapabilities=CAP_NET_RAW"

verify_unit() { # verify_unit NAME EXEC FILE... : the files concatenated as one unit (unit + drop-ins)
    local name=$1 exe=$2
    shift 2
    local d="$TMP/unit-$name"
    mkdir -p "$d"
    for f in "$@"; do
        cat "$f"
        echo
    done | sed "s|^ExecStart=/usr/bin/vxtap |ExecStart=$exe |" >"$d/vxtap.service"
    local out
    out=$(systemd-analyze verify --man=no "$d/vxtap.service" 2>&1) || true
    # verify exits 0 on unknown keys and bad values: any message is a finding.
    if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        fail "systemd-analyze verify ($name)"
    else
        ok "systemd-analyze verify ($name): no findings"
    fi
}

if command -v systemd-analyze >/dev/null 2>&1; then
    # verify insists that ExecStart's binary exists: use the built one, else a stand-in.
    UNIT_EXE=$(command -v true)
    if [ -x target/release/vxtap ]; then UNIT_EXE="$ROOT/target/release/vxtap"; fi
    printf '[Service]\nTimeoutStopSec=45\n' >"$TMP/10-terraform.conf"
    verify_unit unit "$UNIT_EXE" "$UNIT"
    verify_unit iface-drop-in "$UNIT_EXE" "$UNIT" deploy/systemd/iface-capture.conf
    verify_unit terraform-drop-in "$UNIT_EXE" "$UNIT" "$TMP/10-terraform.conf"
    cp "$TMP/unit-unit/vxtap.service" "$TMP/vxtap.service"
    exposure=$(systemd-analyze security --offline=yes --no-pager "$TMP/vxtap.service" 2>&1 | tail -n 1 || true)
    echo "$exposure"
    case "$exposure" in
    *" OK"* | *"SAFE"*) ok "systemd-analyze security: $(echo "$exposure" | sed 's/.*: //')" ;;
    *) fail "systemd-analyze security: $exposure" ;;
    esac
else
    warn "systemd-analyze not found: unit not verified (apt-get install systemd)"
fi

# --------------------------------------------------------------------------------------------------
step "logrotate config and maintainer scripts"
LR=deploy/debian/vxtap.logrotate
grep -qF '/var/log/vxtap/*.json' "$LR" || fail "$LR: does not rotate /var/log/vxtap/*.json"
grep -qE 'systemctl reload vxtap' "$LR" || fail "$LR: postrotate must run systemctl reload vxtap"
if command -v logrotate >/dev/null 2>&1; then
    mkdir -p "$TMP/logs/vxtap"
    sed "s|/var/log/vxtap/|$TMP/logs/vxtap/|; s|systemctl reload vxtap.service|true|" "$LR" >"$TMP/logrotate.conf"
    echo '{"event_type":"http"}' >"$TMP/logs/vxtap/eve.json"
    if logrotate -f -s "$TMP/logrotate.state" "$TMP/logrotate.conf" 2>"$TMP/logrotate.err" && [ ! -s "$TMP/logrotate.err" ] &&
        compgen -G "$TMP/logs/vxtap/eve.json-*" >/dev/null; then
        ok "logrotate rotates a copy of the config (postrotate stubbed)"
    else
        cat "$TMP/logrotate.err" >&2
        fail "logrotate $LR"
    fi
else
    warn "logrotate not installed: config not exercised"
fi
for s in deploy/debian/postinst deploy/debian/postrm; do
    [ -x "$s" ] || fail "$s is not executable"
    sh -n "$s" || fail "$s: sh syntax"
    grep -qx '#DEBHELPER#' "$s" || fail "$s: no #DEBHELPER# line for cargo-deb's systemd fragments"
    if command -v shellcheck >/dev/null 2>&1; then
        shellcheck -s sh -S warning "$s" || fail "$s: shellcheck"
    fi
done
grep -qE '^u vxtap ' deploy/debian/vxtap.sysusers || fail "vxtap.sysusers: no vxtap user"

# --------------------------------------------------------------------------------------------------
check_config_with() { # check_config_with BIN FILE LABEL REQUIRED(1|0)
    local bin=$1 file=$2 label=$3 required=$4 out
    if out=$("$bin" pcap --config "$file" --events /dev/null testdata/sample.pcap 2>&1 >/dev/null); then
        ok "vxtap accepts $label"
    elif { [ "$required" = 1 ] && [ "$STALE" = 0 ]; } || [ "${VXTAP_STRICT_CONFIG:-0}" = 1 ]; then
        printf '%s\n' "$out" >&2
        fail "vxtap rejects $label"
    else
        # Name every key it does not know yet: drop the one it names and try again.
        local copy="$TMP/config-probe.toml" unknown=() key accepted=0
        cp "$file" "$copy"
        while key=$(printf '%s\n' "$out" | sed -n 's/.*unknown field `\([A-Za-z0-9_]*\)`.*/\1/p' | head -n 1) &&
            [ -n "$key" ] && [ "${#unknown[@]}" -lt 10 ]; do
            unknown+=("$key")
            sed -i "/^$key = /d" "$copy"
            if out=$("$bin" pcap --config "$copy" --events /dev/null testdata/sample.pcap 2>&1 >/dev/null); then
                accepted=1
                break
            fi
        done
        if [ "$accepted" = 1 ]; then
            warn "vxtap does not accept these keys of $label yet: ${unknown[*]}"
        else
            printf '%s\n' "$out" >&2
            fail "vxtap rejects $label${unknown[*]:+ (beyond the unknown keys ${unknown[*]})}"
        fi
    fi
}

if [ "${VXTAP_SKIP_DEB:-0}" = 1 ]; then
    step "Debian package: skipped (VXTAP_SKIP_DEB=1)"
else
    step "Debian package: cargo deb -p vxtap"
    if ! command -v cargo-deb >/dev/null 2>&1; then
        echo "installing cargo-deb from crates.io"
        cargo install --locked --quiet cargo-deb || fail "cargo install cargo-deb"
    fi
    if command -v cargo-deb >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo-deb" ]; then
        if cargo deb -p vxtap >"$TMP/deb.out" 2>"$TMP/deb.err"; then
            DEB=$(grep -E '\.deb$' "$TMP/deb.out" | tail -n 1)
            grep -i warning "$TMP/deb.err" >&2 || true
        else
            cat "$TMP/deb.err" >&2
            fail "cargo deb -p vxtap"
            DEB=""
        fi
        if [ -n "$DEB" ] && [ -f "$DEB" ]; then
            echo "package: $DEB ($(du -h "$DEB" | cut -f1))"
            dpkg-deb -I "$DEB" | sed -n '/^ Package:/,/^ Description:/p'
            echo "contents (dpkg-deb -c):"
            dpkg-deb -c "$DEB" | tee "$TMP/contents"
            for path in ./usr/bin/vxtap ./etc/vxtap/vxtap.toml ./etc/logrotate.d/vxtap \
                ./usr/lib/systemd/system/vxtap.service ./usr/lib/sysusers.d/vxtap.conf \
                ./usr/lib/sysctl.d/60-vxtap.conf ./usr/share/doc/vxtap/examples/iface-capture.conf; do
                awk '{print $NF}' "$TMP/contents" | grep -qxF "$path" || fail "package lacks $path"
            done
            grep -E '^-rwxr-xr-x .* \./usr/bin/vxtap$' "$TMP/contents" >/dev/null || fail "package: /usr/bin/vxtap is not mode 755"
            dpkg-deb -e "$DEB" "$TMP/control"
            for c in /etc/vxtap/vxtap.toml /etc/logrotate.d/vxtap; do
                grep -qxF "$c" "$TMP/control/conffiles" || fail "package: $c is not a conffile"
            done
            dpkg-deb -f "$DEB" Depends | grep -q 'libpcap0.8' || fail "package: Depends lacks libpcap0.8"
            grep -q 'deb-systemd-helper enable vxtap.service' "$TMP/control/postinst" || fail "package: postinst does not enable vxtap.service"
            grep -q 'systemd-sysusers' "$TMP/control/postinst" || fail "package: postinst does not create the vxtap user"
            for s in postinst prerm postrm; do
                if [ -f "$TMP/control/$s" ]; then sh -n "$TMP/control/$s" || fail "package $s: sh syntax"; fi
            done
            dpkg-deb -x "$DEB" "$TMP/root"
            cmp -s "$TMP/root/usr/lib/systemd/system/vxtap.service" "$UNIT" || fail "packaged unit differs from $UNIT"
            cmp -s "$TMP/root/etc/vxtap/vxtap.toml" deploy/debian/vxtap.toml || fail "packaged config differs from deploy/debian/vxtap.toml"
            if "$TMP/root/usr/bin/vxtap" --version; then
                BIN="$TMP/root/usr/bin/vxtap"
                if command -v systemd-analyze >/dev/null 2>&1; then
                    verify_unit packaged "$BIN" "$TMP/root/usr/lib/systemd/system/vxtap.service"
                fi
            else
                fail "the packaged binary does not run"
            fi
        elif [ -n "${DEB:-}" ]; then
            fail "cargo deb reported $DEB, which does not exist"
        fi
    fi
fi

# --------------------------------------------------------------------------------------------------
step "vxtap accepts the configs the deployment writes"
STALE=0
if [ -z "$BIN" ] && [ -x target/release/vxtap ]; then
    BIN="$ROOT/target/release/vxtap"
    echo "(no packaged binary: using $BIN)"
    # An old build may not know keys the sources (and so the configs) have gained since.
    if [ -n "$(find crates configs Cargo.toml Cargo.lock -newer "$BIN" -type f -print -quit 2>/dev/null)" ]; then
        STALE=1
        warn "$BIN is older than the sources: config checks with it only warn (rebuild, or run without VXTAP_SKIP_DEB)"
    fi
fi
if [ -n "$BIN" ]; then
    check_config_with "$BIN" deploy/debian/vxtap.toml "the packaged config (deploy/debian/vxtap.toml)" 1
    if [ -f "$TMP/render/default_config.out" ]; then
        check_config_with "$BIN" "$TMP/render/default_config.out" "the Terraform config with default variables" 1
        check_config_with "$BIN" "$TMP/render/full_config.out" \
            "the Terraform config with replay_url, log_format, workers, receivers, recv_buffer and the HTTP mirror set" 0
    fi
    # The unit is Type=notify with a watchdog: the binary must speak sd_notify.
    if ! grep -qa 'WATCHDOG=1' "$BIN"; then
        fail "$BIN does not send sd_notify WATCHDOG=1, but $UNIT is Type=notify with WatchdogSec"
    fi
else
    warn "no vxtap binary (no package built, no target/release/vxtap): configs not run through vxtap"
fi

# --------------------------------------------------------------------------------------------------
echo
if ((${#WARNINGS[@]})); then
    printf 'warning: %s\n' "${WARNINGS[@]}"
fi
if ((${#FAILED[@]})); then
    printf 'FAILED: %s\n' "${FAILED[@]}" >&2
    echo "deploy-check: ${#FAILED[@]} failure(s)" >&2
    exit 1
fi
echo "deploy-check: all deployment checks passed"
