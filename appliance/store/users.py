"""The users table: local accounts."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from appliance.store.db import Database, from_db_time, to_db_time


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    password_hash: str
    created_at: datetime


def _user(row: aiosqlite.Row) -> User:
    return User(row["id"], row["username"], row["password_hash"], from_db_time(row["created_at"]))


async def add(db: Database, username: str, password_hash: str, now: datetime) -> User | None:
    """Insert a user created at ``now``; None when the name is taken."""
    try:
        result = await db.execute(
            "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
            (username, password_hash, to_db_time(now)),
        )
    except sqlite3.IntegrityError:
        return None
    return await get(db, int(result.lastrowid or 0))


async def get(db: Database, user_id: int) -> User | None:
    row = await db.fetch_one("SELECT * FROM users WHERE id = ?", (user_id,))
    return _user(row) if row else None


async def by_name(db: Database, username: str) -> User | None:
    row = await db.fetch_one("SELECT * FROM users WHERE username = ?", (username,))
    return _user(row) if row else None


async def all_users(db: Database) -> list[User]:
    return [_user(row) for row in await db.fetch_all("SELECT * FROM users ORDER BY username")]


async def set_password_hash(db: Database, username: str, password_hash: str) -> bool:
    result = await db.execute(
        "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
    )
    return result.rowcount == 1


async def delete(db: Database, username: str) -> bool:
    result = await db.execute("DELETE FROM users WHERE username = ?", (username,))
    return result.rowcount == 1
