#!/usr/bin/env bash
# mmdebstrap essential hook: runs after the Essential packages, before the --include packages.
# Usage: essential.sh ROOTFS
set -euo pipefail
root="$1"

# Every kernel install and every initramfs-tools trigger would build an initramfs, and under
# qemu-user that is half of the emulated build time. Divert update-initramfs to a no-op while
# packages are installed; the customize hook removes the diversion and builds the initramfs once.
chroot "${root}" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
printf '#!/bin/sh\n# Diverted by the image build until the customize hook.\nexit 0\n' \
    >"${root}/usr/sbin/update-initramfs"
chmod 0755 "${root}/usr/sbin/update-initramfs"
