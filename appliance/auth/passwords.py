"""Password hashing with werkzeug's scrypt; hashing runs off the event loop (it takes ~50 ms)."""

from __future__ import annotations

import asyncio
from typing import Final

from werkzeug.security import check_password_hash, generate_password_hash

from appliance.auth.policy import MAX_PASSWORD_LEN, check_password

# Compared against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH: Final = generate_password_hash("not a real password", method="scrypt")


async def hash_password(password: str) -> str:
    """The scrypt hash of a password that keeps the policy (PolicyError if it does not)."""
    check_password(password)
    return await asyncio.to_thread(generate_password_hash, password, "scrypt")


async def verify_password(password_hash: str | None, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LEN:
        return False
    matches = await asyncio.to_thread(check_password_hash, password_hash or _DUMMY_HASH, password)
    return matches and password_hash is not None
