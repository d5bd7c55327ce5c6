"""The session-signing key: generated on first start, kept in the data dir with mode 0600."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

from appliance.errors import ConfigError

FILE_NAME: Final = "secret_key"


def load_or_create(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / FILE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            msg = f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            raise ConfigError(msg) from None
        key = path.read_text().strip()
        if len(key) < 32:
            msg = f"{path} is too short to be a key; delete it and a new one is made (logs all out)"
            raise ConfigError(msg) from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
