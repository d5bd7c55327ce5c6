"""The JSON shape of a beacon: one entry of GET /devices and of the Socket.IO presence event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from appliance.presence.model import BeaconView, PresenceState
from appliance.store.db import to_db_time


def device_payload(view: BeaconView, wall_of: Callable[[float], datetime]) -> dict[str, Any]:
    """The reference fields (id, name, rssi, isPaired, isConnected) and what the appliance adds."""
    return {
        "id": view.address,
        "name": view.name,
        "rssi": view.rssi,
        "isPaired": view.pairing is not None,
        "isConnected": view.linked,
        "beaconId": view.beacon_id,
        "state": view.state.value,
        "requiresTap": view.state is PresenceState.REQUIRES_TAP,
        "rssiSmoothed": None if view.rssi_smoothed is None else round(view.rssi_smoothed, 1),
        "userId": view.pairing.user_id if view.pairing else None,
        "userName": view.pairing.user_name if view.pairing else None,
        "firstSeen": to_db_time(wall_of(view.first_seen)),
        "lastSeen": to_db_time(wall_of(view.last_seen)),
    }
