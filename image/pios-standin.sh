#!/usr/bin/env bash
# A STAND-IN for a Raspberry Pi OS trixie arm64 Lite image, built from Debian packages: the layout
# and first-boot behaviour that `make image BASE_IMAGE=...` and its tests rely on, not Raspberry Pi
# OS itself (Raspberry Pi's archive is not reachable here). Never flash it as Pi OS.
# Usage: pios-standin.sh BASE.tar OUTPUT.img   (BASE.tar: the cached Debian arm64 base, build-base.sh)
#
# What it copies from Pi OS Lite (2025-10 trixie images, as Raspberry Pi Imager sees them):
#   - an MBR with a FAT32 partition labelled bootfs at 4 MiB, 512 MiB long, then ext4 rootfs;
#   - /etc/fstab and cmdline.txt naming both by PARTUUID (the disk id), /boot/firmware the FAT;
#   - /etc/rpi-issue (saying it is a stand-in), hostname raspberrypi, no user account;
#   - cloud-init with its NoCloud seed on the boot partition (user-data, network-config, meta-data;
#     the data source finds the FAT by its label), which is what Imager writes its settings into.
# What it does not copy: Raspberry Pi's kernel, firmware and packages (Debian's linux-image-arm64
# and raspi-firmware boot it instead, so it also boots under QEMU -M virt), raspi-config, and
# Pi OS's package set: the base already holds what the playbook installs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "${here}/lib.sh"
# shellcheck source=provision-lib.sh
. "${here}/provision-lib.sh"

[ "$#" -eq 2 ] || die "usage: $0 BASE.tar OUTPUT.img"
base="$1" output="$2"
need_root "building the Raspberry Pi OS stand-in (chroot, owners and device nodes)"
ensure_binfmt arm64

work="${output}.standin.d"
root="${work}/root"
WORK_DIRS+=("${work}")
trap 'chroot_unmount "${root}"; cleanup_work_dirs' EXIT
cleanup_work_dirs
mkdir -p "${root}"
# The disk id Pi OS's fstab and cmdline.txt name partitions by (PARTUUID=<id>-01, -02).
disk_id="$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"

step "unpack ${base}"
tar -C "${root}" --numeric-owner --xattrs --xattrs-include='*' -xpf "${base}"

step "cloud-init, as Raspberry Pi OS trixie has it (emulated apt)"
chroot_mount "${root}"
chroot "${root}" apt-get -q -o Acquire::Languages=none update >/dev/null
DEBIAN_FRONTEND=noninteractive chroot "${root}" apt-get -q -y --no-install-recommends install cloud-init >/dev/null
chroot_unmount "${root}"

step "Raspberry Pi OS's layout: PARTUUID=${disk_id}-01 bootfs, -02 rootfs; no appliance files"
# The Debian image's own first-boot growth is the appliance's: the customisation adds it.
systemctl --root="${root}" disable --quiet appliance-growroot.service
rm -f "${root}/etc/systemd/system/appliance-growroot.service" "${root}/usr/local/sbin/appliance-growroot"
cat >"${root}/etc/fstab" <<FSTAB
proc                  /proc           proc    defaults          0       0
PARTUUID=${disk_id}-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=${disk_id}-02  /               ext4    defaults,noatime  0       1
FSTAB
echo raspberrypi >"${root}/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\traspberrypi\n' \
    >"${root}/etc/hosts"
cat >"${root}/etc/rpi-issue" <<ISSUE
Raspberry Pi reference STAND-IN $(date -u +%Y-%m-%d)
Not Raspberry Pi OS: a stand-in of Raspberry Pi OS Lite (trixie, arm64)'s layout built from Debian
packages by the appliance's image/pios-standin.sh, for testing make image BASE_IMAGE=... only.
ISSUE
# raspi-firmware writes cmdline.txt from here on every kernel update.
sed -i -e "s|^ROOTPART=.*|ROOTPART=\"PARTUUID=${disk_id}-02\"|" -e 's|^CONSOLES=.*|CONSOLES="serial0,115200 tty1"|' \
    "${root}/etc/default/raspi-firmware"
echo "console=serial0,115200 console=tty1 root=PARTUUID=${disk_id}-02 rootfstype=ext4 fsck.repair=yes rootwait" \
    >"${root}/boot/firmware/cmdline.txt"
cat >"${root}/etc/cloud/cloud.cfg.d/99_raspios-standin.cfg" <<'CFG'
# Raspberry Pi OS stand-in (image/pios-standin.sh): the seed is on the boot partition, found by its
# label, as Raspberry Pi Imager writes it; no default user (Pi OS has none: Imager names one).
datasource_list: [NoCloud, None]
datasource:
  NoCloud:
    fs_label: bootfs
users: []
CFG
# The seed as the image ships it: Imager replaces user-data and network-config.
cat >"${root}/boot/firmware/meta-data" <<'SEED'
# cloud-init meta-data (Raspberry Pi OS stand-in). Changing instance-id makes cloud-init set
# this system up again on the next boot.
dsmode: local
instance-id: raspios-standin
SEED
cat >"${root}/boot/firmware/user-data" <<'SEED'
#cloud-config
# cloud-init user-data (Raspberry Pi OS stand-in): Raspberry Pi Imager writes its settings here
# (user, SSH key, hostname, locale). See https://cloudinit.readthedocs.io/
SEED
cat >"${root}/boot/firmware/network-config" <<'SEED'
# cloud-init network-config (Raspberry Pi OS stand-in): Raspberry Pi Imager writes Wi-Fi here.
network:
  version: 2
SEED

finalize_rootfs "${root}"
[ -z "$(awk -F: '$3 >= 1000 && $3 < 65534 { print $1 }' "${root}/etc/passwd")" ] ||
    die "the stand-in has a user account: Raspberry Pi OS ships none"

step "pack the root file system for mkimage.sh"
tar -C "${root}" --numeric-owner --xattrs --xattrs-include='*' -cf "${work}/rootfs.tar" .
rm -rf "${root}"
IMAGE_TARGET=none IMAGE_BOOT_LABEL=bootfs IMAGE_ROOT_LABEL=rootfs IMAGE_DISK_ID="0x${disk_id}" \
    IMAGE_ROOT_FREE_MB="${IMAGE_ROOT_FREE_MB:-256}" "${here}/mkimage.sh" "${work}/rootfs.tar" "${output}"
phase_took "Raspberry Pi OS stand-in (pios-standin.sh)"
