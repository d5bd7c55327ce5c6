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
need_tools bmaptool lsblk findmnt

[ -b "${device}" ] || die "${device} is not a block device (lsblk lists the disks)"
device="$(readlink -f "${device}")"
# A loop device counts as a whole disk (flashing into a file through one is how the tests do it).
case "$(lsblk --nodeps --noheadings --output TYPE "${device}")" in
    disk | loop) ;;
    *) die "${device} is not a whole disk (a partition?): give the disk, e.g. /dev/sdb, not /dev/sdb1" ;;
esac

# Mounted anywhere, including any of its partitions: refuse (bmaptool would corrupt a live fs).
mounted="$(lsblk --noheadings --list --output MOUNTPOINTS "${device}" 2>/dev/null ||
    lsblk --noheadings --list --output MOUNTPOINT "${device}")"
mounted="$(echo "${mounted}" | sed '/^$/d' | tr '\n' ' ')"
[ -z "${mounted}" ] || die "${device} is mounted (${mounted}): unmount it first"

# The disk that holds the running system: refuse, whatever else it looks like.
system_disks() {
    local source dev
    for mnt in / /boot /boot/efi /usr /var /home; do
        source="$(findmnt --noheadings --output SOURCE --target "${mnt}" 2>/dev/null)" || continue
        [ -b "${source}" ] || continue
        # Walk up through partitions, LVM and dm-crypt to the disks underneath.
        lsblk --noheadings --inverse --list --paths --output NAME,TYPE "${source}" | awk '$2 == "disk" {print $1}'
    done
    while read -r dev _; do
        [ -b "${dev}" ] || continue
        lsblk --noheadings --inverse --list --paths --output NAME,TYPE "${dev}" | awk '$2 == "disk" {print $1}'
    done < <(tail -n +2 /proc/swaps)
}
if system_disks | sort -u | grep -qx "${device}"; then
    die "${device} holds the running system (/, /boot, /usr, /var, /home or swap): refusing"
fi
# Used by LVM, RAID or dm-crypt although not mounted: also refuse.
holders="$(lsblk --noheadings --list --output TYPE "${device}" | tail -n +2 | { grep -vx part || true; } | sort -u | tr '\n' ' ')"
[ -z "${holders}" ] || die "${device} is in use by ${holders}: refusing"

removable="$(lsblk --nodeps --noheadings --output RM "${device}" | tr -d ' ')"
transport="$(lsblk --nodeps --noheadings --output TRAN "${device}" | tr -d ' ')"
size="$(lsblk --nodeps --noheadings --output SIZE "${device}" | tr -d ' ')"
model="$(lsblk --nodeps --noheadings --output MODEL "${device}" | sed 's/ *$//')"
case "${device}" in
    /dev/mmcblk*) card=yes ;;
    *) if [ "${removable}" = 1 ] || [ "${transport}" = usb ]; then card=yes; else card=no; fi ;;
esac
if [ "${card}" = no ] && [ "${FLASH_FORCE:-}" != 1 ]; then
    die "${device} (${size} ${model:-?}, transport ${transport:-none}) is neither removable nor USB/SD: \
if it really is the card, run again with FLASH_FORCE=1"
fi

echo "About to overwrite ${device}: ${size} ${model:-(no model)}, transport ${transport:-none}, removable ${removable}"
if [ "${FLASH_YES:-}" != 1 ]; then
    [ -t 0 ] || die "not asking without a terminal: set FLASH_YES=1 to write ${device}"
    read -r -p "Type the device name (${device}) to write it: " answer
    [ "${answer}" = "${device}" ] || die "not written"
fi
step "bmaptool copy ${image} ${device}"
bmaptool copy "${image}" "${device}"
sync
step "done: ${device} holds ${image##*/}"
