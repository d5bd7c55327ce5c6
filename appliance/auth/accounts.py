"""User accounts and publisher tokens: the operations the CLI and the web share."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Final

from appliance.auth.passwords import hash_password, verify_password
from appliance.auth.policy import check_name, check_token_name
from appliance.auth.sessions import SessionCache
from appliance.auth.tokens import new_token, token_hash
from appliance.errors import ApplianceError
from appliance.store import sessions as session_store
from appliance.store import tokens as token_store
from appliance.store import users as user_store
from appliance.store.db import Database

# The account types are the store's rows, re-exported: code above auth/ names them from here.
from appliance.store.tokens import PublisherToken as PublisherToken
from appliance.store.users import User as User

# "last used" is recorded at most this often: a camera posting every few seconds must not
# turn into a database write per frame.
TOKEN_TOUCH_INTERVAL: Final = timedelta(minutes=10)
# A session's "last used" likewise, at most once a minute; the idle timeout is minutes at least.
SESSION_TOUCH_INTERVAL: Final = timedelta(minutes=1)
# A session ends this long after login whatever its use: the cookie's signature says the same.
SESSION_MAX_AGE: Final = timedelta(days=30)


class AccountError(ApplianceError):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


async def start_session(db: Database, user: User, *, now: datetime) -> str:
    """A new login session; the id goes into the signed cookie, only its hash is stored."""
    auth_id = secrets.token_urlsafe(32)
    # Sessions that ended by age go now (logins are rare), so the table does not grow.
    await session_store.delete_older(db, used_before=now - SESSION_MAX_AGE,
                                     created_before=now - SESSION_MAX_AGE)
    await session_store.add(db, token_hash(auth_id), user.id, now)
    return auth_id


async def user_for_session(
    db: Database, auth_id: str | None, *, now: datetime, idle: timedelta, touch: bool = True,
    cache: SessionCache | None = None,
) -> User | None:
    """The user of a live session; an idle or too old one ends here. With ``cache``, a session
    already seen since the database last changed costs no query."""
    if not auth_id:
        return None
    id_hash = token_hash(auth_id)
    session, version = cache.get(id_hash) if cache else (None, 0)
    if session is None:
        session = await session_store.get(db, id_hash)
        if session is None:
            return None
        if cache:
            cache.put(session, version)
    if now - session.last_used_at > idle or now - session.created_at > SESSION_MAX_AGE:
        await session_store.delete(db, session.id_hash)
        if cache:
            cache.ended()
        return None
    if touch and now - session.last_used_at > SESSION_TOUCH_INTERVAL:
        await session_store.touch(db, session.id_hash, now)
    return session.user


async def end_session(db: Database, auth_id: str | None) -> None:
    if auth_id:
        await session_store.delete(db, token_hash(auth_id))


async def token_alive(db: Database, hashed: str) -> bool:
    """Whether the token with this hash still exists (open connections re-check it)."""
    return await token_store.by_hash(db, hashed) is not None


async def all_users(db: Database) -> list[User]:
    return await user_store.all_users(db)


async def all_tokens(db: Database) -> list[PublisherToken]:
    """The tokens' names and dates (the tokens themselves are never stored)."""
    return await token_store.all_tokens(db)


async def authenticate(db: Database, name: str, password: str) -> User | None:
    """The user with this name and password; a wrong name costs as long as a wrong password."""
    user = await user_store.by_name(db, name)
    if not await verify_password(user.password_hash if user else None, password):
        return None
    return user


async def add_user(db: Database, name: str, password: str, *, now: datetime) -> User:
    check_name(name)
    user = await user_store.add(db, name, await hash_password(password), now)
    if user is None:
        msg = f"user {name!r} already exists; pick another name or use `user passwd`"
        raise AccountError(msg, code="exists")
    return user


async def put_user(db: Database, name: str, password_hash: str, *, now: datetime) -> None:
    """Create the user with this password hash, or give an existing one this hash (first boot)."""
    check_name(name)
    user = await user_store.by_name(db, name)
    if user is None:
        await user_store.add(db, name, password_hash, now)
        return
    if not await user_store.set_password_hash(db, name, password_hash):
        msg = f"user {name!r} vanished while its password was set; run first boot again"
        raise AccountError(msg, code="not_found")
    await session_store.delete_for_user(db, user.id)


async def set_password(db: Database, name: str, password: str) -> None:
    """A new password; every session of the user ends."""
    user = await user_store.by_name(db, name)
    if user is None or not await user_store.set_password_hash(
            db, name, await hash_password(password)):
        msg = f"no user {name!r}; `appliance user list` shows who exists"
        raise AccountError(msg, code="not_found")
    await session_store.delete_for_user(db, user.id)


async def delete_user(db: Database, name: str) -> None:
    if not await user_store.delete(db, name):
        msg = f"no user {name!r}; `appliance user list` shows who exists"
        raise AccountError(msg, code="not_found")


async def add_token(db: Database, name: str, *, now: datetime) -> tuple[PublisherToken, str]:
    """Create a token; the plain token is returned once and never stored."""
    check_token_name(name)
    token = new_token()
    record = await token_store.add(db, name, token_hash(token), now)
    if record is None:
        msg = f"a token named {name!r} exists; revoke it first or pick another name"
        raise AccountError(msg, code="exists")
    return record, token


async def revoke_token(db: Database, name: str) -> None:
    if not await token_store.revoke(db, name):
        msg = f"no token {name!r}; `appliance token list` shows the tokens"
        raise AccountError(msg, code="not_found")


async def check_token(db: Database, token: str, *, now: datetime) -> PublisherToken | None:
    """The token's record, its last use noted (at most once per TOKEN_TOUCH_INTERVAL)."""
    record = await token_store.by_hash(db, token_hash(token))
    if record is not None and (
        record.last_used_at is None or now - record.last_used_at > TOKEN_TOUCH_INTERVAL
    ):
        await token_store.touch(db, record.id, now)
    return record
