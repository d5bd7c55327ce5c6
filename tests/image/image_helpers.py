"""Paths and guards shared by the image tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "image"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mkfs -d with owners)")


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (see image/README.md)")
