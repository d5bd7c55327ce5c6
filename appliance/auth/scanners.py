"""Scanner credentials: a random password shown once, kept as a hash mosquitto can check.

Like publisher tokens the password has 256 bits of entropy; the hash is mosquitto's own
PBKDF2-SHA512 line format (what mosquitto_passwd writes), so the embedded broker's password file
is made from the database without the password ever being stored or passed as an argument.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import datetime
from typing import Final

from appliance.auth.policy import PolicyError
from appliance.errors import ApplianceError
from appliance.settings_values import parse_topic_word
from appliance.store import scanners as scanner_store
from appliance.store.db import Database
from appliance.store.scanners import ScannerRecord as ScannerRecord

# mosquitto_passwd's default; the password's entropy, not the iterations, is what protects it.
PBKDF2_ITERATIONS: Final = 101
# The main appliance's own user on its broker; no scanner may take it.
RESERVED: Final = frozenset({"appliance", "homeassistant"})


class ScannerError(ApplianceError):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """``$7$iterations$salt$digest``: a line of mosquitto's password file, after ``user:``."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def check_scanner_id(name: str) -> str:
    try:
        value = parse_topic_word(name)
    except ValueError as exc:
        msg = f"scanner name {name!r}: {exc} (it is the scanner's MQTT user and topic)"
        raise PolicyError(msg, code="invalid_name") from None
    if value in RESERVED:
        msg = f"{value!r} is reserved; pick another scanner name"
        raise PolicyError(msg, code="invalid_name")
    return value


async def add_scanner(db: Database, name: str, *, area: str | None, now: datetime) -> str:
    """Create a scanner; its password is returned once and never stored."""
    scanner_id = check_scanner_id(name)
    password = secrets.token_urlsafe(32)
    try:
        where = parse_topic_word(area) if area else scanner_id
    except ValueError as exc:
        msg = f"area {area!r}: {exc}"
        raise PolicyError(msg, code="invalid_area") from None
    if not await scanner_store.add(db, scanner_id, where, mosquitto_hash(password), now):
        msg = f"a scanner named {scanner_id!r} exists; revoke it first or pick another name"
        raise ScannerError(msg, code="exists")
    return password


async def revoke_scanner(db: Database, name: str) -> None:
    if not await scanner_store.revoke(db, name):
        msg = f"no scanner {name!r}; `appliance scanner list` shows the scanners"
        raise ScannerError(msg, code="not_found")


async def all_scanners(db: Database) -> list[ScannerRecord]:
    return await scanner_store.all_scanners(db)
