"""Image tests: slow, need root and QEMU; not part of `make test`.

Markers: `tools` (the image scripts on small inputs, seconds, root), `pi` (boots the arm64 image,
minutes), `twin` (boots the amd64 twin), `pios` and `pios_boot` (a customised Raspberry Pi OS image,
test_pios.py). `make image-test` runs tools and pi, `make twin-test` twin, `make pios-test` pios,
`make pios-boot-test` both pios markers.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_helpers import require_root, require_tools


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tools: image scripts on small inputs (root, seconds)")
    config.addinivalue_line("markers", "pi: boots the arm64 Pi image in QEMU (minutes)")
    config.addinivalue_line("markers", "twin: boots the amd64 twin in QEMU")
    config.addinivalue_line("markers", "pios: a customised Pi OS image against its base (root, seconds)")
    config.addinivalue_line("markers", "pios_boot: boots a customised Pi OS image in QEMU (minutes)")


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway ed25519 key pair; the first-boot file gives its public half to the admin."""
    require_tools("ssh-keygen", "ssh")
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-test", "-f", str(key)],
                   check=True)
    return key


@pytest.fixture
def loop_image(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A 64 MiB file attached to a loop device, detached afterwards."""
    require_root()
    backing = tmp_path / "loop.img"
    with backing.open("wb") as stream:
        stream.truncate(64 << 20)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        yield backing, device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
