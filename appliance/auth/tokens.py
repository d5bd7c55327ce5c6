"""Publisher tokens: random, shown once, stored as a SHA-256 hash.

A token has 256 bits of entropy, so a fast hash is enough (no salt or slow KDF needed: nobody can
guess their way through 2^256); it also lets the database find a token by its hash with an index.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

TOKEN_PREFIX: Final = "apt_"  # noqa: S105 - recognisable in a config file or a leaked log line


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token from an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
