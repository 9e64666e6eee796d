#!/usr/bin/env bash
# Builds the User-Mode Linux kernel that the kernel tests boot (crates/rpmsg-cli/tests/linux_kernel.rs):
# Debian's linux-source-6.1 + our two changes (kernel-changes.py) + our options (kernel-config).
# See docs linux-peer.md section 2 for why each piece is needed.
#
# Prints the absolute path of the built `linux` binary as the LAST line of stdout; progress goes to
# stderr. Idempotent: the binary is cached outside the checkout, in
#   ${RPMSG_UML_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rpmsg-rs/uml}/<key>/linux
# with key = sha256(linux-source-6.1 package version, this script, kernel-changes.py,
# kernel-config), so a cached run takes a few milliseconds and any change to the inputs rebuilds.
# A cold build needs ~1.5 GB of temporary disk in the cache dir and ~3.5 min on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
changes="$here/kernel-changes.py"
config_list="$here/kernel-config"
cache="${RPMSG_UML_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rpmsg-rs/uml}"
tarball=/usr/src/linux-source-6.1.tar.xz

log() { printf 'build-kernel: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- What the build needs, installed with apt-get when missing (CI starts from a clean machine).
command -v dpkg-query >/dev/null || die "needs a Debian-like system (dpkg, apt-get, linux-source-6.1)"
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
missing=()
for pkg in linux-source-6.1 flex bison bc busybox-static cpio; do
    installed "$pkg" || missing+=("$pkg")
done
command -v make >/dev/null && command -v gcc >/dev/null || missing+=(build-essential)
command -v python3 >/dev/null || missing+=(python3)
command -v xz >/dev/null || missing+=(xz-utils)
if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null ||
            die "missing packages: ${missing[*]}; install them as root: apt-get install -y ${missing[*]}"
        sudo=(sudo)
    fi
    log "installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
fi
[[ -r $tarball ]] || die "$tarball not found although linux-source-6.1 is installed"

# --- Cache key and the fast path.
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$({
    printf 'linux-source-6.1 %s\n' "$version"
    cat "${BASH_SOURCE[0]}" "$changes" "$config_list"
} | sha256sum | cut -d' ' -f1)
out="$cache/$key/linux"
if [[ -x $out ]]; then
    log "cached (linux-source-6.1 $version)"
    printf '%s\n' "$out"
    exit 0
fi

# --- Cold build. One build at a time per cache (CI jobs or test runs racing on the same machine).
mkdir -p "$cache"
exec 9>"$cache/.lock"
if ! flock -n 9; then
    log "waiting for another build (lock $cache/.lock)"
    flock 9
fi
if [[ -x $out ]]; then # another process built it while we waited
    printf '%s\n' "$out"
    exit 0
fi
# Trees left by a killed build (we hold the lock, so nobody is using them).
rm -rf "$cache"/build.*

start=$SECONDS
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT # the extracted tree is ~1.5 GB: never leave it behind
trap 'exit 130' INT TERM HUP # so that the EXIT trap runs when killed
buildlog="$work/build.log"
# Runs a build step with its output in the log; on failure shows the log's tail and keeps a copy.
run() {
    if ! "$@" >>"$buildlog" 2>&1; then
        tail -n 60 "$buildlog" >&2
        cp "$buildlog" "$cache/last-failed-build.log"
        die "failed ($((SECONDS - start)) s): $* (full log: $cache/last-failed-build.log)"
    fi
}

log "extracting linux-source-6.1 $version into $work"
run tar -C "$work" -xf "$tarball"
src="$work/linux-source-6.1"
[[ -d $src ]] || die "$tarball did not contain linux-source-6.1/"

log "applying our kernel changes ($((SECONDS - start)) s)"
python3 "$changes" "$src"

# kernel-config: one scripts/config argument list per line, '#' comments.
mapfile -t options < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$config_list")
config_args=()
for line in "${options[@]}"; do
    read -ra words <<<"$line"
    config_args+=("${words[@]}")
done
log "configuring ($((SECONDS - start)) s)"
run make -C "$src" ARCH=um defconfig
run "$src/scripts/config" --file "$src/.config" "${config_args[@]}"
run make -C "$src" ARCH=um olddefconfig
# An option whose dependencies are unmet is silently dropped by olddefconfig: check each one.
config_fail() {
    cp "$src/.config" "$cache/last-failed.config"
    die "CONFIG_$1 after olddefconfig (unmet dependency?); see $cache/last-failed.config"
}
for line in "${options[@]}"; do
    read -ra w <<<"$line"
    case "${w[0]}" in
    -e) grep -qx "CONFIG_${w[1]}=y" "$src/.config" || config_fail "${w[1]} is not y" ;;
    -d) ! grep -q "^CONFIG_${w[1]}=" "$src/.config" || config_fail "${w[1]} is still set" ;;
    --set-val) grep -qx "CONFIG_${w[1]}=${w[2]}" "$src/.config" || config_fail "${w[1]} is not ${w[2]}" ;;
    *) die "kernel-config: unknown option kind: $line" ;;
    esac
done

jobs=$(nproc)
log "building with -j$jobs, niced (about 3.5 min on 2 idle cores; log: $buildlog) ($((SECONDS - start)) s)"
run nice -n 10 make -C "$src" ARCH=um -j"$jobs" linux
[[ -x $src/linux ]] || die "the build produced no $src/linux"

# Into place atomically: a reader sees either no binary or the whole one.
mkdir -p "$cache/$key"
cp "$src/.config" "$cache/$key/config"
cp "$src/linux" "$cache/$key/linux.tmp.$$"
chmod 755 "$cache/$key/linux.tmp.$$"
mv -f "$cache/$key/linux.tmp.$$" "$out"
log "built $out in $((SECONDS - start)) s"
printf '%s\n' "$out"
