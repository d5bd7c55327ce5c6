"""The scanners table: satellite scanners, each with the hash of its broker password."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from appliance.store.db import Database, from_db_time, to_db_time


@dataclass(frozen=True, slots=True)
class ScannerRecord:
    id: str
    area: str
    password_hash: str
    created_at: datetime


def _scanner(row: aiosqlite.Row) -> ScannerRecord:
    return ScannerRecord(row["id"], row["area"], row["password_hash"], from_db_time(row["created_at"]))


async def add(db: Database, scanner_id: str, area: str, password_hash: str, now: datetime) -> bool:
    """Insert a scanner; False when the id is taken."""
    try:
        await db.execute(
            "INSERT INTO scanners (id, area, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (scanner_id, area, password_hash, to_db_time(now)))
    except sqlite3.IntegrityError:
        return False
    return True


async def all_scanners(db: Database) -> list[ScannerRecord]:
    return [_scanner(row) for row in await db.fetch_all("SELECT * FROM scanners ORDER BY id")]


async def revoke(db: Database, scanner_id: str) -> bool:
    result = await db.execute("DELETE FROM scanners WHERE id = ?", (scanner_id,))
    return result.rowcount == 1
