"""image/disk.py: the image scripts' one MBR reader, their root partition sizing and the card
checks before flashing, on bytes and canned tool output (no root, no loop devices)."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_disk() -> ModuleType:
    # image/ is the image build's tool package, run as `python3 -m image.disk` from the repository
    # root; the app's venv does not install it, so the test loads the file (as test_flash.py does).
    spec = importlib.util.spec_from_file_location("image_disk", ROOT / "image" / "disk.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


disk = _load_disk()
MIB = 1 << 20


def make_mbr(*entries: tuple[int, int, int]) -> bytes:
    """A master boot record with (type, start MiB, size MiB) partitions, in slot order."""
    table = b"".join(struct.pack("<4xB3xII", type_id, start * 2048, size * 2048)
                     for type_id, start, size in entries)
    return bytes(446) + table.ljust(64, b"\0") + b"\x55\xaa"


def test_a_pi_card_has_a_fat_boot_and_a_linux_root_partition() -> None:
    found = disk.parse_mbr(make_mbr((0x0C, 4, 512), (0x83, 516, 1540)))
    boot, root = disk.card_layout(found)
    assert (boot.number, boot.start, boot.size) == (1, 4 * MIB, 512 * MIB)
    assert (root.number, root.type_id, root.start, root.size) == (2, 0x83, 516 * MIB, 1540 * MIB)


def test_raspberry_pi_os_with_a_fat16_boot_partition_is_a_card_too() -> None:
    boot, root = disk.card_layout(disk.parse_mbr(make_mbr((0x0E, 4, 256), (0x83, 260, 2000))))
    assert boot.type_id == 0x0E and root.number == 2


def test_empty_slots_are_not_partitions() -> None:
    assert [p.number for p in disk.parse_mbr(make_mbr((0x0C, 4, 64), (0, 0, 0), (0x83, 68, 100)))] == [1, 3]


def test_an_image_without_a_partition_table_says_so() -> None:
    with pytest.raises(disk.DiskError, match="no MBR partition table"):
        disk.parse_mbr(bytes(512), "blank.img")


def test_a_card_without_a_fat_partition_or_a_linux_root_is_refused() -> None:
    with pytest.raises(disk.DiskError, match="no FAT boot partition"):
        disk.card_layout(disk.parse_mbr(make_mbr((0x83, 4, 100))))
    with pytest.raises(disk.DiskError, match=r"last partition \(3\) is not a Linux one \(0x82\)"):
        disk.card_layout(disk.parse_mbr(make_mbr((0x0C, 4, 64), (0x83, 68, 100), (0x82, 168, 100))))


def test_partitions_reads_the_image_file(tmp_path: Path) -> None:
    image = tmp_path / "card.img"
    image.write_bytes(make_mbr((0x0C, 4, 64), (0x83, 68, 32)) + bytes(4096))
    assert [p.size for p in disk.partitions(image)] == [64 * MIB, 32 * MIB]
    assert disk.boot_partition(image).number == 1


def test_the_shrunk_root_is_its_minimum_plus_the_free_room_on_a_4_mib_boundary() -> None:
    # 150,000 blocks of 4 KiB = 585.9 MiB, + 768 MiB free = 1353.9 -> 1356.
    assert disk.shrunk_root_mb(150_000, 4096, free_mb=768, current_mb=4096) == 1356
    assert disk.shrunk_root_mb(1024, 1024, free_mb=0, current_mb=100) == 4
    # Never larger than the partition is now.
    assert disk.shrunk_root_mb(150_000, 4096, free_mb=768, current_mb=1000) == 1000


def test_e2fsprogs_output_gives_the_minimum_and_the_block_size() -> None:
    assert disk.parse_min_blocks("resize2fs 1.47.2 (1-Jan-2025)\nEstimated minimum size of the "
                                 "filesystem: 150000\n") == 150_000
    assert disk.parse_block_size("Filesystem volume name:   RASPIROOT\nBlock size:               4096\n"
                                 "Fragment size:            4096\n") == 4096
    with pytest.raises(disk.DiskError, match="no minimum size"):
        disk.parse_min_blocks("resize2fs: Bad magic number in super-block\n")


def test_layout_prints_the_card_in_bytes_for_the_shell(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "card.img"
    image.write_bytes(make_mbr((0x0C, 4, 64), (0x83, 68, 32)))
    assert disk.main(["layout", str(image)]) == 0
    assert capsys.readouterr().out.split() == ["1", str(4 * MIB), str(64 * MIB), "2", str(68 * MIB),
                                               str(32 * MIB)]
    image.write_bytes(bytes(512))
    assert disk.main(["layout", str(image)]) == 1
    assert "no MBR partition table" in capsys.readouterr().err


def lsblk(*rows: tuple[str, str, str | None], removable: str = "", usb: str = "",
          mounts: dict[str, str] | None = None) -> list[object]:
    """Canned `lsblk --json --list --paths` rows: (name, type, parent); some removable, on USB."""
    return disk.parse_lsblk(json.dumps({"blockdevices": [
        {"name": name, "type": kind, "pkname": parent, "rm": name == removable,
         "tran": "usb" if name == usb else ("sata" if kind == "disk" else None), "size": "32G",
         "model": "Card Reader " if name in (removable, usb) else "SSD",
         "mountpoints": [(mounts or {}).get(name)]}
        for name, kind, parent in rows]}))


SYSTEM = [("/dev/sda", "disk", None), ("/dev/sda1", "part", "/dev/sda"), ("/dev/sda2", "part", "/dev/sda")]


def test_a_removable_card_that_nothing_uses_may_be_written() -> None:
    devices = lsblk(*SYSTEM, ("/dev/sdb", "disk", None), ("/dev/sdb1", "part", "/dev/sdb"), usb="/dev/sdb")
    assert disk.card_problem("/dev/sdb", devices, ["/dev/sda2"]) is None
    assert disk.describe("/dev/sdb", devices) == "/dev/sdb: 32G Card Reader, transport usb, removable 0"
    assert disk.card_problem("/dev/mmcblk0", lsblk(("/dev/mmcblk0", "disk", None)), []) is None


def test_the_disk_of_the_running_system_is_never_written_even_forced() -> None:
    # / on LVM on the second partition: the volume's disk is still the system's.
    devices = lsblk(*SYSTEM, ("/dev/mapper/vg-root", "lvm", "/dev/sda2"), removable="/dev/sda")
    problem = disk.card_problem("/dev/sda", devices, ["/dev/mapper/vg-root"], force=True)
    assert problem is not None and "holds the running system" in problem


def test_a_mounted_card_or_a_partition_is_refused() -> None:
    devices = lsblk(*SYSTEM, ("/dev/sdb", "disk", None), ("/dev/sdb1", "part", "/dev/sdb"), usb="/dev/sdb",
                    mounts={"/dev/sdb1": "/media/card"})
    assert "is mounted (/media/card): unmount it first" in str(disk.card_problem("/dev/sdb", devices, []))
    assert "not a whole disk (a part?)" in str(disk.card_problem("/dev/sdb1", devices, []))
    assert "not a block device" in str(disk.card_problem("/dev/sdz", devices, []))


def test_a_card_used_by_dm_crypt_is_refused() -> None:
    devices = lsblk(("/dev/sdb", "disk", None), ("/dev/sdb1", "part", "/dev/sdb"),
                    ("/dev/mapper/secret", "crypt", "/dev/sdb1"), usb="/dev/sdb")
    assert "in use by crypt" in str(disk.card_problem("/dev/sdb", devices, []))


def test_a_fixed_disk_needs_force() -> None:
    devices = lsblk(*SYSTEM, ("/dev/sdc", "disk", None), ("/dev/loop0", "loop", None))
    assert "run again with FLASH_FORCE=1" in str(disk.card_problem("/dev/sdc", devices, ["/dev/sda1"]))
    assert disk.card_problem("/dev/sdc", devices, ["/dev/sda1"], force=True) is None
    assert "FLASH_FORCE=1" in str(disk.card_problem("/dev/loop0", devices, []))
