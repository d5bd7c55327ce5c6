"""Small files the app keeps in its data dir (the access code, the pin, the printer's address)."""

from __future__ import annotations

import os
from pathlib import Path


def temporary_of(path: Path) -> Path:
    """The name ``path`` is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp")


def write_atomic(path: Path, text: str | bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text``: a reader or a power cut sees the old file or the new one,
    never half of one; the mode holds from the first byte (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_of(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode passes through the umask
        rest = memoryview(text.encode() if isinstance(text, str) else text)
        while rest:  # a write may take less than all (a filling disk), never silently here
            rest = rest[os.write(fd, rest):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)  # a full disk keeps no half file
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)
