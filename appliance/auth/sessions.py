"""Login sessions checked from memory: every request and socket asks, the database rarely.

The cache holds the sessions as the database had them at one ``Database.version``. Every commit
(a logout, a password change, a deleted user, also from the CLI in another process) changes that
number, and the next look-up finds it changed and starts from an empty cache: a session that has
ended is never served from memory. Idle and maximum age are checked against the cached times on
every look-up. Listeners hear of every change at once (the Socket.IO channels then re-check their
open connections): ``ended()`` for ends in this process, ``watch()`` for the others'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from appliance.clock import Clock
from appliance.store.db import Database
from appliance.store.sessions import Session

# Another process's commit (`appliance user del`) is noticed this fast by open sockets; REST
# requests notice it on their next look-up. One PRAGMA per poll: a few microseconds.
WATCH_S: Final = 0.25
# Only live sessions are cached (a household has a handful); past this many, start over.
MAX_ENTRIES: Final = 1000


class SessionCache:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._version: int | None = None
        self._entries: dict[str, Session] = {}
        self._listeners: list[Callable[[], None]] = []

    def get(self, id_hash: str) -> tuple[Session | None, int]:
        """The cached session, and the version to ``put`` a session read from the database at."""
        version = self._db.version()
        if version != self._version:
            self._entries.clear()
            self._version = version
        return self._entries.get(id_hash), version

    def put(self, session: Session, version: int) -> None:
        """Keep a session read after ``get`` said ``version``; if anything has been committed
        since, the read may be stale and is not kept."""
        if version != self._version:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[session.id_hash] = session

    def ended(self) -> None:
        """Sessions ended in this process (after the commit): forget all, tell the listeners."""
        self._entries.clear()
        self._version = None
        self._notify()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def watch(self, clock: Clock) -> None:
        """Tell the listeners when another connection has committed (runs until cancelled)."""
        seen = self._db.version()
        while True:
            await clock.sleep(WATCH_S)
            version = self._db.version()
            if version != seen:
                seen = version
                self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()
