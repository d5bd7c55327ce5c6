"""Presence domain types: advertisements in, states and events out."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MAC_RE: Final = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")


def normalise_address(address: str) -> str:
    """Upper-case MAC address; raises ValueError when it is not one."""
    candidate = address.strip().upper()
    if not MAC_RE.match(candidate):
        msg = f"{address!r} is not a Bluetooth address like AA:BB:CC:DD:EE:FF"
        raise ValueError(msg)
    return candidate


class PresenceState(StrEnum):
    DISCOVERED = "discovered"  # unpaired beacon in range
    CONNECTED = "connected"  # paired and present: the appliance holds (or is making) a GATT link
    AWAY = "away"  # paired, absent, still inside the reconnect window
    REQUIRES_TAP = "requiresTap"  # paired, window expired: waits for POST /reconnect


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One advertisement from one of our beacons, already recognised by the radio."""

    address: str
    rssi: int
    beacon_id: int
    counter: int
    uptime_min: int
    name: str | None = None


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What the appliance reads from a beacon when it connects (the info characteristic)."""

    address: str
    beacon_id: int
    firmware: str


@dataclass(frozen=True, slots=True)
class Pairing:
    user_id: str
    user_name: str


@dataclass(frozen=True, slots=True)
class BeaconView:
    """A beacon as the API shows it. Times are monotonic seconds; the service converts them."""

    address: str
    name: str
    beacon_id: int
    rssi: int | None
    rssi_smoothed: float | None
    first_seen: float
    last_seen: float
    state: PresenceState
    pairing: Pairing | None
    linked: bool
    away_since: float | None
    # Where it is: the area of the scanner that hears it best (areas.py), and that scanner's id.
    area: str | None = None
    scanner: str | None = None


@dataclass(frozen=True, slots=True)
class StateChanged:
    """Emitted by the tracker when a beacon's state (or pairing, or link) changes."""

    address: str
    old: PresenceState | None
    new: PresenceState | None  # None: forgotten (an unpaired beacon that left)


Unsubscribe = Callable[[], None]
