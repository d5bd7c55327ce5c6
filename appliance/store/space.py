"""Room to keep working on a full SD card: a reserve file the database gives back when it must.

Whatever fills the card (a user's files, a runaway log), the owner still has to log in, see why,
and delete something. Those are writes too (a session row, a deleted video's row), so the data dir
holds a reserve: a file of ``size`` bytes whose blocks are allocated (``posix_fallocate``: blocks
taken, no data written, so it costs the card nothing). When SQLite says the disk is full, the
database gives the reserve back and from then on refuses the writes that can wait (readings,
frames, last-seen) until there is room to take it again. The database looks before each write
(one statvfs) and when /status asks, so it usually gives the reserve back before SQLite fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Final

RESERVE_NAME: Final = ".space-reserve"


class Reserve:
    def __init__(self, directory: Path, size: int) -> None:
        self.path = directory / RESERVE_NAME
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def free(self) -> int:
        """Bytes free to unprivileged writers on the data dir's filesystem."""
        return shutil.disk_usage(self.path.parent).free

    def restore(self) -> bool:
        """Take the reserve (again) if it is off and twice its size is free; True when it is
        held. Given back below its size, taken at twice: one reserve apart, so it never flaps."""
        if self.size <= 0 or self.held:
            return True
        try:
            if self.free() < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            self.release()
            return False
        return True

    def release(self) -> bool:
        """Give the reserve's blocks back; True if there was one to give."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        except OSError:
            with contextlib.suppress(OSError):
                os.truncate(self.path, 0)
        return True
