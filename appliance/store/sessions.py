"""The sessions table: one row per login, found by a hash of the id its cookie carries.

The row is what makes a session end: logout deletes it, a password change deletes the user's,
deleting the user cascades. The CLI is another process, so it needs nothing but the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from appliance.store.db import Database, from_db_time, to_db_time
from appliance.store.users import User


@dataclass(frozen=True, slots=True)
class Session:
    id_hash: str
    user: User
    created_at: datetime
    last_used_at: datetime


def _session(row: aiosqlite.Row) -> Session:
    user = User(row["user_id"], row["username"], row["password_hash"],
                from_db_time(row["user_created_at"]))
    return Session(row["id_hash"], user, from_db_time(row["created_at"]),
                   from_db_time(row["last_used_at"]))


async def add(db: Database, id_hash: str, user_id: int, now: datetime) -> None:
    await db.execute(
        "INSERT INTO sessions (id_hash, user_id, created_at, last_used_at) VALUES (?, ?, ?, ?)",
        (id_hash, user_id, to_db_time(now), to_db_time(now)),
    )


async def get(db: Database, id_hash: str) -> Session | None:
    """The session and its user (one indexed join: this runs on every request)."""
    row = await db.fetch_one(
        "SELECT s.id_hash, s.user_id, s.created_at, s.last_used_at, u.username, u.password_hash,"
        " u.created_at AS user_created_at"
        " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
        (id_hash,),
    )
    return _session(row) if row else None


async def touch(db: Database, id_hash: str, now: datetime) -> None:
    await db.execute(
        "UPDATE sessions SET last_used_at = ? WHERE id_hash = ?", (to_db_time(now), id_hash)
    )


async def delete(db: Database, id_hash: str) -> None:
    await db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))


async def delete_for_user(db: Database, user_id: int) -> None:
    await db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))


async def delete_older(db: Database, *, used_before: datetime, created_before: datetime) -> None:
    """Forget sessions that have ended by age, so the table does not grow."""
    await db.execute(
        "DELETE FROM sessions WHERE last_used_at < ? OR created_at < ?",
        (to_db_time(used_before), to_db_time(created_before)),
    )
