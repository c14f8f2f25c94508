#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 30) from its committed corpus (fuzz/corpus/TARGET).
# Needs the nightly toolchain; installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
for target in $(cargo +nightly fuzz list); do
    mkdir -p "fuzz/corpus/$target"
    work=$(mktemp -d)
    echo "fuzz $target: ${seconds}s"
    # New inputs go to a scratch directory; the committed corpus is only read.
    cargo +nightly fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
        | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY)' || true
    status=${PIPESTATUS[0]}
    rm -rf "$work"
    if [ "$status" -ne 0 ]; then
        echo "fuzz target $target failed (artifacts in fuzz/artifacts/$target)" >&2
        exit 1
    fi
done
