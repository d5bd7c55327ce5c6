"""The publisher_tokens table: only a hash of each token is stored."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from appliance.store.db import Database, from_db_time, to_db_time


@dataclass(frozen=True, slots=True)
class PublisherToken:
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


def _token(row: aiosqlite.Row) -> PublisherToken:
    last = row["last_used_at"]
    return PublisherToken(
        row["id"], row["name"], from_db_time(row["created_at"]), from_db_time(last) if last else None
    )


async def add(db: Database, name: str, token_hash: str, now: datetime) -> PublisherToken | None:
    """Insert a token created at ``now``; None when the name is taken."""
    try:
        result = await db.execute(
            "INSERT INTO publisher_tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
            (name, token_hash, to_db_time(now)),
        )
    except sqlite3.IntegrityError:
        return None
    row = await db.fetch_one("SELECT * FROM publisher_tokens WHERE id = ?", (result.lastrowid,))
    return _token(row) if row else None


async def by_hash(db: Database, token_hash: str) -> PublisherToken | None:
    row = await db.fetch_one("SELECT * FROM publisher_tokens WHERE token_hash = ?", (token_hash,))
    return _token(row) if row else None


async def touch(db: Database, token_id: int, when: datetime) -> None:
    await db.execute(
        "UPDATE publisher_tokens SET last_used_at = ? WHERE id = ?", (to_db_time(when), token_id)
    )


async def all_tokens(db: Database) -> list[PublisherToken]:
    rows = await db.fetch_all("SELECT * FROM publisher_tokens ORDER BY name")
    return [_token(row) for row in rows]


async def revoke(db: Database, name: str) -> bool:
    result = await db.execute("DELETE FROM publisher_tokens WHERE name = ?", (name,))
    return result.rowcount == 1
