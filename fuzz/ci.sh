#!/usr/bin/env bash
# The fuzz step of .ci/run: builds the cargo-fuzz targets (nightly) and runs each from its seed
# corpus for a bounded time, two at a time (the CI machines have 2 cores); any crash, invariant
# failure, hang (-timeout) or leak fails the step, and its input is kept in fuzz/artifacts/.
#
# The build is cargo-fuzz 0.13.2's `cargo fuzz build -a` done with plain cargo (the same
# RUSTFLAGS, profile and target directory layout, so by-hand `cargo fuzz` runs share it):
# installing cargo-fuzz cost 2.5 min of a cold CI run for what is a wrapper around this build.
# The build is cached outside the checkout, like the UML kernel:
#   ${RPMSG_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rpmsg-rs/fuzz}/target/
# Measured on the shared 2-core CI machine: a cold cache costs ~3.5 min for the build, a warm one
# 1-50 s (the core changed or not); the runs take 95 s.
# RPMSG_FUZZ_SECONDS sets each target's run time (default 30).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
seconds=${RPMSG_FUZZ_SECONDS:-30}
cache="${RPMSG_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rpmsg-rs/fuzz}"
start=$SECONDS
log() { printf 'fuzz: %s (%ds)\n' "$*" $((SECONDS - start)) >&2; }

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

log "building the targets"
# What `cargo fuzz build -a` (cargo-fuzz 0.13.2, default sanitizer: address) runs.
triple=x86_64-unknown-linux-gnu
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" --cfg fuzzing -Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Zsanitizer=address"
flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions -Ccodegen-units=1"
ASAN_OPTIONS="detect_odr_violation=0" RUSTFLAGS="$flags" \
    cargo +nightly build --manifest-path "$here/Cargo.toml" --target "$triple" --release \
    --config 'profile.release.debug="line-tables-only"' --bins --target-dir "$cache/target" >&2
bin="$cache/target/$triple/release"
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -vx rpmsg-fuzz)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p artifacts
run() {
    local t=$1
    mkdir -p "$work/$t"
    # New inputs go to the scratch directory (first), never into the committed corpus.
    # A fixed seed: CI is a gate that replays the same exploration each time (long runs by hand
    # explore anew; RPMSG_FUZZ_SEED changes it).
    "$bin/$t" "$work/$t" "corpus/$t" -max_total_time="$seconds" -timeout=10 -max_len=4096 \
        -seed="${RPMSG_FUZZ_SEED:-1}" \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t-" \
        >"$work/$t.log" 2>&1
}
failed=()
set -- $targets
while (($#)); do
    pids=()
    names=()
    for t in "$1" "${2:-}"; do
        [[ -n $t ]] || continue
        run "$t" &
        pids+=($!)
        names+=("$t")
    done
    shift $((${#names[@]}))
    for i in "${!pids[@]}"; do
        t=${names[$i]}
        if wait "${pids[$i]}"; then
            log "$t: $(grep -E '^#[0-9]+\s+DONE' "$work/$t.log" | tail -n 1)"
        else
            log "$t FAILED:"
            tail -n 60 "$work/$t.log" >&2
            failed+=("$t")
        fi
    done
done
if ((${#failed[@]})); then
    log "findings in: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
log "every target ran ${seconds}s without a finding"
