#!/usr/bin/env bash
# Firmware CI: build every image for the Cortex-M4, check that the resource table has its ELF
# section, run the self-test in QEMU (mps2-an386) and check its exit status and summary line,
# then print the footprint table. About 70 s from clean (half of it clippy), seconds when warm.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never
start=$SECONDS
step() { printf '\n== firmware: %s (%ds)\n' "$1" $((SECONDS - start)); }

step "tools"
if command -v rustup >/dev/null 2>&1; then
    rustup target add thumbv7em-none-eabihf >/dev/null
fi
if ! command -v qemu-system-arm >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends qemu-system-arm >/dev/null
fi
if ! command -v arm-none-eabi-gcc >/dev/null 2>&1 || [ ! -d /usr/lib/arm-none-eabi/newlib ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc-arm-none-eabi \
        libnewlib-arm-none-eabi >/dev/null
fi
readelf=$(command -v llvm-readelf || command -v arm-none-eabi-readelf || command -v readelf)

step "cargo fmt --check"
cargo fmt -- --check

step "cargo clippy (default: every role and layout; and the size benchmark's device + Lite only)"
cargo clippy --release --all-targets -- -D warnings
cargo clippy --release --all-targets --no-default-features -- -D warnings

step "build (release profile: opt-level z, lto)"
cargo build --release --bins

step ".resource_table section in the self-test image"
elf=target/thumbv7em-none-eabihf/release/selftest
section=$("$readelf" -S -W "$elf" | grep -E '\.resource_table ' || true)
echo "$section"
[ -n "$section" ] || { echo "no .resource_table section in $elf" >&2; exit 1; }

step "self-test in QEMU"
log=$(mktemp)
status=0
cargo run --release --quiet --bin selftest 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
    echo "self-test failed: exit status $status (1: a check failed or a panic; 124: hang)" >&2
    exit 1
fi
grep -Eq '^[1-9][0-9]* passed, 0 failed$' "$log" || {
    echo "self-test exited 0 without a clean 'N passed, 0 failed' line" >&2
    exit 1
}
rm -f "$log"

step "C firmware: rpmsg-c's thumbv7em archive under RPMsg-Lite's API, both sides, in QEMU"
log=$(mktemp)
status=0
c/build.sh run 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
    echo "C self-test failed: exit status $status (1: a check failed; 124: hang)" >&2
    exit 1
fi
grep -Eq '^[1-9][0-9]* passed, 0 failed$' "$log" || {
    echo "C self-test exited 0 without a clean 'N passed, 0 failed' line" >&2
    exit 1
}
rm -f "$log"

step "footprint against RPMsg-Lite"
./size.sh

step "done"
