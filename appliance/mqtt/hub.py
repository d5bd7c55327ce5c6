"""The main appliance's side of the scanners: their batches in, checked, into the tracker.

What is not right is dropped and counted (for /status), never raised: a batch from a scanner
that is unknown or revoked, one that is not JSON or not ours, one with an absurd RSSI, and
batches past the flood limit. Nothing here writes to the SD card; the presence service writes
state changes as it does for the local radio. Revoking (`appliance scanner revoke`, another
process) commits to the database; the next batch sees ``Database.version`` changed and reads
the scanners again, so a revoked scanner's batches are dropped from then on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import aiomqtt

from appliance.auth.scanners import ScannerRecord, all_scanners
from appliance.clock import Clock
from appliance.mqtt import sightings
from appliance.presence.model import Advertisement
from appliance.presence.service import PresenceService
from appliance.store.db import Database

_LOGGER = logging.getLogger(__name__)

# A scanner sends 2 batches a second (scanner.py); five times that on average, with a burst of
# two seconds' worth, is a scanner gone wrong (or someone else with its password).
FLOOD_RATE: Final = 10.0
FLOOD_BURST: Final = 20.0
DROP_REASONS: Final = ("unknown_scanner", "malformed", "oversized", "absurd_rssi", "flood")


@dataclass(slots=True)
class ScannerSeen:
    """What the hub knows of one scanner (memory only)."""

    id: str
    area: str
    online: bool | None = None  # None: it has not said
    last_seen: float | None = None  # monotonic: its last batch
    beacons: set[str] = field(default_factory=set)  # heard in its last batch
    batches: int = 0
    tokens: float = FLOOD_BURST
    refilled: float | None = None

    def allow(self, now: float) -> bool:
        """The flood limit: a token bucket of FLOOD_BURST, refilled at FLOOD_RATE a second."""
        if self.refilled is not None:
            self.tokens = min(FLOOD_BURST, self.tokens + (now - self.refilled) * FLOOD_RATE)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ScannerHub:
    def __init__(self, site: str, db: Database, presence: PresenceService, clock: Clock) -> None:
        self.site = site
        self._db = db
        self._presence = presence
        self._clock = clock
        self._version: int | None = None
        self.records: dict[str, ScannerRecord] = {}
        self.generation = 0
        self.scanners: dict[str, ScannerSeen] = {}
        self.dropped: Counter[str] = Counter()
        self.batches = 0
        self.sightings = 0

    @property
    def subscriptions(self) -> tuple[str, ...]:
        base = f"{sightings.root(self.site)}/scanner/+"
        return (f"{base}/sightings", f"{base}/status")

    async def refresh(self) -> None:
        """Read the scanners again when the database changed since the last look;
        ``generation`` counts the changes of the records (added, revoked, moved)."""
        version = self._db.version()
        if version == self._version:
            return
        records = {r.id: r for r in await all_scanners(self._db)}
        self._version = version
        if records != self.records:
            self.records = records
            self.generation += 1
        for gone in set(self.scanners) - set(records):
            del self.scanners[gone]
            self._presence.scanner_gone(gone)
        for record in records.values():
            seen = self.scanners.setdefault(record.id, ScannerSeen(record.id, record.area))
            seen.area = record.area

    async def handle(self, message: aiomqtt.Message) -> None:
        where = sightings.scanner_of(message.topic.value, self.site)
        if where is None:
            return
        await self.refresh()
        scanner = self.scanners.get(where[0])
        if scanner is None:
            self.dropped["unknown_scanner"] += 1
            return
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if where[1] == "status":
            self._status(scanner, payload)
            return
        now = self._clock.monotonic()
        if not scanner.allow(now):
            self.dropped["flood"] += 1
            return
        try:
            batch = sightings.decode(payload)
        except sightings.BadBatch as exc:
            self.dropped[exc.reason] += 1
            _LOGGER.debug("Scanner %s: batch dropped: %s", scanner.id, exc)
            return
        self.batches += 1
        self.sightings += len(batch)
        scanner.batches += 1
        scanner.last_seen = now
        scanner.online = True
        scanner.beacons = {s.address for s in batch}
        await self._presence.heard_by(scanner.id, scanner.area, [
            Advertisement(address=s.address, rssi=s.rssi, beacon_id=s.beacon, counter=0,
                          uptime_min=0) for s in batch])

    def _status(self, scanner: ScannerSeen, payload: bytes) -> None:
        online = payload.decode(errors="replace") == sightings.ONLINE
        if scanner.online and not online:
            _LOGGER.warning("Scanner %s (%s) went offline", scanner.id, scanner.area)
            self._presence.scanner_gone(scanner.id)
        scanner.online = online
