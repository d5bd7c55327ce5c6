#!/usr/bin/env bash
# Customise an existing Raspberry Pi card image (Raspberry Pi OS trixie arm64 Lite, or an image
# from this build) with the same playbook instead of building Debian from scratch.
# Usage: customize-image.sh BASE_IMAGE(.img|.img.xz) OUTPUT.img
# Settings (environment): IMAGE_APP_WHEEL (the app, installed by install_app after the playbook;
# IMAGE_WHEEL empty then), IMAGE_GROW_MB (2048): room added to the root file system for the
# playbook; the result is shrunk again to its content plus IMAGE_ROOT_FREE_MB (768), and the
# base's own first-boot resizing (or appliance-growroot) fills the card.
#
# The partition table, disk identifier, labels and boot partition's volume id stay as they were,
# so the base's cmdline.txt and fstab (PARTUUID= or LABEL=) keep working. The FAT partition is
# not mounted (this host may have no vfat driver): its files are copied into the root file
# system's /boot/firmware for the playbook and written back into a new FAT afterwards.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "${here}/lib.sh"
# shellcheck source=provision-lib.sh
. "${here}/provision-lib.sh"

[ "$#" -eq 2 ] || die "usage: $0 BASE_IMAGE OUTPUT.img"
base="$1" output="$2"
grow_mb="${IMAGE_GROW_MB:-2048}"
root_free_mb="${IMAGE_ROOT_FREE_MB:-768}"
[ -f "${base}" ] || die "BASE_IMAGE ${base} is not a file"
need_root "customising an image (loop device, mount, chroot)"
need_tools python3 losetup sfdisk e2fsck resize2fs mkfs.vfat mcopy blkid fallocate
ensure_binfmt arm64

work="${output}.d"
disk="${work}/disk.img"
root="${work}/root"
loop=""
WORK_DIRS+=("${work}")
finish() {
    chroot_unmount "${root}"
    if mountpoint -q "${root}" 2>/dev/null; then umount "${root}" || umount -l "${root}"; fi
    if [ -n "${loop}" ]; then losetup -d "${loop}" 2>/dev/null || true; fi
    cleanup_work_dirs
}
trap finish EXIT
cleanup_work_dirs
mkdir -p "${root}"

step "copy ${base} (sparse)"
case "${base}" in
    *.xz) xz -dc "${base}" | dd of="${disk}" bs=1M conv=sparse iflag=fullblock status=progress ;;
    *) cp --sparse=always "${base}" "${disk}" ;;
esac

# The boot partition is the first FAT one, the root the last, a Linux one (image/disk.py, bytes).
layout() { PYTHONPATH="${here}/.." python3 -m image.disk layout "${disk}"; }
read -r boot_nr boot_offset boot_bytes root_nr root_offset _ <<<"$(layout)"
boot_label="$(blkid --probe --offset "${boot_offset}" --match-tag LABEL --output value "${disk}" || true)"
boot_label="${boot_label:-RASPIFIRM}"
boot_uuid="$(blkid --probe --offset "${boot_offset}" --match-tag UUID --output value "${disk}" || true)"
boot_volid="${boot_uuid//-/}"
info "boot: partition ${boot_nr}, FAT '${boot_label}' ${boot_uuid}; root: partition ${root_nr}"

step "grow the root partition by ${grow_mb} MiB for the playbook"
truncate -s "+${grow_mb}M" "${disk}"
echo ', +' | sfdisk --quiet --no-reread --no-tell-kernel -N "${root_nr}" "${disk}"
read -r _ _ _ _ _ root_bytes <<<"$(layout)"
loop="$(losetup --find --show --offset "${root_offset}" --sizelimit "${root_bytes}" "${disk}")"
e2fsck -f -y "${loop}" >/dev/null || [ "$?" -le 1 ] || die "e2fsck found errors it could not fix in ${base}"
resize2fs "${loop}" >/dev/null
mount "${loop}" "${root}"

step "copy the boot partition's files into /boot/firmware for the playbook"
mkdir -p "${root}/boot/firmware"
[ -z "$(ls -A "${root}/boot/firmware")" ] || die "${base}: /boot/firmware in the root file system is not empty"
MTOOLS_SKIP_CHECK=1 mcopy -s -m -n -i "${disk}@@${boot_offset}" '::/*' "${root}/boot/firmware/"

# appliance-growroot, the same first-boot growth as the Debian image (a no-op when the base's own
# resizing got there first). Nothing else from image/files: fstab and hostname are the base's.
install -D -m 0755 "${here}/files/common/usr/local/sbin/appliance-growroot" "${root}/usr/local/sbin/appliance-growroot"
install -D -m 0644 "${here}/files/common/etc/systemd/system/appliance-growroot.service" \
    "${root}/etc/systemd/system/appliance-growroot.service"
systemctl --root="${root}" enable --quiet appliance-growroot.service

run_playbook "${root}" pi
# The app, by the host's pip as in mkimage.sh (the playbook made the venv and left the wheel out).
[ -z "${IMAGE_APP_WHEEL:-}" ] || install_app "${root}" arm64
finalize_rootfs "${root}"
write_release "${root}" pi "$(basename "${base}")"
cp "${root}/etc/appliance-release" "${output}.release"

step "write the boot partition back (FAT '${boot_label}', same volume id)"
mkfs.vfat -C -F 32 -n "${boot_label}" ${boot_volid:+-i "${boot_volid}"} "${work}/boot.part" \
    "$((boot_bytes / 1024))" >/dev/null
if [ -n "$(ls -A "${root}/boot/firmware")" ]; then
    MTOOLS_SKIP_CHECK=1 mcopy -s -m -i "${work}/boot.part" "${root}/boot/firmware"/* ::/
fi
find "${root}/boot/firmware" -mindepth 1 -delete
# Punch the old partition out first: dd conv=sparse skips zero blocks, and the old FAT's bytes
# must not survive there.
fallocate --punch-hole --offset "${boot_offset}" --length "${boot_bytes}" "${disk}"
dd if="${work}/boot.part" of="${disk}" bs=1M seek="${boot_offset}" oflag=seek_bytes conv=notrunc,sparse status=none

step "shrink the root file system to its content plus ${root_free_mb} MiB"
umount "${root}"
e2fsck -f -y "${loop}" >/dev/null || [ "$?" -le 1 ] || die "e2fsck found errors after provisioning"
new_mb="$(PYTHONPATH="${here}/.." python3 -m image.disk shrink-mb "${loop}" --free-mb "${root_free_mb}" \
    --current-mb "$((root_bytes / 1048576))")"
resize2fs "${loop}" "${new_mb}M" >/dev/null
# Blocks the playbook freed (the app's old files, apt's lists) and blocks the shrink moved data
# away from still hold their old bytes: discarded, they become holes in the image file and cost
# nothing in the .xz. (fstrim while mounted, before the shrink, left them: customising an image of
# this build gave a root partition with 736 MiB of data instead of 635, and a 310 MiB .xz.)
e2fsck -f -y -E discard "${loop}" >/dev/null || [ "$?" -le 1 ] || die "e2fsck found errors after shrinking"
losetup -d "${loop}"
loop=""
echo ",$((new_mb * 2048))" | sfdisk --quiet --no-reread --no-tell-kernel -N "${root_nr}" "${disk}"
truncate -s "$((root_offset + new_mb * 1048576))" "${disk}"

mv "${disk}" "${output}"
info "${output}: $(du -h --apparent-size "${output}" | cut -f1), $(du -h "${output}" | cut -f1) allocated"
phase_took "customise (customize-image.sh)"
