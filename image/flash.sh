#!/usr/bin/env bash
# Write the image to a card with bmaptool (only the blocks that hold data, verified against the
# .bmap's checksums), after making sure the device is a whole card that nothing is using.
# Usage: flash.sh IMAGE.img.xz /dev/sdX
# Settings (environment): FLASH_FORCE=1 also accepts a disk that is neither removable nor on USB/SD
# (a card in a reader that does not say it is removable); FLASH_YES=1 does not ask.
# Mounted disks and the disks holding /, /boot, /usr, /var, /home or swap are never written.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "${here}/lib.sh"

[ "$#" -eq 2 ] || die "usage: $0 IMAGE.img.xz /dev/sdX"
image="$1" device="$2"
need_tools bmaptool lsblk findmnt python3

[ -b "${device}" ] || die "${device} is not a block device (lsblk lists the disks)"
device="$(readlink -f "${device}")"
# Whole disk, not mounted, not the running system's, not used by LVM/RAID/dm-crypt, a card unless
# forced: image/disk.py decides (and says why not); this script asks and writes.
force=()
[ "${FLASH_FORCE:-}" != 1 ] || force=(--force)
about="$(PYTHONPATH="${here}/.." python3 -m image.disk check-card "${device}" "${force[@]}")" || exit 1

echo "About to overwrite ${about}"
if [ "${FLASH_YES:-}" != 1 ]; then
    [ -t 0 ] || die "not asking without a terminal: set FLASH_YES=1 to write ${device}"
    read -r -p "Type the device name (${device}) to write it: " answer
    [ "${answer}" = "${device}" ] || die "not written"
fi
step "bmaptool copy ${image} ${device}"
bmaptool copy "${image}" "${device}"
sync
step "done: ${device} holds ${image##*/}"
