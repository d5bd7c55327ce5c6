"""Beacons: GET /devices, devices2v and presence2v, pairing, the radio's part of /status."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, StringConstraints, WithJsonSchema

from appliance.presence.model import BeaconView, PresenceState, normalise_address
from appliance.schema.common import Answer, one_line, one_line_schema
from appliance.schema.time import ApiTime

DeviceId = Annotated[str, AfterValidator(normalise_address),
                     WithJsonSchema({"type": "string",
                                     "pattern": r"^\s*[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}\s*$",
                                     "examples": ["AA:BB:CC:DD:EE:FF"]})]
# A user's id or name, stripped: one line of printable text (it is shown on the dashboard and
# sent to Home Assistant).
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
                      AfterValidator(one_line), one_line_schema(128)]


class Device(BaseModel):
    """One beacon: an entry of GET /devices, of devices2v and of presence2v."""

    # The reference fields.
    id: str
    name: str
    rssi: int | None
    isPaired: bool
    isConnected: bool
    # What the appliance adds.
    beaconId: int
    state: PresenceState
    requiresTap: bool
    rssiSmoothed: float | None
    userId: str | None
    userName: str | None
    firstSeen: ApiTime
    lastSeen: ApiTime
    # Where it is (README, "More rooms"): the area of the scanner that hears it best, and that
    # scanner's id ("local": the appliance's own radio); None until a scanner has heard it.
    area: str | None = None
    scanner: str | None = None

    @classmethod
    def of(cls, view: BeaconView, wall_of: Callable[[float], datetime]) -> Device:
        return cls(
            id=view.address, name=view.name, rssi=view.rssi, isPaired=view.pairing is not None,
            isConnected=view.linked, beaconId=view.beacon_id, state=view.state,
            requiresTap=view.state is PresenceState.REQUIRES_TAP,
            rssiSmoothed=None if view.rssi_smoothed is None else round(view.rssi_smoothed, 1),
            userId=view.pairing.user_id if view.pairing else None,
            userName=view.pairing.user_name if view.pairing else None,
            firstSeen=wall_of(view.first_seen), lastSeen=wall_of(view.last_seen),
            area=view.area, scanner=view.scanner,
        )


class Devices(BaseModel):
    discovered: list[Device]

    @classmethod
    def of(cls, views: Iterable[BeaconView], wall_of: Callable[[float], datetime]) -> Devices:
        """GET /devices, devices2v: every beacon the presence service lists, in its order."""
        return cls(discovered=[Device.of(view, wall_of) for view in views])


class DeviceRemoved(Answer):
    """presence2v when an unpaired beacon has left and is forgotten."""

    id: str
    removed: Literal[True] = True


class PairRequest(BaseModel):
    """Pair a beacon with a user (the reference presence server's body)."""

    deviceId: DeviceId
    userId: ShortText
    userName: ShortText


class DeviceRequest(BaseModel):
    deviceId: DeviceId


class Paired(Answer):
    success: bool = True
    message: str
    deviceId: str
    userId: str
    device: Device


class Unpaired(Answer):
    success: bool = True
    message: str
    deviceId: str


class BluetoothStatus(BaseModel):
    scanning: bool
    discoveredCount: int
    connectedCount: int
    radio: str
    adapter: str
    recoveries: int
    lastError: str | None
    lastRecovery: str | None


class PairingStatus(BaseModel):
    totalPaired: int
    requiresTap: int
    activeRecent: int

