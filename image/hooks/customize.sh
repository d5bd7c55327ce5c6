#!/usr/bin/env bash
# mmdebstrap customize hook: after every package is installed, before mmdebstrap's cleanup.
# Usage: customize.sh ROOTFS TARGET SUITE MIRROR   (TARGET: pi | twin)
set -euo pipefail
root="$1" target="$2" suite="$3" mirror="$4"
here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../lib.sh
. "${here}/lib.sh"

step "customize: copy image/files/common and image/files/${target}"
for dir in "${here}/files/common" "${here}/files/${target}"; do
    [ -d "${dir}" ] || continue
    # --no-same-owner/--owner: the files belong to root in the image, whoever checked them out.
    tar -C "${dir}" --owner=root --group=root --mode=go-w -cf - . | tar -C "${root}" --no-overwrite-dir -xf -
done

# Debian's apt sources, including security and point-release updates (mmdebstrap wrote only the
# suite it was given); non-free-firmware for the Wi-Fi/Bluetooth firmware.
rm -f "${root}/etc/apt/sources.list"
cat >"${root}/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${mirror}
Suites: ${suite} ${suite}-updates
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.debian.org/debian-security
Suites: ${suite}-security
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

if [ "${target}" = pi ]; then
    step "customize: configure raspi-firmware (root by label, consoles, no CMA override)"
    # In a chroot the package's hook guesses the root device and consoles from the build host, and
    # cannot see which Pi it will run on: its CMA=64M default makes a Pi 4 unbootable unless it
    # detects the Pi 4 at run time, and a headless appliance needs no CMA pool for the GPU.
    conf="${root}/etc/default/raspi-firmware"
    sed -i -e 's|^#\?ROOTPART=.*|ROOTPART="LABEL=RASPIROOT"|' \
        -e 's|^#\?CONSOLES=.*|CONSOLES="tty0 ttyS1,115200"|' \
        -e 's|^#\?CMA=.*|CMA=0|' "${conf}"
    for setting in 'ROOTPART="LABEL=RASPIROOT"' 'CONSOLES="tty0 ttyS1,115200"' 'CMA=0'; do
        grep -qx "${setting}" "${conf}" || die "${conf}: could not set ${setting} (format changed?)"
    done
fi

# zstd: smaller than gzip and quicker to unpack on a Pi's slow card. FSTYPE: the fsck hook would
# probe the root device to learn its type, and there is no such device in the chroot.
printf '# Written by the image build (image/hooks/customize.sh).\nCOMPRESS=zstd\nFSTYPE=ext4\n' \
    >"${root}/etc/initramfs-tools/conf.d/appliance.conf"

step "customize: enable growing the root file system on first boot"
systemctl --root="${root}" enable --quiet appliance-growroot.service

step "customize: build the initramfs once (update-initramfs was diverted during installation)"
rm -f "${root}/usr/sbin/update-initramfs"
chroot "${root}" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
chroot "${root}" update-initramfs -c -k all
if [ "${target}" = pi ]; then
    # raspi-firmware's post-update hook copied the kernel, initrd and DTBs and wrote config.txt.
    for f in config.txt cmdline.txt start4.elf bootcode.bin; do
        [ -e "${root}/boot/firmware/${f}" ] || die "/boot/firmware/${f} is missing after update-initramfs"
    done
    info "cmdline.txt: $(cat "${root}/boot/firmware/cmdline.txt")"
fi
