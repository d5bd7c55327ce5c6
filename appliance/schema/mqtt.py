"""Satellite scanners: GET /api/scanners and /status's mqtt part."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel

from appliance.mqtt.hub import ScannerSeen
from appliance.schema.time import ApiTime


class ScannerInfo(BaseModel):
    id: str
    area: str
    # None: it has not said since the appliance started (its retained status comes at connect).
    online: bool | None
    lastSeen: ApiTime | None
    # Beacons in its last batch (the local radio: beacons in its area).
    beaconCount: int
    batches: int

    @classmethod
    def of(cls, seen: ScannerSeen, wall_of: Callable[[float], datetime]) -> ScannerInfo:
        return cls(id=seen.id, area=seen.area, online=seen.online,
                   lastSeen=None if seen.last_seen is None else wall_of(seen.last_seen),
                   beaconCount=len(seen.beacons), batches=seen.batches)


class Scanners(BaseModel):
    # False: no broker is configured, so no scanner can report (README, "More rooms").
    configured: bool
    scanners: list[ScannerInfo]


class MqttStatus(BaseModel):
    configured: bool
    broker: str | None = None
    connected: bool | None = None
    lastError: str | None = None
    retryInS: float | None = None
    batches: int = 0
    sightings: int = 0
    errors: int = 0
    # Batches dropped, by reason: unknown_scanner, malformed, oversized, absurd_rssi, flood.
    dropped: dict[str, int] = {}
    scanners: int = 0
    scannersOnline: int = 0
