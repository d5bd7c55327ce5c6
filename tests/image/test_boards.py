"""What the README's boards table claims for the Debian image, checked inside the built image.

Each board the image is offered for needs its device tree and boot firmware on the boot partition,
and its Wi-Fi and Bluetooth firmware in the root file system; Raspberry Pi Imager's list offers the
image for those boards' device tags and no other. The Pi 5 is not claimed: the image's kernel has
neither the Pi 5's SD controller nor its RP1 I/O chip (image/README.md, "Boards"), so its tag must
stay out of the list for as long as that is so. Booting the same kernel is test_boot.py's part.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from image_helpers import require_tools

from image import disk, qemuboot

pytestmark = pytest.mark.pi

MIB = 1 << 20


@dataclass(frozen=True)
class Board:
    dtb: str  # on the boot partition (config.txt has upstream_kernel=1: the kernel's own names)
    firmware: str  # the GPU firmware that boots this SoC
    wifi: str  # the board's own brcmfmac settings file, under /usr/lib/firmware/brcm
    bluetooth: str  # the radio's patch file, under /usr/lib/firmware/brcm
    imager: str  # Raspberry Pi Imager's device tag


BOARDS = {
    "Pi 3 B": Board("bcm2837-rpi-3-b.dtb", "start.elf", "brcmfmac43430-sdio.raspberrypi,3-model-b.txt",
                    "BCM43430A1.hcd", "pi3-64bit"),
    "Pi 3 B+": Board("bcm2837-rpi-3-b-plus.dtb", "start.elf",
                     "brcmfmac43455-sdio.raspberrypi,3-model-b-plus.txt", "BCM4345C0.hcd", "pi3-64bit"),
    "Zero 2 W": Board("bcm2837-rpi-zero-2-w.dtb", "start.elf",
                      "brcmfmac43430-sdio.raspberrypi,model-zero-2-w.txt", "BCM43430B0.hcd", "pi3-64bit"),
    "Pi 4 B": Board("bcm2711-rpi-4-b.dtb", "start4.elf", "brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
                    "BCM4345C0.hcd", "pi4-64bit"),
    "Pi 400": Board("bcm2711-rpi-400.dtb", "start4.elf", "brcmfmac43456-sdio.txt", "BCM4345C5.hcd",
                    "pi4-64bit"),
}
# What a kernel needs to boot a Pi 5 from its card and reach its USB, Ethernet and radios.
PI5_KERNEL = ("CONFIG_MMC_SDHCI_BRCMSTB", "CONFIG_MISC_RP1")


@pytest.fixture(scope="module")
def image() -> Path:
    value = os.environ.get("APPLIANCE_IMAGE")
    if not value or not Path(value).exists():
        pytest.fail("APPLIANCE_IMAGE is not a built image: run `make image-test`")
    require_tools("mdir", "debugfs")
    return Path(value)


@pytest.fixture(scope="module")
def root_fs(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _boot, root = disk.card_layout(disk.partitions(image))
    dest = tmp_path_factory.mktemp("root") / "root.part"
    subprocess.run(["dd", f"if={image}", f"of={dest}", "bs=1M", f"skip={root.start // MIB}",
                    f"count={root.size // MIB}", "conv=sparse", "status=none"], check=True)
    return dest


def debugfs(filesystem: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(filesystem)], check=True, capture_output=True,
                          text=True).stdout


def names_in(filesystem: Path, directory: str) -> set[str]:
    # `ls -p`: one /inode/mode/uid/gid/name/size/ line per entry.
    return {line.split("/")[5] for line in debugfs(filesystem, f"ls -p {directory}").splitlines()
            if line.count("/") >= 6}


def kernel_config(root_fs: Path) -> dict[str, str]:
    (config,) = sorted(name for name in names_in(root_fs, "/boot") if name.startswith("config-"))
    return dict(line.split("=", 1) for line in debugfs(root_fs, f"cat /boot/{config}").splitlines()
                if line.startswith("CONFIG_"))


@pytest.mark.parametrize("name", BOARDS)
def test_each_board_has_its_device_tree_boot_firmware_and_radio_firmware(name: str, image: Path,
                                                                          root_fs: Path) -> None:
    board = BOARDS[name]
    boot = set(qemuboot.boot_files(image))
    assert {board.dtb, board.firmware, "config.txt", "cmdline.txt"} <= boot, sorted(boot)
    brcm = names_in(root_fs, "/usr/lib/firmware/brcm")
    assert board.wifi in brcm and board.bluetooth in brcm


def test_config_txt_boots_the_kernel_on_the_card_with_upstream_device_trees(image: Path,
                                                                            tmp_path: Path) -> None:
    config = qemuboot.read_boot_file(image, "config.txt", tmp_path / "config.txt").read_text().splitlines()
    assert "arm_64bit=1" in config and "upstream_kernel=1" in config
    kernel = next(line.split("=", 1)[1] for line in config if line.startswith("kernel="))
    assert kernel in qemuboot.boot_files(image)


def test_the_boot_partition_is_512_mib(image: Path) -> None:
    boot, _root = disk.card_layout(disk.partitions(image))
    assert (boot.start, boot.size) == (4 * MIB, 512 * MIB)


def test_imager_offers_the_image_for_the_boards_it_serves_and_not_the_pi_5(image: Path,
                                                                           root_fs: Path) -> None:
    os_list = image.parent / "os-list.json"
    if not os_list.exists():
        pytest.fail(f"no {os_list}: `make image` writes it")
    (entry,) = json.loads(os_list.read_text())["os_list"]
    assert set(entry["devices"]) == {board.imager for board in BOARDS.values()}
    config = kernel_config(root_fs)
    pi5_ready = all(config.get(option) in {"y", "m"} for option in PI5_KERNEL)
    assert not pi5_ready, "the kernel now drives a Pi 5: check it on one, then add pi5-64bit and a row"
    assert "pi5-64bit" not in entry["devices"]
