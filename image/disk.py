"""Disks and disk images for the image scripts: the one MBR reader (also qemuboot's), the size of
the root partition after customising an image (customize-image.sh), and whether a device may be
overwritten with the image (flash.sh).

Standard library only; the shell keeps mmdebstrap, mounts, the chroot and bmaptool:
    python3 -m image.disk layout IMAGE       -> "BOOT_NR BOOT_START BOOT_SIZE ROOT_NR ROOT_START ROOT_SIZE"
                                               (bytes; the first FAT partition and the last, Linux one)
    python3 -m image.disk shrink-mb DEVICE --free-mb N --current-mb N
                                             -> the root partition's new size in MiB (resize2fs -P)
    python3 -m image.disk check-card DEVICE [--force]
                                             -> one line describing the card, or status 1 and why not
"""

# A command-line tool that runs e2fsprogs with arguments it builds itself and prints its answer.
# ruff: noqa: S603, S607, T201
from __future__ import annotations

import argparse
import json
import math
import re
import struct
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

SECTOR: Final = 512
MIB: Final = 1 << 20
# Partitions end on 4 MiB boundaries: SD cards' erase blocks are 4 MiB or a divisor of it.
ALIGN_MB: Final = 4
# MBR partition types: FAT12/16/32 (CHS and LBA) for the boot partition, Linux for the root.
FAT_TYPES: Final = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E})
LINUX_TYPE: Final = 0x83


# Never written: the disks under these mount points and under swap (the running system).
SYSTEM_MOUNTS: Final = ("/", "/boot", "/boot/efi", "/usr", "/var", "/home")
LSBLK_COLUMNS: Final = "NAME,TYPE,PKNAME,RM,TRAN,SIZE,MODEL,MOUNTPOINTS"


class DiskError(ValueError):
    """The image is not laid out as an appliance card; the message says what was found."""


@dataclass(frozen=True, slots=True)
class Partition:
    number: int
    type_id: int
    start: int  # bytes
    size: int  # bytes


def parse_mbr(mbr: bytes, name: str = "the image") -> list[Partition]:
    """The primary partitions in a 512-byte master boot record."""
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        msg = f"{name} has no MBR partition table: is it a disk image?"
        raise DiskError(msg)
    found = []
    for number in range(1, 5):
        entry = mbr[446 + 16 * (number - 1) : 446 + 16 * number]
        type_id = entry[4]
        start, count = struct.unpack("<II", entry[8:16])
        if type_id and count:
            found.append(Partition(number, type_id, start * SECTOR, count * SECTOR))
    return found


def partitions(image: Path) -> list[Partition]:
    """The primary partitions of an MBR disk image (no tools, no loop devices)."""
    with image.open("rb") as disk:
        return parse_mbr(disk.read(SECTOR), str(image))


def card_layout(found: Sequence[Partition], name: str = "the image") -> tuple[Partition, Partition]:
    """(boot, root) of a Pi card: the first FAT partition and the last partition, a Linux one."""
    fat = [p for p in found if p.type_id in FAT_TYPES]
    if not fat:
        msg = f"{name}: no FAT boot partition (types {[hex(p.type_id) for p in found]})"
        raise DiskError(msg)
    root = found[-1]
    if root.type_id != LINUX_TYPE:
        msg = f"{name}: the last partition ({root.number}) is not a Linux one ({root.type_id:#x})"
        raise DiskError(msg)
    return fat[0], root


def boot_partition(image: Path) -> Partition:
    """The FAT partition (the first one, as on a Pi card)."""
    fat = [p for p in partitions(image) if p.type_id in FAT_TYPES]
    if not fat:
        msg = f"{image} has no FAT partition"
        raise DiskError(msg)
    return fat[0]


def align_mb(size_mb: float) -> int:
    """Up to the next ALIGN_MB boundary."""
    return math.ceil(size_mb / ALIGN_MB) * ALIGN_MB


def shrunk_root_mb(min_blocks: int, block_size: int, free_mb: int, current_mb: int) -> int:
    """After customising: the smallest the file system can be plus `free_mb`, never larger than now."""
    return min(align_mb(min_blocks * block_size / MIB + free_mb), current_mb)


def parse_min_blocks(resize2fs_p: str) -> int:
    """`resize2fs -P`: "Estimated minimum size of the filesystem: 123456"."""
    found = re.search(r"minimum size of the filesystem:\s*(\d+)", resize2fs_p)
    if not found:
        msg = f"resize2fs -P said no minimum size: {resize2fs_p.strip()!r}"
        raise DiskError(msg)
    return int(found[1])


def parse_block_size(dumpe2fs_h: str) -> int:
    """`dumpe2fs -h`: "Block size:               4096"."""
    found = re.search(r"^Block size:\s*(\d+)", dumpe2fs_h, re.MULTILINE)
    if not found:
        msg = f"dumpe2fs -h said no block size: {dumpe2fs_h[:200]!r}"
        raise DiskError(msg)
    return int(found[1])


@dataclass(frozen=True, slots=True)
class BlockDevice:
    """One row of `lsblk --json --list --paths` (a device with several parents has several rows)."""

    name: str
    type: str
    parent: str | None
    removable: bool
    transport: str | None
    size: str
    model: str | None
    mountpoints: tuple[str, ...]


def parse_lsblk(text: str) -> list[BlockDevice]:
    """`lsblk --json --list --paths --output LSBLK_COLUMNS`, every block device of the system."""
    rows: list[dict[str, Any]] = json.loads(text)["blockdevices"]
    return [BlockDevice(
        name=row["name"], type=row["type"], parent=row.get("pkname"),
        removable=row.get("rm") in (True, "1", 1), transport=row.get("tran"), size=row.get("size") or "?",
        model=(row.get("model") or "").strip() or None,
        mountpoints=tuple(m for m in (row.get("mountpoints") or [row.get("mountpoint")]) if m),
    ) for row in rows]


def _children(devices: Sequence[BlockDevice], name: str) -> set[str]:
    """Everything below `name`: partitions, and LVM, RAID or dm-crypt on them."""
    below: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        for device in devices:
            if device.parent == current and device.name not in below:
                below.add(device.name)
                todo.append(device.name)
    return below


def disks_under(devices: Sequence[BlockDevice], name: str) -> set[str]:
    """The whole disks that `name` (a partition, an LVM volume, ...) lives on."""
    found: set[str] = set()
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        seen.add(current)
        for device in (d for d in devices if d.name == current):
            if device.type in ("disk", "loop") and device.parent is None:
                found.add(device.name)
            elif device.parent is not None and device.parent not in seen:
                todo.append(device.parent)
    return found


def card_problem(device: str, devices: Sequence[BlockDevice], system_sources: Iterable[str], *,
                 force: bool = False) -> str | None:
    """Why `device` must not be overwritten with the image, or None when it may.

    Refused always: not a whole disk, mounted (itself or anything on it), holding the running
    system (`system_sources`: the devices under SYSTEM_MOUNTS and swap), used by LVM, RAID or
    dm-crypt. Refused unless `force`: a disk that is neither removable nor on USB or SD (a card
    reader says so). A loop device counts as a whole disk (the tests write into a file through one).
    """
    rows = [d for d in devices if d.name == device]
    if not rows:
        return f"{device} is not a block device (lsblk lists the disks)"
    disk = rows[0]
    if disk.type not in ("disk", "loop"):
        return f"{device} is not a whole disk (a {disk.type}?): give the disk, e.g. /dev/sdb, not /dev/sdb1"
    below = _children(devices, device)
    mounted = sorted({m for d in devices if d.name in below | {device} for m in d.mountpoints})
    if mounted:
        return f"{device} is mounted ({' '.join(mounted)}): unmount it first"
    system = set().union(*(disks_under(devices, source) for source in system_sources))
    if device in system:
        return f"{device} holds the running system (/, /boot, /usr, /var, /home or swap): refusing"
    holders = sorted({d.type for d in devices if d.name in below and d.type != "part"})
    if holders:
        return f"{device} is in use by {' '.join(holders)}: refusing"
    card = device.startswith("/dev/mmcblk") or disk.removable or disk.transport == "usb"
    if not card and not force:
        return (f"{device} ({disk.size} {disk.model or '?'}, transport {disk.transport or 'none'}) is "
                "neither removable nor USB/SD: if it really is the card, run again with FLASH_FORCE=1")
    return None


def describe(device: str, devices: Sequence[BlockDevice]) -> str:
    disk = next(d for d in devices if d.name == device)
    return (f"{device}: {disk.size} {disk.model or '(no model)'}, transport {disk.transport or 'none'}, "
            f"removable {int(disk.removable)}")


def system_sources() -> list[str]:
    """The block devices that hold SYSTEM_MOUNTS and the swap areas of this machine."""
    sources = []
    for mount in SYSTEM_MOUNTS:
        result = subprocess.run(["findmnt", "--noheadings", "--output", "SOURCE", "--target", mount],
                                capture_output=True, text=True, check=False)
        sources += [line.strip() for line in result.stdout.splitlines() if line.startswith("/dev/")]
    swaps = Path("/proc/swaps").read_text().splitlines()[1:]
    return sources + [line.split()[0] for line in swaps if line.startswith("/dev/")]


def _tool_output(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m image.disk", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    layout = commands.add_parser("layout", help="boot and root partitions of a card image, in bytes")
    layout.add_argument("image", type=Path)
    shrink = commands.add_parser("shrink-mb", help="the root partition's size after a shrink, MiB")
    shrink.add_argument("device", help="the ext4 file system (a loop device), not mounted")
    shrink.add_argument("--free-mb", type=int, required=True)
    shrink.add_argument("--current-mb", type=int, required=True)
    check = commands.add_parser("check-card", help="may DEVICE be overwritten with the image?")
    check.add_argument("device")
    check.add_argument("--force", action="store_true", help="also a disk that is not removable/USB/SD")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.command == "layout":
            boot, root = card_layout(partitions(args.image), str(args.image))
            print(boot.number, boot.start, boot.size, root.number, root.start, root.size)
        elif args.command == "check-card":
            device = str(Path(args.device).resolve())
            devices = parse_lsblk(_tool_output("lsblk", "--json", "--list", "--paths", "--output",
                                               LSBLK_COLUMNS))
            problem = card_problem(device, devices, system_sources(), force=args.force)
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                return 1
            print(describe(device, devices))
        else:
            min_blocks = parse_min_blocks(_tool_output("resize2fs", "-P", args.device))
            block_size = parse_block_size(_tool_output("dumpe2fs", "-h", args.device))
            print(shrunk_root_mb(min_blocks, block_size, args.free_mb, args.current_mb))
    except (DiskError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
