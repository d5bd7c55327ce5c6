"""The scanners' topics and the wire format of their batches; pure (no I/O).

A batch is one JSON object ``{"sightings": [{"beacon": 7, "address": "AA:..", "rssi": -60,
"at": "2026-12-02T04:15:00.123Z"}, ...]}`` on ``appliance/<site>/scanner/<id>/sightings``; the
scanner's retained ``online``/``offline`` (its last-will) on ``.../status``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from appliance.presence.model import MAC_RE

ONLINE: Final = "online"
OFFLINE: Final = "offline"
# RSSI a radio can report: -127 dBm is BLE's floor, 20 dBm above any transmitter's power.
RSSI_MIN: Final = -127
RSSI_MAX: Final = 20
# A scanner hears a few dozen beacons; a batch carries the newest sighting of each.
MAX_BATCH: Final = 500
# 500 sightings of ~90 bytes; anything larger is not a batch of ours.
MAX_PAYLOAD_BYTES: Final = 64 * 1024


def root(site: str) -> str:
    return f"appliance/{site}"


def sightings_topic(site: str, scanner: str) -> str:
    return f"{root(site)}/scanner/{scanner}/sightings"


def status_topic(site: str, scanner: str) -> str:
    return f"{root(site)}/scanner/{scanner}/status"


def scanner_of(topic: str, site: str) -> tuple[str, str] | None:
    """(scanner id, "sightings" | "status") of a scanner topic of ``site``; None otherwise."""
    prefix = f"{root(site)}/scanner/"
    if not topic.startswith(prefix):
        return None
    scanner, _, kind = topic[len(prefix):].partition("/")
    if not scanner or kind not in ("sightings", "status"):
        return None
    return scanner, kind


@dataclass(frozen=True, slots=True)
class Sighting:
    beacon: int
    address: str
    rssi: int
    at: datetime


class BadBatch(ValueError):
    """A batch that is not one; ``reason`` is the /status counter it lands in."""

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


def encode(sightings: list[Sighting]) -> bytes:
    return json.dumps({"sightings": [
        {"beacon": s.beacon, "address": s.address, "rssi": s.rssi,
         "at": s.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        for s in sightings]}, separators=(",", ":")).encode()


def decode(payload: bytes) -> list[Sighting]:
    """The sightings of a batch; BadBatch when it is malformed or one of them is absurd."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        msg = f"a batch of {len(payload)} bytes"
        raise BadBatch(msg, reason="oversized")
    try:
        body: Any = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        msg = "not JSON"
        raise BadBatch(msg) from None
    items = body.get("sightings") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) > MAX_BATCH:
        msg = "no list of sightings"
        raise BadBatch(msg)
    return [_sighting(item) for item in items]


def _sighting(item: Any) -> Sighting:
    if not isinstance(item, dict):
        msg = "a sighting that is not an object"
        raise BadBatch(msg)
    beacon, address, rssi, at = (item.get(k) for k in ("beacon", "address", "rssi", "at"))
    if (not isinstance(beacon, int) or isinstance(beacon, bool) or not 0 <= beacon <= 0xFFFF
            or not isinstance(address, str) or not MAC_RE.match(address)
            or not isinstance(at, str) or not isinstance(rssi, int) or isinstance(rssi, bool)):
        msg = "a sighting without beacon, address, rssi and at"
        raise BadBatch(msg)
    if not RSSI_MIN <= rssi <= RSSI_MAX:
        msg = f"RSSI {rssi} dBm"
        raise BadBatch(msg, reason="absurd_rssi")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        msg = "a time that is not ISO 8601"
        raise BadBatch(msg) from None
    if when.tzinfo is None:
        msg = "a time without its zone"
        raise BadBatch(msg)
    return Sighting(beacon, address, rssi, when)
