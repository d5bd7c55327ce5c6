"""Password hashing with werkzeug's scrypt; hashing runs off the event loop (it takes ~50 ms)."""

from __future__ import annotations

import asyncio
from typing import Final

from werkzeug.security import check_password_hash, generate_password_hash

MIN_PASSWORD_LEN: Final = 8
MAX_PASSWORD_LEN: Final = 1024  # scrypt over megabytes is a cheap denial of service
# Compared against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH: Final = generate_password_hash("not a real password", method="scrypt")


class PasswordPolicyError(ValueError):
    pass


def check_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LEN:
        msg = f"the password must be at least {MIN_PASSWORD_LEN} characters"
        raise PasswordPolicyError(msg)
    if len(password) > MAX_PASSWORD_LEN:
        msg = f"the password must be at most {MAX_PASSWORD_LEN} characters"
        raise PasswordPolicyError(msg)


async def hash_password(password: str) -> str:
    check_policy(password)
    return await asyncio.to_thread(generate_password_hash, password, "scrypt")


async def verify_password(password_hash: str | None, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LEN:
        return False
    matches = await asyncio.to_thread(check_password_hash, password_hash or _DUMMY_HASH, password)
    return matches and password_hash is not None
