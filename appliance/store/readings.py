"""The temphum, status and images tables: what the publishers send, with UTC timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from appliance.store.db import Database, from_db_time, to_db_time

IMAGES_KEPT = 10  # the trigger in migration 1 keeps this many


@dataclass(frozen=True, slots=True)
class TempHum:
    timestamp: datetime
    temperature: float
    humidity: float


@dataclass(frozen=True, slots=True)
class Status:
    timestamp: datetime
    status: str


@dataclass(frozen=True, slots=True)
class Image:
    id: int
    timestamp: datetime
    mime: str
    data: bytes


async def add_temphum(db: Database, when: datetime, temperature: float, humidity: float) -> None:
    await db.execute(
        "INSERT INTO temphum (timestamp, temperature, humidity) VALUES (?, ?, ?)",
        (to_db_time(when), temperature, humidity), can_wait=True,
    )


async def temphum_on(db: Database, day: date) -> list[TempHum]:
    """Every reading of one UTC day, oldest first."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    rows = await db.fetch_all(
        "SELECT timestamp, temperature, humidity FROM temphum"
        " WHERE timestamp >= ? AND timestamp < ? ORDER BY timestamp",
        (to_db_time(start), to_db_time(start + timedelta(days=1))),
    )
    return [TempHum(from_db_time(r["timestamp"]), r["temperature"], r["humidity"]) for r in rows]


async def latest_temphum(db: Database) -> TempHum | None:
    row = await db.fetch_one(
        "SELECT timestamp, temperature, humidity FROM temphum ORDER BY timestamp DESC LIMIT 1"
    )
    return TempHum(from_db_time(row["timestamp"]), row["temperature"], row["humidity"]) if row else None


async def add_status(db: Database, when: datetime, status: str) -> None:
    await db.execute("INSERT INTO status (timestamp, status) VALUES (?, ?)",
                     (to_db_time(when), status), can_wait=True)


async def latest_status(db: Database) -> Status | None:
    row = await db.fetch_one("SELECT timestamp, status FROM status ORDER BY timestamp DESC LIMIT 1")
    return Status(from_db_time(row["timestamp"]), row["status"]) if row else None


async def add_image(db: Database, when: datetime, mime: str, data: bytes) -> int:
    result = await db.execute(
        "INSERT INTO images (timestamp, mime, image) VALUES (?, ?, ?)", (to_db_time(when), mime, data),
        can_wait=True,
    )
    return int(result.lastrowid or 0)


async def latest_image(db: Database) -> Image | None:
    row = await db.fetch_one("SELECT id, timestamp, mime, image FROM images ORDER BY id DESC LIMIT 1")
    if row is None:
        return None
    return Image(row["id"], from_db_time(row["timestamp"]), row["mime"], bytes(row["image"]))


async def count_images(db: Database) -> int:
    row = await db.fetch_one("SELECT COUNT(*) FROM images")
    return int(row[0]) if row else 0


async def prune(db: Database, readings_before: datetime, status_before: datetime) -> None:
    """Apply the retention settings."""
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM temphum WHERE timestamp < ?", (to_db_time(readings_before),))
        await tx.execute("DELETE FROM status WHERE timestamp < ?", (to_db_time(status_before),))
