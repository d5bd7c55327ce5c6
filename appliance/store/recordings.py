"""The recordings table: the index of timelapse recordings (their frames and videos are files)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

import aiosqlite

from appliance.store.db import Database, from_db_time, to_db_time


class RecordingState(StrEnum):
    RECORDING = "recording"
    RENDERING = "rendering"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Recording:
    id: int
    job: str | None
    started_at: datetime
    ended_at: datetime | None
    state: RecordingState
    mode: str  # layer | interval
    trigger: str  # printer | manual
    frames: int = 0
    duration_s: float | None = None
    size_bytes: int = 0
    error: str | None = None

    def but(self, **changes: object) -> Recording:
        return replace(self, **changes)  # type: ignore[arg-type]


_COLUMNS = ("id, job, started_at, ended_at, state, mode, trigger, frames, duration_s, size_bytes,"
            " error")


def _of(r: aiosqlite.Row) -> Recording:
    return Recording(
        id=r["id"], job=r["job"], started_at=from_db_time(r["started_at"]),
        ended_at=from_db_time(r["ended_at"]) if r["ended_at"] else None,
        state=RecordingState(r["state"]), mode=r["mode"], trigger=r["trigger"],
        frames=r["frames"], duration_s=r["duration_s"], size_bytes=r["size_bytes"],
        error=r["error"])


async def add(db: Database, *, job: str | None, started_at: datetime, mode: str,
              trigger: str) -> Recording:
    result = await db.execute(
        "INSERT INTO recordings (job, started_at, state, mode, trigger) VALUES (?, ?, ?, ?, ?)",
        (job, to_db_time(started_at), RecordingState.RECORDING.value, mode, trigger))
    assert result.lastrowid is not None  # noqa: S101 - an INSERT always has one
    return Recording(result.lastrowid, job, started_at, None, RecordingState.RECORDING, mode,
                     trigger)


async def save(db: Database, recording: Recording) -> None:
    """Write every changing field of ``recording`` (its id, job, start and kind never change)."""
    await db.execute(
        "UPDATE recordings SET ended_at = ?, state = ?, frames = ?, duration_s = ?,"
        " size_bytes = ?, error = ? WHERE id = ?",
        (to_db_time(recording.ended_at) if recording.ended_at else None, recording.state.value,
         recording.frames, recording.duration_s, recording.size_bytes, recording.error,
         recording.id))


async def get(db: Database, recording_id: int) -> Recording | None:
    row = await db.fetch_one(f"SELECT {_COLUMNS} FROM recordings WHERE id = ?",  # noqa: S608
                             (recording_id,))
    return _of(row) if row else None


async def all_recordings(db: Database) -> list[Recording]:
    """Every recording, newest first."""
    rows = await db.fetch_all(f"SELECT {_COLUMNS} FROM recordings ORDER BY id DESC")  # noqa: S608
    return [_of(row) for row in rows]


async def delete(db: Database, recording_id: int) -> bool:
    return (await db.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))).rowcount > 0
