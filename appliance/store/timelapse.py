"""The timelapse_conf table: one row of delays (seconds) that publishers read."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.store.db import Database


@dataclass(frozen=True, slots=True)
class TimelapseConfig:
    image_delay: int
    temphum_delay: int
    status_delay: int


async def get(db: Database) -> TimelapseConfig:
    row = await db.fetch_one(
        "SELECT image_delay, temphum_delay, status_delay FROM timelapse_conf WHERE id = 1"
    )
    if row is None:  # migration 1 inserts the row; only a hand-edited database lacks it
        return TimelapseConfig(10, 60, 10)
    return TimelapseConfig(row["image_delay"], row["temphum_delay"], row["status_delay"])


async def put(db: Database, config: TimelapseConfig) -> None:
    await db.execute(
        "INSERT INTO timelapse_conf (id, image_delay, temphum_delay, status_delay)"
        " VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET image_delay = excluded.image_delay,"
        " temphum_delay = excluded.temphum_delay, status_delay = excluded.status_delay",
        (config.image_delay, config.temphum_delay, config.status_delay),
    )
