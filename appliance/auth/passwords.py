"""Password hashing with werkzeug's scrypt; hashing runs off the event loop (it takes ~50 ms)."""

from __future__ import annotations

import asyncio
import functools

from werkzeug.security import check_password_hash, generate_password_hash

from appliance.auth.policy import MAX_PASSWORD_LEN, check_password


@functools.cache
def _dummy_hash() -> str:
    """Compared against when the user does not exist, so a wrong name costs as long as a wrong
    password. Made on first use, off the event loop: at import it cost every start-up (and every
    CLI command) one scrypt, 50-170 ms here and far more on the Pi."""
    return generate_password_hash("not a real password", method="scrypt")


def _check(password_hash: str | None, password: str) -> bool:
    return check_password_hash(password_hash or _dummy_hash(), password)


async def hash_password(password: str) -> str:
    """The scrypt hash of a password that keeps the policy (PolicyError if it does not)."""
    check_password(password)
    return await asyncio.to_thread(generate_password_hash, password, "scrypt")


async def verify_password(password_hash: str | None, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LEN:
        return False
    matches = await asyncio.to_thread(_check, password_hash, password)
    return matches and password_hash is not None
