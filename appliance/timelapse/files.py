"""A recording's files: ``data_dir/timelapses/<id>/`` with ``frames/000001.jpg ...``, then
``video.mp4`` and ``poster.jpg``.

Every file is written under a temporary name (``.<name>.tmp``) and renamed, so a power cut
leaves a whole file or none, and the temporary names say what to sweep at start-up. Blocking
calls: the service runs them in a thread.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from appliance.files import write_atomic

ROOT: Final = "timelapses"
FRAMES: Final = "frames"
VIDEO: Final = "video.mp4"
POSTER: Final = "poster.jpg"
PART_SUFFIX: Final = ".tmp"  # appliance.files.temporary_of's
EXTENSIONS: Final = {"image/jpeg": ".jpg", "image/png": ".png"}
FRAME_DIGITS: Final = 6
DIR_MODE: Final = 0o700


def root(data_dir: Path) -> Path:
    return data_dir / ROOT


class RecordingFiles:
    """The files of one recording."""

    def __init__(self, data_dir: Path, recording_id: int) -> None:
        self.dir = root(data_dir) / str(recording_id)
        self.frames_dir = self.dir / FRAMES
        self.video = self.dir / VIDEO
        self.poster = self.dir / POSTER

    def create(self) -> None:
        for directory in (self.dir.parent, self.dir, self.frames_dir):  # each 0700, as data_dir
            directory.mkdir(exist_ok=True, mode=DIR_MODE)

    def frame_path(self, number: int, mime: str) -> Path:
        return self.frames_dir / f"{number:0{FRAME_DIGITS}d}{EXTENSIONS[mime]}"

    def add_frame(self, number: int, mime: str, data: bytes) -> None:
        write_atomic(self.frame_path(number, mime), data)

    def frames(self) -> list[Path]:
        """The whole frames, in order (temporary files are not frames)."""
        if not self.frames_dir.is_dir():
            return []
        return sorted(p for p in self.frames_dir.iterdir()
                      if p.suffix in EXTENSIONS.values() and not p.name.startswith("."))

    def size(self) -> int:
        """Bytes on disk: frames, video, poster."""
        if not self.dir.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file())

    def delete_frames(self) -> None:
        shutil.rmtree(self.frames_dir, ignore_errors=True)

    def delete(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def sweep_parts(self) -> int:
        """Remove half-written files (a cut frame write, a cut render); how many there were."""
        if not self.dir.is_dir():
            return 0
        parts = [p for p in self.dir.rglob(f".*{PART_SUFFIX}") if p.is_file()]
        for part in parts:
            part.unlink()
        return len(parts)


def sweep_orphans(data_dir: Path, known: Iterable[int]) -> list[Path]:
    """Remove directories under timelapses/ that no recording owns (a crash between creating
    one and indexing it, or a row deleted by hand); the removed paths."""
    base = root(data_dir)
    if not base.is_dir():
        return []
    keep = {str(i) for i in known}
    removed = []
    for entry in base.iterdir():
        if entry.name not in keep:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the partition of ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
