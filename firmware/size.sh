#!/usr/bin/env bash
# Footprint of rpmsg on a Cortex-M4 against RPMsg-Lite's.
#
# Builds the minimal remote (`size-remote`: init, one callback endpoint, send, receive, with
# `rpmsg::compact::Remote` and its `State` in `.bss`), the same user on the full `rpmsg::Link` (`size-remote-link`) and an
# empty cortex-m-rt firmware (`size-empty`) without this package's default `full` feature, so the
# core has only the device role and RPMsg-Lite's layout (its `role-device` and `layout-lite`
# features; the build-time choice RPMsg-Lite makes), with the release profile of this workspace
# (opt-level "z", lto, codegen-units 1, panic abort), and prints flash (text + data) and static
# RAM (data + bss) of each, their difference (what rpmsg costs), and the RPMsg-Lite anchor:
# static API, GCC 12 -Os, Cortex-M4, 2,648 B flash and 424 B RAM, measured the same way (an
# empty firmware subtracted). Stack is not counted, in either figure.
#
# Usage: ./size.sh [--symbols]   (--symbols: also the 25 largest functions of size-remote)
set -euo pipefail
cd "$(dirname "$0")"

ANCHOR_FLASH=2648
ANCHOR_RAM=424
TARGET=thumbv7em-none-eabihf
OUT=target/$TARGET/release

size_tool=""
for t in llvm-size rust-size arm-none-eabi-size; do
    if command -v "$t" >/dev/null 2>&1; then
        size_tool=$t
        break
    fi
done
if [ -z "$size_tool" ]; then
    echo "size.sh: needs llvm-size, rust-size (cargo-binutils) or arm-none-eabi-size" >&2
    exit 2
fi

cargo build --release --quiet --no-default-features --bin size-remote --bin size-empty
# The `Link` version needs a clock for its timeouts.
cargo build --release --quiet --no-default-features --features clock --bin size-remote-link

# "text data bss" of an ELF, Berkeley format.
tdb() { "$size_tool" "$1" | awk 'NR == 2 { print $1, $2, $3 }'; }
read -r rt rd rb < <(tdb "$OUT/size-remote")
read -r lt ld lb < <(tdb "$OUT/size-remote-link")
read -r et ed eb < <(tdb "$OUT/size-empty")

flash_r=$((rt + rd)) ram_r=$((rd + rb))
flash_e=$((et + ed)) ram_e=$((ed + eb))
flash_d=$((flash_r - flash_e)) ram_d=$((ram_r - ram_e))
flash_l=$((lt + ld - flash_e)) ram_l=$((ld + lb - ram_e))
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

echo "rpmsg footprint, $TARGET, opt-level z + lto + codegen-units 1 + panic abort ($size_tool)"
echo
printf '| %-44s | %17s | %14s |\n' "image" "flash text+data" "RAM data+bss"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..18}):" "$(printf -- '-%.0s' {1..15}):"
printf '| %-44s | %15d B | %12d B |\n' "size-remote: minimal remote, compact::Remote" "$flash_r" "$ram_r"
printf '| %-44s | %15d B | %12d B |\n' "size-empty: empty cortex-m-rt firmware" "$flash_e" "$ram_e"
printf '| %-44s | %15d B | %12d B |\n' "rpmsg (difference)" "$flash_d" "$ram_d"
printf '| %-44s | %15d B | %12d B |\n' "the same user on rpmsg::Link (difference)" "$flash_l" "$ram_l"
printf '| %-44s | %15d B | %12d B |\n' "RPMsg-Lite static API, GCC 12 -Os (anchor)" "$ANCHOR_FLASH" "$ANCHOR_RAM"
printf '| %-44s | %17s | %14s |\n' "rpmsg / RPMsg-Lite" "$(ratio $flash_d $ANCHOR_FLASH)" "$(ratio $ram_d $ANCHOR_RAM)"
echo
verdict() {
    if [ "$1" -le "$2" ]; then echo "smaller or equal"; else echo "LARGER by $(($1 - $2)) B"; fi
}
echo "compact::Remote against RPMsg-Lite: flash $(verdict $flash_d $ANCHOR_FLASH); RAM $(verdict $ram_d $ANCHOR_RAM)"
# The remote's state is meant to be all zero (`.bss`): an initialised image of it would cost
# flash and a start-up copy.
state=$(llvm-nm -C "$OUT/size-remote" 2>/dev/null |
    awk '$3 ~ /^size_remote::STATE(::h[0-9a-f]+)?$/ { print $2 }' || true)
echo "size-remote: .data ${rd} B; the remote's State in $(case "$state" in b | B) echo ".bss" ;; d | D) echo ".data (not zero!)" ;; *) echo "? (llvm-nm)" ;; esac)"

# The C library (crates/rpmsg-c) under the same minimal remote, written in C against
# RPMsg-Lite's API and built with Debian's arm-none-eabi-gcc 12 -Os (firmware/c/build.sh).
if command -v arm-none-eabi-gcc >/dev/null 2>&1; then
    echo
    c/build.sh size | tail -n 1
fi

if [ "${1:-}" = "--symbols" ]; then
    echo
    echo "largest functions and data of size-remote (bytes):"
    llvm-nm --size-sort -S -C --radix=d "$OUT/size-remote" | awk '$3 ~ /[tTrRbBdD]/' |
        tail -25 | awk '{ n = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", n); printf "%7d %s %s\n", $2, $3, n }' |
        sed -E 's/::h[0-9a-f]{16}$//; s/_?\$LT\$/</g; s/\$GT\$/>/g; s/\$u20\$/ /g; s/\$C\$/,/g;
                s/\$RF\$/\&/g; s/\$u7b\$/{/g; s/\$u7d\$/}/g; s/\.\./::/g'
fi
