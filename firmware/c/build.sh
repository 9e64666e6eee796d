#!/usr/bin/env bash
# The C firmware: rpmsg-c's thumbv7em archive (profile c-min: opt-level z, lto, panic abort)
# linked into C programs with Debian's arm-none-eabi-gcc and newlib, for QEMU's mps2-an386.
#
#   ./build.sh            build selftest, size-remote and size-empty
#   ./build.sh run        and run the self-test in QEMU (exit status 0 only if all checks passed)
#   ./build.sh size       and print the footprint line (flash text+data, RAM data+bss, the empty
#                         image subtracted) beside RPMsg-Lite's
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
out=$target_dir/capi-firmware
mkdir -p "$out"

# Both roles for the self-test; the remote's role only for the footprint (as an RPMsg-Lite remote
# leaves rpmsg_lite_master_init out), in a target dir of its own so the two archives coexist.
(cd "$root" && cargo build -q -p rpmsg-c --target thumbv7em-none-eabihf --profile c-min)
lib=$target_dir/thumbv7em-none-eabihf/c-min/librpmsg_c.a
(cd "$root" && CARGO_TARGET_DIR=$target_dir/capi-remote-only cargo build -q -p rpmsg-c \
    --target thumbv7em-none-eabihf --profile c-min --no-default-features --features remote)
lib_remote=$target_dir/capi-remote-only/thumbv7em-none-eabihf/c-min/librpmsg_c.a
inc=$root/crates/rpmsg-c/include
glue=$root/crates/rpmsg-c/src/c/rpmsg_c_glue.c

cc=arm-none-eabi-gcc
cflags=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -g -std=c11
    -Wall -Wextra -Werror -ffunction-sections -fdata-sections -I"$inc" -I.)
ldflags=(-T link.ld -nostartfiles -Wl,--gc-sections -Wl,-z,noexecstack)

"$cc" "${cflags[@]}" -o "$out/selftest.elf" startup.c port.c selftest.c "$glue" "$lib" \
    --specs=rdimon.specs "${ldflags[@]}"
"$cc" "${cflags[@]}" -o "$out/size-remote.elf" startup.c port.c size_remote.c "$glue" "$lib_remote" \
    --specs=nosys.specs "${ldflags[@]}"
"$cc" "${cflags[@]}" -o "$out/size-empty.elf" startup.c size_empty.c --specs=nosys.specs "${ldflags[@]}"

case "${1:-}" in
run)
    timeout 120 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
        -semihosting-config enable=on,target=native -kernel "$out/selftest.elf"
    ;;
size)
    tdb() { arm-none-eabi-size "$1" | awk 'NR == 2 { print $1, $2, $3 }'; }
    read -r rt rd rb < <(tdb "$out/size-remote.elf")
    read -r et ed eb < <(tdb "$out/size-empty.elf")
    echo "rpmsg-c minimal remote (C, RPMsg-Lite static API on the archive, GCC 12 -Os, port included):" \
        "flash $((rt + rd - et - ed)) B, RAM $((rd + rb - ed - eb)) B;" \
        "RPMsg-Lite's own: 2,212 B / 300 B"
    ;;
esac
