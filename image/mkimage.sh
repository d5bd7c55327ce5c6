#!/usr/bin/env bash
# Assemble a disk image from a root file system tarball: an MBR with a FAT32 partition labelled
# RASPIFIRM (the tarball's /boot/firmware) and an ext4 partition labelled RASPIROOT (the rest).
# Usage: mkimage.sh ROOTFS.tar OUTPUT.img [KERNEL_DIR]
#   KERNEL_DIR: also copy the newest /boot/vmlinuz-* and initrd.img-* there as vmlinuz and
#   initrd.img, for booting the image directly with QEMU's -kernel/-initrd (the twin).
# Settings (environment): IMAGE_BOOT_MB (512), IMAGE_ROOT_FREE_MB (768); IMAGE_APP_WHEEL (install the
# app into the image's venv first: install_app in provision-lib.sh); for the release stamp
# (write_release in provision-lib.sh): IMAGE_VERSION, IMAGE_BUILD_ID, IMAGE_TARGET (pi|twin), IMAGE_BASE_NAME;
# IMAGE_TARGET=none writes no stamp (the Raspberry Pi OS stand-in, pios-standin.sh, is no appliance).
# IMAGE_BOOT_LABEL (RASPIFIRM), IMAGE_ROOT_LABEL (RASPIROOT), IMAGE_DISK_ID (MBR disk id, 0x + 8 hex
# digits; default: sfdisk picks one).
#
# The partitions are built as files and copied into the image: this needs neither loop partition
# devices nor a vfat driver on the build host (mkfs.vfat -C and mtools write the FAT, mkfs.ext4 -d
# fills the ext4 from a directory).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "${here}/lib.sh"
# shellcheck source=provision-lib.sh
. "${here}/provision-lib.sh"

[ "$#" -ge 2 ] || die "usage: $0 ROOTFS.tar OUTPUT.img [KERNEL_DIR]"
tarball="$1" output="$2" kernel_dir="${3:-}"
boot_mb="${IMAGE_BOOT_MB:-512}"
root_free_mb="${IMAGE_ROOT_FREE_MB:-768}"
# The first partition starts at 4 MiB: erase-block aligned on SD cards, room for the MBR.
offset_mb=4
boot_label="${IMAGE_BOOT_LABEL:-RASPIFIRM}" root_label="${IMAGE_ROOT_LABEL:-RASPIROOT}"

need_root "assembling the image (the root file system keeps its owners and device nodes)"
need_tools mkfs.vfat mcopy mkfs.ext4 sfdisk

work="${output}.d"
WORK_DIRS+=("${work}")
trap cleanup_work_dirs EXIT
cleanup_work_dirs
mkdir -p "${work}/root" "${work}/firmware"

step "unpack ${tarball}"
tar -C "${work}/root" --numeric-owner --xattrs --xattrs-include='*' -xpf "${tarball}"

# The Pi image's app is installed here, by the host's pip (install_app): the playbook stage left it
# out, so an app-only change re-runs this stage and not the emulated playbook.
if [ -n "${IMAGE_APP_WHEEL:-}" ]; then
    arch="$(debian_arch "${IMAGE_TARGET:-pi}")"
    ensure_binfmt "${arch}"
    install_app "${work}/root" "${arch}"
fi

# The release stamp, written here once: the playbook stage's tarball is reused when only the
# version changed (a commit that touches neither the app nor the playbook). A copy goes beside the
# image (OUTPUT.release) for what describes it (os-list.json).
if [ "${IMAGE_TARGET:-}" != none ]; then
    write_release "${work}/root" "${IMAGE_TARGET:-unknown}" "${IMAGE_BASE_NAME:-unknown}"
    cp "${work}/root/etc/appliance-release" "${output}.release"
fi

# /boot/firmware is the FAT partition's mount point: its content goes into the FAT, the directory
# stays (empty) in the root file system.
mkdir -p "${work}/root/boot/firmware"
find "${work}/root/boot/firmware" -mindepth 1 -maxdepth 1 -exec mv -t "${work}/firmware" {} +

if [ -n "${kernel_dir}" ]; then
    kernel="$(find "${work}/root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)"
    [ -n "${kernel}" ] || die "no /boot/vmlinuz-* in ${tarball}"
    initrd="${work}/root/boot/initrd.img-${kernel##*/vmlinuz-}"
    [ -f "${initrd}" ] || die "no ${initrd#"${work}/root"} in ${tarball}"
    mkdir -p "${kernel_dir}"
    cp "${kernel}" "${kernel_dir}/vmlinuz.tmp" && mv "${kernel_dir}/vmlinuz.tmp" "${kernel_dir}/vmlinuz"
    cp "${initrd}" "${kernel_dir}/initrd.img.tmp" && mv "${kernel_dir}/initrd.img.tmp" "${kernel_dir}/initrd.img"
    info "kernel ${kernel##*/} and its initrd copied to ${kernel_dir}"
fi

step "boot partition: FAT32 ${boot_label}, ${boot_mb} MiB"
mkfs.vfat -C -F 32 -n "${boot_label}" "${work}/boot.part" "$((boot_mb * 1024))" >/dev/null
if [ -n "$(ls -A "${work}/firmware")" ]; then
    # mtools refuses FAT geometry it finds odd unless told not to check; -s recursive, -m mtimes.
    MTOOLS_SKIP_CHECK=1 mcopy -s -m -i "${work}/boot.part" "${work}/firmware"/* ::/
fi
info "$(MTOOLS_SKIP_CHECK=1 mdir -i "${work}/boot.part" -w ::/ | tr -s ' \n' ' ' | cut -c1-300)"

# The root file system holds its content plus some room; first boot grows it to fill the card.
used_mb="$(du -s --block-size=1M "${work}/root" | cut -f1)"
root_mb="$(((used_mb * 11 / 10 + root_free_mb + 3) / 4 * 4))"
step "root partition: ext4 ${root_label}, ${root_mb} MiB (${used_mb} MiB used)"
mkfs.ext4 -q -F -L "${root_label}" -d "${work}/root" "${work}/root.part" "${root_mb}M"

step "disk image ${output}"
total_mb="$((offset_mb + boot_mb + root_mb))"
rm -f "${work}/disk.img"
truncate -s "${total_mb}M" "${work}/disk.img"
sfdisk --quiet "${work}/disk.img" <<TABLE
label: dos
${IMAGE_DISK_ID:+label-id: ${IMAGE_DISK_ID}}
unit: sectors

start=$((offset_mb * 2048)), size=$((boot_mb * 2048)), type=c
start=$(((offset_mb + boot_mb) * 2048)), size=$((root_mb * 2048)), type=83
TABLE
# conv=sparse keeps the image's unused blocks as holes: the .bmap then lists only real data.
dd if="${work}/boot.part" of="${work}/disk.img" bs=1M seek="${offset_mb}" conv=notrunc,sparse status=none
dd if="${work}/root.part" of="${work}/disk.img" bs=1M seek="$((offset_mb + boot_mb))" \
    conv=notrunc,sparse status=progress
mv "${work}/disk.img" "${output}"
info "${output}: ${total_mb} MiB, $(du -h "${output}" | cut -f1) allocated"
phase_took "assemble (mkimage.sh)"
