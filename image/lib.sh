# Shared helpers for the image scripts (sourced, not executed).
# shellcheck shell=bash

# qemu-user emulates the "max" CPU by default, whose pointer authentication (trixie's arm64
# binaries sign every return address) costs most of the emulated time: a Cortex-A53, the Pi 3's
# core and the oldest the image targets, runs the same binaries about five times faster. The
# variable reaches qemu-aarch64 through binfmt_misc in every chroot process (mmdebstrap, apt,
# maintainer scripts, Ansible's modules).
export QEMU_CPU="${QEMU_CPU:-cortex-a53}"

# Progress lines carry the elapsed time of the step, so a slow emulated stage is easy to spot in a log.
IMAGE_STEP_START=${SECONDS}
step() {
    printf '\n==> [%s +%4ds] %s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - IMAGE_STEP_START))" "$*" >&2
}
info() { printf '    %s\n' "$*" >&2; }
# phase_took NAME: the last line of each script, so the build log shows every phase's time.
phase_took() {
    local took=$((SECONDS - IMAGE_STEP_START))
    printf '\n==> [%s] phase %s took %d min %02d s\n' "$(date -u +%H:%M:%S)" "$1" "$((took / 60))" "$((took % 60))" >&2
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (mounts, chroot, device nodes): run it with sudo"
}

need_tools() {
    local tool missing=()
    for tool in "$@"; do
        command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
    done
    [ "${#missing[@]}" -eq 0 ] ||
        die "missing tools: ${missing[*]}: install the build host's packages with tools/apt-needs image (as root) or the apt-get line in image/README.md"
}

# ensure_binfmt DEBIAN_ARCH: a foreign build runs its binaries in a chroot: binfmt_misc must hand
# them to qemu-*-static with the F flag (the interpreter is opened at registration, so it works
# inside the chroot). Nothing to do for the build host's own architecture. mmdebstrap asks
# arch-test whether the kernel runs the architecture and stops deep inside its run without it, so
# the same check comes first here, with the packages named.
ensure_binfmt() {
    local arch="$1" qemu entry
    [ "${arch}" = "$(dpkg --print-architecture)" ] && return 0
    case "${arch}" in
        arm64) qemu=aarch64 ;;
        amd64) qemu=x86_64 ;;
        *) qemu="${arch}" ;;
    esac
    need_tools arch-test update-binfmts "qemu-${qemu}-static"
    entry="/proc/sys/fs/binfmt_misc/qemu-${qemu}"
    if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if ! grep -qx enabled "${entry}" 2>/dev/null; then
        update-binfmts --enable "qemu-${qemu}" >/dev/null ||
            die "cannot enable qemu-${qemu} in binfmt_misc: apt-get install qemu-user-static binfmt-support"
    fi
    grep -q '^flags:.*F' "${entry}" ||
        die "${entry} lacks the F flag: chroot builds would not find the interpreter"
    arch-test "${arch}" >/dev/null ||
        die "arch-test: this kernel cannot run ${arch} binaries through qemu-${qemu}-static (binfmt_misc)"
}

# debian_arch pi|twin -> arm64|amd64
debian_arch() {
    case "$1" in
        pi) echo arm64 ;;
        twin) echo amd64 ;;
        *) die "unknown target '$1' (pi or twin)" ;;
    esac
}

# mounts_below DIR: mount points at or below DIR, one a line.
mounts_below() {
    findmnt --list --noheadings --output TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1'
}

# A directory that is removed, with anything mounted below it, when the script exits.
WORK_DIRS=()
cleanup_work_dirs() {
    local dir mnt
    for dir in "${WORK_DIRS[@]}"; do
        [ -d "${dir}" ] || continue
        # Unmount leftovers (innermost first) before removing, never rm -rf through a mount.
        for mnt in $(mounts_below "${dir}" | sort -r); do
            umount "${mnt}" 2>/dev/null || umount -l "${mnt}" || true
        done
        if [ -n "$(mounts_below "${dir}")" ]; then
            info "not removing ${dir}: something is still mounted below it"
        else
            rm -rf "${dir}"
        fi
    done
}
