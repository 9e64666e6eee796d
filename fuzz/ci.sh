#!/usr/bin/env bash
# The fuzz step of .ci/run: builds the cargo-fuzz targets (nightly) and runs each from its seed
# corpus for a bounded time, two at a time (the CI machines have 2 cores); any crash, invariant
# failure, hang (-timeout) or leak fails the step, and its input is kept in fuzz/artifacts/.
#
# cargo-fuzz and the fuzz build are cached outside the checkout, like the UML kernel:
#   ${RPMSG_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rpmsg-rs/fuzz}/cargo-fuzz-<version>/
#   ${RPMSG_FUZZ_CACHE:-...}/target/
# A cold cache costs ~1 min for cargo-fuzz and ~3 min for the build; a warm one ~20 s.
# RPMSG_FUZZ_SECONDS sets each target's run time (default 30).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
seconds=${RPMSG_FUZZ_SECONDS:-30}
cache="${RPMSG_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rpmsg-rs/fuzz}"
version=0.13.2
start=$SECONDS
log() { printf 'fuzz: %s (%ds)\n' "$*" $((SECONDS - start)) >&2; }

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo_fuzz="$cache/cargo-fuzz-$version/bin/cargo-fuzz"
if [[ ! -x $cargo_fuzz ]]; then
    log "installing cargo-fuzz $version into $cache"
    CARGO_TARGET_DIR="$cache/cargo-fuzz-build" \
        cargo install cargo-fuzz --version "$version" --locked --root "$cache/cargo-fuzz-$version"
    rm -rf "$cache/cargo-fuzz-build"
fi

log "building the targets"
# cargo-fuzz runs `cargo`: the rustup proxy picks nightly from RUSTUP_TOOLCHAIN.
export RUSTUP_TOOLCHAIN=nightly
"$cargo_fuzz" build -a --target-dir "$cache/target" >&2
bin="$cache/target/x86_64-unknown-linux-gnu/release"
targets=$("$cargo_fuzz" list)

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
