#!/usr/bin/env bash
# Build the cached Debian base root filesystem of one target as a tarball, with mmdebstrap.
# Usage: build-base.sh TARGET OUTPUT.tar   (TARGET: pi = arm64 Raspberry Pi, twin = amd64 QEMU twin)
# Settings (environment): IMAGE_SUITE (trixie), IMAGE_MIRROR (http://deb.debian.org/debian),
# IMAGE_EXTRA_PACKAGES (space-separated, added to image/packages/*.list).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "${here}/lib.sh"

[ "$#" -eq 2 ] || die "usage: $0 pi|twin OUTPUT.tar"
target="$1" output="$2"
suite="${IMAGE_SUITE:-trixie}"
mirror="${IMAGE_MIRROR:-http://deb.debian.org/debian}"
arch="$(debian_arch "${target}")"

need_root "building the base root file system"
need_tools mmdebstrap systemctl
ensure_binfmt "${arch}"

# One package a line in the lists; '#' starts a comment.
packages="$(sed -e 's/#.*//' "${here}/packages/common.list" "${here}/packages/${target}.list" |
    tr -s ' \n' ',' | sed -e 's/^,//' -e 's/,$//')"
if [ -n "${IMAGE_EXTRA_PACKAGES:-}" ]; then
    packages="${packages},$(echo "${IMAGE_EXTRA_PACKAGES}" | tr -s ' ' ',')"
fi

step "mmdebstrap ${suite} ${arch} for ${target} (emulated for arm64: about 15-20 minutes on 2 cores)"
info "packages: ${packages}"
mkdir -p "$(dirname "${output}")"
tmp="${output}.tmp"
rm -f "${tmp}"
# --variant=apt: Essential plus apt; everything else is listed explicitly (and no Recommends), so
# the image holds what the appliance needs and nothing that merely came along.
# path-exclude: documentation and man pages are dead weight on an appliance (copyright files stay).
# --skip=cleanup/apt/lists: the playbook installs packages from the cached base without an extra
# 'apt update'; the provisioning stage removes the lists from the final image.
mmdebstrap \
    --mode=root \
    --format=tar \
    --variant=apt \
    --architectures="${arch}" \
    --components=main,non-free-firmware \
    --include="${packages}" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --skip=cleanup/apt/lists \
    --essential-hook="\"${here}/hooks/essential.sh\" \"\$1\"" \
    --customize-hook="\"${here}/hooks/customize.sh\" \"\$1\" ${target} ${suite} ${mirror}" \
    "${suite}" "${tmp}" "${mirror}"
mv "${tmp}" "${output}"
step "base root file system: ${output} ($(du -h "${output}" | cut -f1))"
phase_took "base (mmdebstrap, ${target})"
