"""The air: simulated beacons on one virtual link, and each one's radio path to the listener.

One model serves both simulations of a central: the in-process ``VirtualRadio`` (bumble's host
stack listens) and the virtual rig's radio (tests/hil/radio.py: the QEMU guest's BlueZ listens,
on the far end of an HCI socket). ``BeaconAir`` keeps the beacons (any mix of kinds, each made by
its ``BeaconFactory``) and ``reception`` is the path model the listening controller applies to
every advertisement: a base RSSI per beacon (set directly or from a distance) with gaussian
jitter, and a fraction of packets lost.

Beacons exist as states before the air starts and after it stops; they run (power on, advertise)
only between ``start()`` and ``stop()``. Each ``stop()`` leaves a fresh link for the next start.
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
from typing import Any, Final, Protocol

from bumble import core, hci
from bumble.link import LocalLink

from appliance.errors import RadioError
from appliance_sim.controller import VirtualLink

_LOGGER = logging.getLogger(__name__)

# The real beacon's interval: beacon.ino never sets one, so ArduinoBLE's default 160 × 0.625 ms
# applies. Discovery takes ~0.1 s; 3 beacons make ~60 HCI reports/s: 3 % of one x86 core.
# Read by every beacon as it starts (tests and the rig set it before any beacon exists).
ADV_INTERVAL_MS: Final = 100.0
RSSI_JITTER_DB: Final = 2.0  # σ of the gaussian jitter, typical of a static indoor link
# A beacon a couple of metres from the Pi.
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
# What bumble's own controller reports for a device that is not one of ours.
FOREIGN_RSSI_DBM: Final = -50


def beacon_address(beacon_id: int) -> str:
    """The static random address of virtual beacon ``beacon_id`` (top two bits set)."""
    if not 1 <= beacon_id <= 0xFFFF:
        msg = f"beacon id {beacon_id} is outside 1..65535; pick another id"
        raise ValueError(msg)
    return f"F0:00:00:00:{beacon_id >> 8:02X}:{beacon_id & 0xFF:02X}"


def rssi_at(meters: float) -> float:
    """The mean RSSI of a beacon ``meters`` away (log-distance path loss)."""
    if not MIN_DISTANCE_M <= meters <= MAX_DISTANCE_M:
        msg = f"distance {meters} m is outside {MIN_DISTANCE_M}..{MAX_DISTANCE_M} m"
        raise ValueError(msg)
    return RSSI_AT_1M_DBM - 10 * PATH_LOSS_EXPONENT * math.log10(meters)


@dataclasses.dataclass(frozen=True, slots=True)
class VirtualBeaconState:
    """A virtual beacon as the dashboard and tests see it."""

    address: str
    beacon_id: int
    name: str
    present: bool
    rssi: float
    drop_fraction: float = 0.0
    kind: str = "python"  # the BeaconFactory.kind that runs it: "python" or "sketch"


class SimulatedBeacon(Protocol):
    """A beacon on the air (VirtualBeacon, SketchBeacon)."""

    @property
    def identify_writes(self) -> list[int]:
        """The IDENTIFY values (seconds) written to it since it started."""
        ...

    async def start(self, *, present: bool) -> None:
        """Power on; advertise unless ``present`` is false. Raises RadioError."""

    async def set_present(self, *, present: bool) -> None:
        """Leave (stop advertising, drop every link) or come back."""

    async def close(self) -> None:
        """Power off and leave the link."""


class BeaconFactory(Protocol):
    """Makes the simulated beacons of one kind."""

    @property
    def kind(self) -> str: ...

    def default_name(self, beacon_id: int) -> str:
        """The name the beacon will advertise when none is given."""
        ...

    def create(self, link: LocalLink, state: VirtualBeaconState) -> SimulatedBeacon: ...


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
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        self._states: dict[str, VirtualBeaconState] = {}
        self._beacons: dict[str, SimulatedBeacon] = {}
        self._made_by: dict[str, BeaconFactory] = {}  # per beacon: a kind may have several factories
        self._running = False
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
            msg = f"no virtual beacon {beacon}; the beacons are {sorted(self._states)}"
            raise ValueError(msg)
        return address

    def beacon(self, beacon: int | str) -> SimulatedBeacon:
        """The running beacon (a VirtualBeacon or a SketchBeacon); ValueError when not running."""
        running = self._beacons.get(self.address_of(beacon))
        if running is None:
            msg = f"virtual beacon {beacon} is not running; start the radio first"
            raise ValueError(msg)
        return running

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Power on every beacon; RadioError (saying why) when one cannot start."""
        async with self._lock:
            self._running = True
            for state in list(self._states.values()):
                await self._start(state, self._made_by[state.address])

    async def stop(self) -> None:
        """Power every beacon off; their states stay, the next start() gets a fresh link."""
        async with self._lock:
            self._running = False
            for address, beacon in list(self._beacons.items()):
                try:
                    await beacon.close()
                except (RadioError, core.BaseBumbleError, TimeoutError) as exc:
                    _LOGGER.warning("Beacon %s did not close cleanly: %r", address, exc)
            self._beacons.clear()
            self.link = VirtualLink()  # type: ignore[no-untyped-call]

    # -- the beacons ----------------------------------------------------------------------

    def declare(
        self, beacon_id: int, *, kind: str | None = None, factory: BeaconFactory | None = None,
        rssi: float = RSSI_DEFAULT_DBM, name: str | None = None,
    ) -> VirtualBeaconState:
        """Add a beacon while the air is stopped: it goes on the air at start().

        ValueError for a duplicate id, an unknown kind or a running air (use add()).
        """
        if self._running:
            msg = "the air is running; add() starts a beacon on it"
            raise ValueError(msg)
        return self._new_state(beacon_id, kind, factory, rssi, name)

    async def add(
        self, beacon_id: int, *, kind: str | None = None, factory: BeaconFactory | None = None,
        rssi: float = RSSI_DEFAULT_DBM, name: str | None = None,
    ) -> VirtualBeaconState:
        """Add a beacon of ``kind`` (or made by ``factory``), on the air if the air runs.

        ValueError for a duplicate id or an unknown kind; RadioError when it cannot start.
        """
        async with self._lock:
            state = self._new_state(beacon_id, kind, factory, rssi, name)
            if self._running:
                try:
                    await self._start(state, self._made_by[state.address])
                except RadioError:
                    del self._states[state.address], self._made_by[state.address]
                    raise
        return state

    async def remove(self, beacon: int | str) -> None:
        """Power the beacon off and take it off the link: it is gone, not just away."""
        async with self._lock:
            address = self.address_of(beacon)
            del self._states[address], self._made_by[address]
            running = self._beacons.pop(address, None)
            if running is not None:
                await running.close()
        _LOGGER.info("Beacon %s removed", address)

    async def set_present(self, beacon: int | str, present: bool) -> VirtualBeaconState:
        """Leave (stop advertising, drop links) or come back; a sketch beacon gets adv off/on."""
        async with self._lock:
            state = self._update(beacon, present=present)
            if (running := self._beacons.get(state.address)) is not None:
                await running.set_present(present=present)
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

    def identify_writes(self, beacon: int | str) -> list[int]:
        """The IDENTIFY values (seconds) the beacon received since it started."""
        running = self._beacons.get(self.address_of(beacon))
        return [] if running is None else list(running.identify_writes)

    def serial_path(self, beacon: int | str) -> str | None:
        """The pty that is a sketch beacon's USB serial port; None for a Python beacon."""
        path = getattr(self._beacons.get(self.address_of(beacon)), "serial_path", None)
        return path if isinstance(path, str) else None

    def reception(self, address: hci.Address) -> int | None:
        """The RSSI one advertisement from ``address`` is heard with, or None: lost."""
        state = self._states.get(address.to_string(False))
        if state is None:
            return FOREIGN_RSSI_DBM
        if self._rng.random() < state.drop_fraction:
            return None
        jittered = round(self._rng.gauss(state.rssi, RSSI_JITTER_DB))
        return max(RSSI_MIN_DBM, min(RSSI_MAX_DBM, jittered))

    # -- internals ------------------------------------------------------------------------

    def _new_state(
        self, beacon_id: int, kind: str | None, factory: BeaconFactory | None, rssi: float,
        name: str | None,
    ) -> VirtualBeaconState:
        if factory is None:
            kind = kind or self._default_kind
            if kind not in self._factories:
                msg = f"unknown beacon kind {kind!r}; pick one of {self.kinds}"
                raise ValueError(msg)
            factory = self._factories[kind]
        address = beacon_address(beacon_id)
        if address in self._states:
            msg = f"virtual beacon {beacon_id} already exists; pick another id"
            raise ValueError(msg)
        state = VirtualBeaconState(
            address, beacon_id, name or factory.default_name(beacon_id), True,
            _checked_rssi(rssi), kind=factory.kind,
        )
        self._states[address] = state
        self._made_by[address] = factory
        return state

    async def _start(self, state: VirtualBeaconState, factory: BeaconFactory) -> None:
        beacon = factory.create(self.link, state)
        self._beacons[state.address] = beacon
        try:
            await beacon.start(present=state.present)
        except (RadioError, core.BaseBumbleError, TimeoutError) as exc:
            del self._beacons[state.address]
            with contextlib.suppress(RadioError, core.BaseBumbleError, TimeoutError):
                await beacon.close()
            if isinstance(exc, RadioError):
                raise
            msg = f"beacon {state.beacon_id} did not start ({exc!r}); see the radio's log"
            raise RadioError(msg) from exc
        _LOGGER.info("Beacon %s (%s, %s) is on the air", state.beacon_id, state.kind, state.address)

    def _update(self, beacon: int | str, **changes: Any) -> VirtualBeaconState:
        state = dataclasses.replace(self._states[self.address_of(beacon)], **changes)
        self._states[state.address] = state
        return state


def _checked_rssi(rssi: float) -> float:
    if not RSSI_MIN_DBM <= rssi <= RSSI_MAX_DBM:
        msg = f"RSSI {rssi} dBm is outside {RSSI_MIN_DBM}..{RSSI_MAX_DBM}"
        raise ValueError(msg)
    return float(rssi)
