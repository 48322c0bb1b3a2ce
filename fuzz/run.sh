#!/usr/bin/env bash
# Runs one fuzz target for a bounded time on the stable toolchain:
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
# TARGET is one of: container decode tokenizer quant coder_roundtrip (or `all`, each for SECONDS).
#
# cargo-fuzz drives libFuzzer; its instrumentation flags are unstable options of rustc, which the
# stable compiler accepts with RUSTC_BOOTSTRAP=1. No sanitizer runtime is used (`--sanitizer none`):
# the crate's unsafe code is the SIMD kernels, which the engine tests compare with the scalar path;
# debug assertions and overflow checks are on (`-a`). The committed corpus (fuzz/corpus/TARGET) is
# read, never written: new inputs go to fuzz/target/corpus/TARGET. A crash leaves its input in
# fuzz/artifacts/TARGET and makes this script exit non-zero; turn it into a regression test.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")"

if [ $# -lt 2 ]; then
    echo "usage: fuzz/run.sh TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
all_targets=(container decode tokenizer quant coder_roundtrip)
if [ "$target" = all ]; then
    for t in "${all_targets[@]}"; do "$self" "$t" "$seconds" "$@"; done
    exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (once)" >&2
    cargo install cargo-fuzz --locked --version 0.13.2
fi

export RUSTC_BOOTSTRAP=1
mkdir -p "target/corpus/$target" "corpus/$target"
echo "== fuzz $target for ${seconds}s" >&2
# -timeout: one input taking longer is a hang and counts as a failure; -rss_limit_mb: likewise for an
# input that makes the decoder allocate what a header claims.
cargo fuzz run --sanitizer none -a --release "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 "$@"
