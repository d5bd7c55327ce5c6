"""The air around the virtual rig's guest: simulated beacons on one virtual link, and each one's radio path.

The beacons are the appliance's own simulations (``PythonBeacons``: VirtualBeacon;
``SketchBeaconFactory``: the firmware built for the host, its Serial on a pty); any mix of kinds.
``reception`` is the path model the guest's controller applies to every advertisement it hears:
a base RSSI per beacon (set directly or from a distance) with gaussian jitter, and a fraction of
packets lost. This is VirtualRadio's beacon side without its central: here the central is the
guest's BlueZ, on the far end of an HCI socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from bumble import core, hci

from appliance.errors import RadioError
from appliance.presence.virtual_radio import (
    RSSI_JITTER_DB,
    BeaconFactory,
    SimulatedBeacon,
    VirtualBeaconState,
    VirtualLink,
    beacon_address,
)

_LOGGER = logging.getLogger(__name__)

# VirtualRadio's default: a beacon a couple of metres from the Pi.
RSSI_DEFAULT_DBM: Final = -60.0
# Log-distance path loss: RSSI(d) = RSSI(1 m) - 10 n log10(d). -59 dBm at 1 m is the usual
# calibration of a 0 dBm BLE transmitter (iBeacon's "measured power"); n = 2 is free space, the
# line of sight across a workshop (walls would make it 2.5-3).
RSSI_AT_1M_DBM: Final = -59.0
PATH_LOSS_EXPONENT: Final = 2.0
# Beyond these the model means nothing: closer than the antennas' near field, farther than any
# room; at 100 m it already gives -99 dBm, below a Pi's sensitivity.
MIN_DISTANCE_M: Final = 0.1
MAX_DISTANCE_M: Final = 100.0
# The range an HCI advertising report can carry (Core 5.4, Vol 4, Part E, 7.7.65.2).
RSSI_MIN_DBM: Final = -127
RSSI_MAX_DBM: Final = 20


def rssi_at(meters: float) -> float:
    """The mean RSSI of a beacon ``meters`` away (log-distance path loss)."""
    if not MIN_DISTANCE_M <= meters <= MAX_DISTANCE_M:
        msg = f"distance {meters} m is outside {MIN_DISTANCE_M}..{MAX_DISTANCE_M} m"
        raise ValueError(msg)
    return RSSI_AT_1M_DBM - 10 * PATH_LOSS_EXPONENT * math.log10(meters)


class BeaconAir:
    """Simulated beacons on a VirtualLink, made by one ``BeaconFactory`` per kind."""

    def __init__(
        self, factories: Mapping[str, BeaconFactory], default_kind: str, *, seed: int | None = None
    ) -> None:
        if default_kind not in factories:
            msg = f"unknown beacon kind {default_kind!r}; pick one of {sorted(factories)}"
            raise ValueError(msg)
        self.link = VirtualLink()  # type: ignore[no-untyped-call]
        self._factories = dict(factories)
        self._default_kind = default_kind
        self._rng = random.Random(seed)  # a simulation, not cryptography
        self._states: dict[str, VirtualBeaconState] = {}
        self._beacons: dict[str, SimulatedBeacon] = {}
        self._lock = asyncio.Lock()  # one beacon starts, leaves or goes at a time

    @property
    def beacons(self) -> Mapping[str, VirtualBeaconState]:
        return MappingProxyType(self._states)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._factories)

    def address_of(self, beacon: int | str) -> str:
        """The address of a beacon given by id or address; ValueError when there is none."""
        address = beacon_address(beacon) if isinstance(beacon, int) else beacon.upper()
        if address not in self._states:
            msg = f"no beacon {beacon}; the beacons are {sorted(self._states)}"
            raise ValueError(msg)
        return address

    async def add(
        self, beacon_id: int, *, kind: str | None = None, rssi: float = RSSI_DEFAULT_DBM,
        name: str | None = None,
    ) -> VirtualBeaconState:
        """Start a beacon, advertising; RadioError when it cannot start (says why)."""
        kind = kind or self._default_kind
        factory = self._factories.get(kind)
        if factory is None:
            msg = f"unknown beacon kind {kind!r}; pick one of {self.kinds}"
            raise ValueError(msg)
        address = beacon_address(beacon_id)
        async with self._lock:
            if address in self._states:
                msg = f"beacon {beacon_id} already exists; pick another id"
                raise ValueError(msg)
            state = VirtualBeaconState(
                address, beacon_id, name or factory.default_name(beacon_id), True,
                _checked_rssi(rssi), kind=factory.kind,
            )
            beacon = factory.create(self.link, state)
            self._states[address] = state
            self._beacons[address] = beacon
            try:
                await beacon.start(present=True)
            except (RadioError, core.BaseBumbleError, TimeoutError) as exc:
                del self._states[address], self._beacons[address]
                with contextlib.suppress(RadioError, core.BaseBumbleError, TimeoutError):
                    await beacon.close()
                if isinstance(exc, RadioError):
                    raise
                msg = f"beacon {beacon_id} did not start ({exc!r}); see the radio's log"
                raise RadioError(msg) from exc
        _LOGGER.info("Beacon %s (%s, %s) is on the air", beacon_id, kind, address)
        return state

    async def remove(self, beacon: int | str) -> None:
        """Power the beacon off and take it off the link: it is gone, not just away."""
        async with self._lock:
            address = self.address_of(beacon)
            del self._states[address]
            await self._beacons.pop(address).close()
        _LOGGER.info("Beacon %s removed", address)

    async def set_present(self, beacon: int | str, present: bool) -> VirtualBeaconState:
        """Leave (stop advertising, drop links) or come back; a sketch beacon gets adv off/on."""
        async with self._lock:
            state = self._update(beacon, present=present)
            await self._beacons[state.address].set_present(present=present)
        return state

    def set_rssi(self, beacon: int | str, rssi: float) -> VirtualBeaconState:
        return self._update(beacon, rssi=_checked_rssi(rssi))

    def set_distance(self, beacon: int | str, meters: float) -> VirtualBeaconState:
        return self._update(beacon, rssi=round(rssi_at(meters), 1))

    def drop_fraction(self, beacon: int | str, fraction: float) -> VirtualBeaconState:
        if not 0.0 <= fraction <= 1.0:
            msg = f"drop fraction {fraction} is outside 0..1"
            raise ValueError(msg)
        return self._update(beacon, drop_fraction=fraction)

    def serial_path(self, beacon: int | str) -> str | None:
        """The pty that is a sketch beacon's USB serial port; None for a Python beacon."""
        path = getattr(self._beacons[self.address_of(beacon)], "serial_path", None)
        return path if isinstance(path, str) else None

    def reception(self, address: hci.Address) -> int | None:
        """The RSSI the guest hears one advertisement from ``address`` with, or None: lost."""
        state = self._states.get(address.to_string(False))
        if state is None:
            return -50  # not a beacon of ours (none exist on this link): bumble's constant
        if self._rng.random() < state.drop_fraction:
            return None
        jittered = round(self._rng.gauss(state.rssi, RSSI_JITTER_DB))
        return max(RSSI_MIN_DBM, min(RSSI_MAX_DBM, jittered))

    async def close(self) -> None:
        async with self._lock:
            for address, beacon in list(self._beacons.items()):
                try:
                    await beacon.close()
                except (RadioError, core.BaseBumbleError, TimeoutError) as exc:
                    _LOGGER.warning("Beacon %s did not close cleanly: %r", address, exc)
            self._beacons.clear()
            self._states.clear()

    def _update(self, beacon: int | str, **changes: Any) -> VirtualBeaconState:
        state = dataclasses.replace(self._states[self.address_of(beacon)], **changes)
        self._states[state.address] = state
        return state


def _checked_rssi(rssi: float) -> float:
    if not RSSI_MIN_DBM <= rssi <= RSSI_MAX_DBM:
        msg = f"RSSI {rssi} dBm is outside {RSSI_MIN_DBM}..{RSSI_MAX_DBM}"
        raise ValueError(msg)
    return float(rssi)
