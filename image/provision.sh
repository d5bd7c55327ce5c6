#!/usr/bin/env bash
# The provisioning stage: unpack the cached base root file system, run the playbook on it through
# the chroot connection, stamp and clean it, pack it again. An app-only change re-runs only this.
# Usage: provision.sh TARGET BASE.tar OUTPUT.tar
# Settings (environment): see run_playbook and finalize_rootfs in provision-lib.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "${here}/lib.sh"
# shellcheck source=provision-lib.sh
. "${here}/provision-lib.sh"

[ "$#" -eq 3 ] || die "usage: $0 pi|twin BASE.tar OUTPUT.tar"
target="$1" base="$2" output="$3"
arch="$(debian_arch "${target}")"
need_root "provisioning"
ensure_binfmt "${arch}"

# Absolute: it is also the playbook's inventory host name (and the chroot connection's path).
root="$(readlink -f "$(dirname "${output}")")/$(basename "${output%.tar}").d"
WORK_DIRS+=("${root}")
trap 'chroot_unmount "${root}"; cleanup_work_dirs' EXIT
cleanup_work_dirs
mkdir -p "${root}"

step "unpack ${base}"
tar -C "${root}" --numeric-owner --xattrs --xattrs-include='*' -xpf "${base}"

run_playbook "${root}" "${target}"
finalize_rootfs "${root}"

step "pack ${output}"
tar -C "${root}" --numeric-owner --xattrs --xattrs-include='*' -cf "${output}.tmp" .
mv "${output}.tmp" "${output}"
info "$(du -h "${output}" | cut -f1) ${output}"
phase_took "playbook (provision.sh, ${target})"
