"""The SQLite store on real files: migrations, integrity, per-table functions."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import stat
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from appliance.auth import accounts
from appliance.auth.tokens import token_hash
from appliance.errors import StoreError
from appliance.store import beacons, readings, recordings, timelapse, tokens, users
from appliance.store.db import Database, connect, from_db_time, migrate_to, to_db_time
from appliance.store.migrations import LATEST, MIGRATIONS

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = await Database.open(tmp_path / "appliance.db")
    yield database  # type: ignore[misc]
    await database.close()


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall())


async def test_new_database_is_at_latest_version_with_wal_and_foreign_keys(db: Database) -> None:
    assert await db.schema_version() == LATEST
    assert (await db.fetch_one("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
    assert (await db.fetch_one("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
    assert await db.integrity_check() == []


@pytest.mark.parametrize("start", range(LATEST))
async def test_migrating_from_every_earlier_version_gives_the_same_schema(
    tmp_path: Path, start: int
) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    await (await connect(fresh)).close()
    conn = await connect(old, migrate=False)
    await migrate_to(conn, start)
    if start >= 1:  # data written by an older version must survive the upgrade
        await conn.execute("INSERT INTO users (username, password_hash, created_at) "
                           "VALUES ('old', 'h', '2025-01-01T00:00:00.000Z')")
    await conn.close()
    conn = await connect(old)
    await conn.close()
    assert _schema(old) == _schema(fresh)
    with sqlite3.connect(old) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST
        if start >= 1:
            assert raw.execute("SELECT username FROM users").fetchall() == [("old",)]


async def test_database_from_a_newer_appliance_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(StoreError, match="newer than this appliance"):
        await Database.open(path)


async def test_failed_migration_rolls_back_and_leaves_version(tmp_path: Path, monkeypatch:
                                                              pytest.MonkeyPatch) -> None:
    path = tmp_path / "broken.db"
    conn = await connect(path, migrate=False)
    await migrate_to(conn, 1)
    await conn.close()
    monkeypatch.setattr("appliance.store.db.MIGRATIONS", (*MIGRATIONS[:1], "CREATE TABLE x (a);"
                                                          " THIS IS NOT SQL;"))
    monkeypatch.setattr("appliance.store.db.LATEST", 2)
    with pytest.raises(StoreError, match="migration to schema version 2 failed"):
        await connect(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'x'").fetchall() == []


# Run in a child process: the real migration code, killed (SIGKILL, as the OOM killer or a
# watchdog would) after ``steps`` SQLite VM steps, wherever that lands.
_KILLED_MIGRATION = """
import asyncio, os, signal, sqlite3, sys
from pathlib import Path
real, left = sqlite3.connect, [int(sys.argv[2])]
def step():
    left[0] -= 1
    if left[0] == 0:
        os.kill(os.getpid(), signal.SIGKILL)
def connect(*args, **kwargs):
    conn = real(*args, **kwargs)
    conn.set_progress_handler(step, 1)  # every VM step, across statements
    return conn
sqlite3.connect = connect
from appliance.store.db import connect as open_db
asyncio.run(open_db(Path(sys.argv[1])))
print(int(sys.argv[2]) - left[0])  # not killed: how many steps the whole start took
"""


async def test_the_app_killed_during_a_migration_leaves_a_whole_version_and_migrates_next_time(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "fresh.db"
    await (await connect(fresh)).close()

    async def at_version_1(name: str) -> Path:
        path = tmp_path / name
        conn = await connect(path, migrate=False)
        await migrate_to(conn, 1)
        await conn.execute("INSERT INTO users (username, password_hash, created_at) "
                           "VALUES ('old', 'h', '2025-01-01T00:00:00.000Z')")
        await conn.close()
        return path

    async def start(path: Path, steps: int) -> tuple[int | None, bytes]:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _KILLED_MIGRATION, str(path), str(steps),
            stdout=asyncio.subprocess.PIPE)
        out, _ = await child.communicate()
        return child.returncode, out

    _, out = await start(await at_version_1("measured.db"), 10**9)
    total = int(out)  # the steps of one whole start, migrations included, on this SQLite
    versions_seen = set()
    for percent in (5, 20, 35, 50, 65, 80, 95):
        path = await at_version_1(f"killed-{percent}.db")
        code, _ = await start(path, total * percent // 100)
        assert code == -signal.SIGKILL, f"not killed at {percent} % of {total} steps"
        with sqlite3.connect(path) as raw:
            version = raw.execute("PRAGMA user_version").fetchone()[0]
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
            # Each version whole or not at all: its tables exist exactly from its number on.
            assert ("sessions" in tables) == (version >= 3), (percent, version, tables)
            assert ("recordings" in tables) == (version >= 4), (percent, version, tables)
            assert raw.execute("SELECT username FROM users").fetchall() == [("old",)]
        versions_seen.add(version)
        await (await connect(path)).close()  # the next start finishes the job
        assert _schema(path) == _schema(fresh)
    assert len(versions_seen) >= 3, f"the kills landed at too few places: {versions_seen}"


def test_db_time_round_trips_and_sorts_as_text() -> None:
    later = T0 + timedelta(milliseconds=1)
    assert from_db_time(to_db_time(T0)) == T0
    assert to_db_time(T0) == "2026-11-22T12:00:00.000Z"
    assert to_db_time(T0) < to_db_time(later)


async def test_users_are_unique_case_insensitively(db: Database) -> None:
    user = await users.add(db, "Alice", "hash", T0)
    assert user is not None and user.username == "Alice" and user.created_at == T0
    assert await users.add(db, "alice", "other", T0) is None
    assert (await users.by_name(db, "ALICE")) == user
    assert await users.set_password_hash(db, "alice", "new")
    assert (await users.get(db, user.id)).password_hash == "new"  # type: ignore[union-attr]
    assert await users.delete(db, "alice")
    assert not await users.delete(db, "alice")
    assert await users.all_users(db) == []


async def test_tokens_are_found_by_hash_and_revoked_by_name(db: Database) -> None:
    record = await tokens.add(db, "camera", "h1", T0)
    assert record is not None and record.last_used_at is None and record.created_at == T0
    assert await tokens.add(db, "camera", "h2", T0) is None
    assert (await tokens.by_hash(db, "h1")) == record
    await tokens.touch(db, record.id, T0)
    assert (await tokens.by_hash(db, "h1")).last_used_at == T0  # type: ignore[union-attr]
    assert await tokens.revoke(db, "camera")
    assert await tokens.by_hash(db, "h1") is None


async def test_pairing_round_trip_and_unpair_cascades_presence(db: Database) -> None:
    await beacons.save_pairing(db, address="AA:BB:CC:DD:EE:01", beacon_id=3, name="b3",
                               first_seen=T0, user_id="u1", user_name="Alice", paired_at=T0,
                               state="connected", last_seen=T0, window_from=T0, rssi=-61)
    later = T0 + timedelta(seconds=90)
    await beacons.set_last_seen(db, [("AA:BB:CC:DD:EE:01", later, later, -70)])
    await beacons.set_state(db, "AA:BB:CC:DD:EE:01", "away", later, later, later)
    await beacons.set_firmware(db, "AA:BB:CC:DD:EE:01", "0.1.0")
    [stored] = await beacons.paired(db)
    assert (stored.state, stored.last_seen, stored.rssi, stored.firmware, stored.user_name) == (
        "away", later, -70, "0.1.0", "Alice")
    assert await beacons.delete_pairing(db, "AA:BB:CC:DD:EE:01")
    assert await beacons.paired(db) == []
    assert await db.fetch_all("SELECT * FROM presence") == []
    assert len(await db.fetch_all("SELECT * FROM beacons")) == 1  # history of the beacon stays


async def test_presence_state_is_checked_by_the_schema(db: Database) -> None:
    await beacons.save_pairing(db, address="AA:BB:CC:DD:EE:01", beacon_id=3, name="b3",
                               first_seen=T0, user_id="u1", user_name="Alice", paired_at=T0,
                               state="connected", last_seen=T0, window_from=T0, rssi=None)
    with pytest.raises(sqlite3.IntegrityError):
        await beacons.set_state(db, "AA:BB:CC:DD:EE:01", "bogus", T0, T0, T0)
    [stored] = await beacons.paired(db)
    assert stored.state == "connected"


async def test_failed_transaction_leaves_nothing_behind(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await beacons.save_pairing(db, address="AA:BB:CC:DD:EE:01", beacon_id=3, name="b3",
                                   first_seen=T0, user_id="u1", user_name="Alice", paired_at=T0,
                                   state="nonsense", last_seen=T0, window_from=T0, rssi=None)
    assert await db.fetch_all("SELECT * FROM beacons") == []
    assert await db.fetch_all("SELECT * FROM pairings") == []


async def test_only_the_newest_ten_images_are_kept(db: Database) -> None:
    for i in range(15):
        await readings.add_image(db, T0 + timedelta(seconds=i), "image/jpeg", bytes([i]) * 10)
    assert await readings.count_images(db) == 10
    latest = await readings.latest_image(db)
    assert latest is not None and latest.data == bytes([14]) * 10


async def test_temphum_of_one_utc_day(db: Database) -> None:
    for hours, temp in ((-1, 10.0), (0, 20.0), (23, 21.5), (24, 30.0)):
        await readings.add_temphum(db, datetime(2026, 11, 22, tzinfo=UTC) + timedelta(hours=hours),
                                   temp, 40.0)
    day = await readings.temphum_on(db, date(2026, 11, 22))
    assert [r.temperature for r in day] == [20.0, 21.5]
    assert (await readings.latest_temphum(db)).temperature == 30.0  # type: ignore[union-attr]


async def test_retention_prunes_old_readings_and_status(db: Database) -> None:
    await readings.add_temphum(db, T0 - timedelta(days=400), 1.0, 1.0)
    await readings.add_temphum(db, T0, 2.0, 2.0)
    await readings.add_status(db, T0 - timedelta(days=31), "old")
    await readings.add_status(db, T0, "printing")
    await readings.prune(db, T0 - timedelta(days=365), T0 - timedelta(days=30))
    assert len(await db.fetch_all("SELECT * FROM temphum")) == 1
    assert (await readings.latest_status(db)).status == "printing"  # type: ignore[union-attr]
    assert len(await db.fetch_all("SELECT * FROM status")) == 1


async def test_timelapse_config_has_one_row(db: Database) -> None:
    assert await timelapse.get(db) == timelapse.TimelapseConfig(10, 60, 10)
    await timelapse.put(db, timelapse.TimelapseConfig(5, 30, 15))
    assert await timelapse.get(db) == timelapse.TimelapseConfig(5, 30, 15)
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute("INSERT INTO timelapse_conf VALUES (2, 1, 1, 1)")


def _modes(data_dir: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.glob("appliance.db*")}


async def test_database_files_are_private_even_under_a_loose_umask(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    old_umask = os.umask(0o022)
    try:
        db = await Database.open(path)
        await db.execute("INSERT INTO temphum (timestamp, temperature, humidity) "
                         "VALUES ('2026-12-01T00:00:00.000Z', 20, 50)")
        modes = _modes(tmp_path)
        assert set(modes) >= {"appliance.db", "appliance.db-wal", "appliance.db-shm"}
        assert modes == dict.fromkeys(modes, 0o600)
        await db.close()
        os.chmod(path, 0o644)  # a database from before: made private when next opened
        db = await Database.open(path)
        assert _modes(tmp_path)["appliance.db"] == 0o600
        await db.close()
    finally:
        os.umask(old_umask)


async def test_debug_log_carries_no_password_or_token_hash(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    db = await Database.open(tmp_path / "appliance.db")
    user = await accounts.add_user(db, "alice", "a long enough secret", now=NOW)
    _record, token = await accounts.add_token(db, "camera", now=NOW)
    await db.close()
    assert user.password_hash not in caplog.text
    assert token_hash(token) not in caplog.text and token not in caplog.text


async def test_recordings_index_keeps_each_state_and_refuses_an_unknown_one(db: Database) -> None:
    start = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    first = await recordings.add(db, job="benchy", started_at=start, mode="layer",
                                 trigger="printer")
    second = await recordings.add(db, job=None, started_at=start + timedelta(hours=1),
                                  mode="interval", trigger="manual")
    assert first.state is recordings.RecordingState.RECORDING and first.frames == 0
    done = first.but(state=recordings.RecordingState.READY, ended_at=start + timedelta(minutes=30),
                     frames=250, duration_s=9.333, size_bytes=4_000_000)
    await recordings.save(db, done)
    assert await recordings.get(db, first.id) == done
    assert [r.id for r in await recordings.all_recordings(db)] == [second.id, first.id]
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute("UPDATE recordings SET state = 'lost' WHERE id = ?", (first.id,))
    assert await recordings.delete(db, first.id) is True
    assert await recordings.delete(db, first.id) is False
    assert await recordings.get(db, first.id) is None
