"""The SQLite database: one file in the data dir, WAL, foreign keys on, numbered migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import aiosqlite

from appliance.errors import StorageFullError, StoreError
from appliance.store.migrations import LATEST, MIGRATIONS
from appliance.store.space import Reserve

_LOGGER = logging.getLogger(__name__)

# A writer waits this long for another connection's lock (the CLI while the app runs).
BUSY_TIMEOUT_MS: Final = 5000
DB_FILE_MODE: Final = 0o600
DB_EXTRA_SUFFIXES: Final = ("-wal", "-shm")
FULL_MESSAGE: Final = (
    "the SD card is full: {what}. Everything already stored is intact; free space (delete old "
    "timelapse videos on the Timelapses page, or files you put on the card) and the appliance "
    "goes on by itself"
)


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL


def to_db_time(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and 'Z': sorts as text, parses back exactly."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_db_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def connect(path: Path, *, migrate: bool = True) -> aiosqlite.Connection:
    """Open (creating if needed) the database and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # aiosqlite logs every statement with its parameters at DEBUG: password hashes, token hashes.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    try:
        _private(path)
        conn = await aiosqlite.connect(path, isolation_level=None)
    except Exception as exc:
        msg = f"cannot open database {path}: {exc}; check the data dir's permissions"
        raise StoreError(msg) from exc
    conn.row_factory = aiosqlite.Row
    try:
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives a power cut (a pairing the user saw succeed is never lost).
        # Writes are few and batched, so the extra fsync costs nothing noticeable.
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        if migrate:
            await migrate_to(conn, LATEST)
        for extra in DB_EXTRA_SUFFIXES:  # SQLite gives them the file's mode; older ones: 0644
            _private(path.with_name(path.name + extra), create=False)
    except BaseException:
        await conn.close()
        raise
    return conn


def _open_watcher(path: Path) -> sqlite3.Connection:
    """The read-only connection Database.version asks; timeout 0: it never waits on a lock."""
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=0,
                           isolation_level=None, check_same_thread=False)


def _private(path: Path, *, create: bool = True) -> None:
    """The file readable by its owner only (like the session key): it holds password hashes."""
    if create and not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, DB_FILE_MODE))
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, DB_FILE_MODE)


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate_to(conn: aiosqlite.Connection, target: int) -> None:
    current = await schema_version(conn)
    if current > LATEST:
        msg = (
            f"the database is at schema version {current}, newer than this appliance "
            f"({LATEST}); install a newer appliance or restore a backup"
        )
        raise StoreError(msg)
    for version in range(current + 1, target + 1):
        _LOGGER.info("Migrating database to schema version %s", version)
        try:
            await conn.executescript(
                f"BEGIN;\n{MIGRATIONS[version - 1]}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
        except Exception as exc:
            if conn.in_transaction:
                await conn.rollback()
            msg = f"migration to schema version {version} failed: {exc}"
            raise StoreError(msg) from exc


async def integrity_check(conn: aiosqlite.Connection) -> list[str]:
    """PRAGMA integrity_check and foreign_key_check; an empty list means healthy."""
    problems: list[str] = []
    try:
        async with conn.execute("PRAGMA integrity_check") as cur:
            problems += [str(row[0]) for row in await cur.fetchall() if row[0] != "ok"]
        async with conn.execute("PRAGMA foreign_key_check") as cur:
            problems += [f"foreign key: {tuple(row)}" for row in await cur.fetchall()]
    except sqlite3.DatabaseError as exc:  # damage bad enough that the check itself cannot read
        problems.append(f"{exc}; restore a backup")
    return problems


@dataclass(frozen=True, slots=True)
class Result:
    rowcount: int
    lastrowid: int | None


class _Executor:
    """Statements on one connection; callers hold the Database lock."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[object] = ()) -> Result:
        async with self._conn.execute(sql, tuple(params)) as cur:
            return Result(cur.rowcount, cur.lastrowid)

    async def executemany(self, sql: str, rows: Iterable[Iterable[object]]) -> None:
        await self._conn.executemany(sql, [tuple(row) for row in rows])


class Database:
    """One aiosqlite connection shared by the app's tasks.

    Every statement takes the lock, so a statement from one task can never slip into another
    task's open transaction (and be rolled back with it).
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path,
                 watcher: sqlite3.Connection | None = None, reserve: Reserve | None = None) -> None:
        self.path = path
        self._conn = conn
        self._lock = asyncio.Lock()
        self._executor = _Executor(conn)
        self._watcher = watcher
        self._unknown = 0
        self._reserve = reserve
        self._full = False
        self.refused = 0  # writes refused or failed for want of space, for /status

    @classmethod
    async def open(cls, path: Path, *, migrate: bool = True, reserve_bytes: int = 0) -> Database:
        """``reserve_bytes``: room kept for logins and deletes on a full card (see space.py)."""
        conn = await connect(path, migrate=migrate)
        try:
            watcher = await asyncio.to_thread(_open_watcher, path)
        except BaseException:
            await conn.close()
            raise
        db = cls(conn, path, watcher, Reserve(path.parent, reserve_bytes) if reserve_bytes else None)
        db.full()
        return db

    def full(self) -> bool:
        """Whether the card is full; gives the reserve back when it fills, takes it again when
        there is room. One statvfs: cheap enough before every write and every /status."""
        reserve = self._reserve
        if reserve is None:
            return self._full  # no reserve: full from SQLite's own error until a write works
        try:
            free = reserve.free()
        except OSError:
            return self._full
        if reserve.held and free < reserve.size:
            reserve.release()
            self._set_full(True, free)
        elif not reserve.held:
            self._set_full(not reserve.restore(), free)
        else:
            self._set_full(False, free)
        return self._full

    def _set_full(self, full: bool, free: int) -> None:
        if full != self._full:
            if full:
                _LOGGER.error("The SD card is full (%d KiB free): readings, frames and last-seen "
                              "are not stored until there is room%s", free // 1024,
                              "; the reserve keeps logins and deletes working"
                              if self._reserve is not None else "")
            else:
                _LOGGER.warning("The SD card has room again (%d KiB free)", free // 1024)
        self._full = full

    def _before_write(self, can_wait: bool) -> None:
        if self.full() and can_wait:
            self.refused += 1
            raise StorageFullError(FULL_MESSAGE.format(what="new readings are not stored"))

    def _out_of_space(self, exc: sqlite3.Error) -> StorageFullError:
        """SQLite ran out of room before the look did: give the reserve back for the next try."""
        self.refused += 1
        if self._reserve is not None:
            self._reserve.release()
        self._set_full(True, 0)
        _LOGGER.error("A write failed for want of space: %s", exc)
        return StorageFullError(FULL_MESSAGE.format(what="this change was not saved; try again"))

    async def close(self) -> None:
        async with self._lock:
            if self._watcher is not None:
                self._watcher.close()
            await self._conn.close()

    def version(self) -> int:
        """A number that changes whenever a commit lands in the file, from any connection: this
        process's own or another's (the CLI). Caches compare it to know they are still right.

        SQLite's ``PRAGMA data_version`` on a second, read-only connection: it reads the WAL
        index in shared memory, a few microseconds, no disk I/O and no waiting (a busy file
        gives a number never seen before, which reads as "changed").
        """
        if self._watcher is not None:
            try:
                row = self._watcher.execute("PRAGMA data_version").fetchone()
                return int(row[0])
            except sqlite3.Error:
                pass
        self._unknown -= 1  # negative: data_version itself is never negative
        return self._unknown

    async def execute(self, sql: str, params: Iterable[object] = (), *,
                      can_wait: bool = False) -> Result:
        """One statement in its own transaction. ``can_wait``: a write that is refused while
        the card is full (readings, frames), so the reserve stays for logins and deletes."""
        async with self._lock:
            self._before_write(can_wait)
            try:
                result = await self._executor.execute(sql, params)
            except sqlite3.OperationalError as exc:
                if _is_full(exc):
                    raise self._out_of_space(exc) from exc
                raise
            if self._reserve is None:
                self._full = False  # it worked: there is room again
            return result

    async def fetch_all(self, sql: str, params: Iterable[object] = ()) -> list[aiosqlite.Row]:
        async with self._lock, self._conn.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def fetch_one(self, sql: str, params: Iterable[object] = ()) -> aiosqlite.Row | None:
        async with self._lock, self._conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    @contextlib.asynccontextmanager
    async def transaction(self, *, can_wait: bool = False) -> AsyncIterator[_Executor]:
        async with self._lock:
            self._before_write(can_wait)
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._executor
                await self._conn.commit()
                if self._reserve is None:
                    self._full = False
            except BaseException as exc:
                if self._conn.in_transaction:
                    await self._conn.rollback()
                if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
                    raise self._out_of_space(exc) from exc
                raise

    async def schema_version(self) -> int:
        async with self._lock:
            return await schema_version(self._conn)

    async def integrity_check(self) -> list[str]:
        async with self._lock:
            return await integrity_check(self._conn)

