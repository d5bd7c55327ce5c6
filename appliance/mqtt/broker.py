"""The embedded broker's files: mosquitto's password file and ACL, made from the scanners table.

Only the main appliance writes them (atomically, so mosquitto never reads half a file), and
then sends mosquitto SIGHUP, which makes it read both again: a revoked scanner cannot log in
from then on. Supervisor runs mosquitto as the appliance's own user with the configuration
ansible's appliance role installs (ansible/roles/appliance/templates/mosquitto.conf.j2), which
points at these files and at MOSQUITTO_PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from appliance.auth.scanners import ScannerRecord, mosquitto_hash
from appliance.files import write_atomic
from appliance.mqtt import sightings
from appliance.mqtt.client import EMBEDDED_USER, embedded_password_file
from appliance.settings import Settings

_LOGGER = logging.getLogger(__name__)

PASSWORD_FILE: Final = "passwd"  # noqa: S105 - a file name
ACL_FILE: Final = "acl"
MOSQUITTO_PID: Final = "mosquitto.pid"


def directory(settings: Settings) -> Path:
    return settings.data_dir / "mqtt"


def own_password(settings: Settings) -> str:
    """The main appliance's password to its own broker, made on first use."""
    path = embedded_password_file(settings)
    if not path.exists():
        write_atomic(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip()


def render_passwd(own: str, scanners: Iterable[ScannerRecord]) -> str:
    # The appliance's own line has a salt derived from its 256-bit password, so the file is the
    # same text while nothing changed (and is not rewritten).
    salt = hashlib.sha256(own.encode()).digest()[:12]
    lines = [f"{EMBEDDED_USER}:{mosquitto_hash(own, salt)}"]
    lines += [f"{scanner.id}:{scanner.password_hash}" for scanner in scanners]
    return "\n".join(lines) + "\n"


def render_acl(site: str, scanners: Iterable[ScannerRecord]) -> str:
    """The appliance reads and writes everything; a scanner writes only its own two topics."""
    lines = [f"user {EMBEDDED_USER}", "topic readwrite #", ""]
    for scanner in scanners:
        lines += [f"user {scanner.id}",
                  f"topic write {sightings.sightings_topic(site, scanner.id)}",
                  f"topic write {sightings.status_topic(site, scanner.id)}", ""]
    return "\n".join(lines)


def write_files(settings: Settings, scanners: list[ScannerRecord]) -> bool:
    """Write the password file and ACL if they differ; True when they changed."""
    where = directory(settings)
    wanted = {PASSWORD_FILE: render_passwd(own_password(settings), scanners),
              ACL_FILE: render_acl(settings.site, scanners)}
    changed = False
    for name, text in wanted.items():
        path = where / name
        with contextlib.suppress(FileNotFoundError):
            if path.read_text(encoding="utf-8") == text:
                continue
        write_atomic(path, text)
        changed = True
    return changed


def reload(settings: Settings) -> bool:
    """SIGHUP to the embedded mosquitto (it reads its password file and ACL again)."""
    try:
        pid = int((directory(settings) / MOSQUITTO_PID).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        _LOGGER.warning("Could not make mosquitto reload its users (%s); is it running?", exc)
        return False
    return True
