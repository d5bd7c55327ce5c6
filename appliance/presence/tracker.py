"""The presence state machine: advertisements, links and a clock in, state changes out.

Pure: no I/O, no asyncio, no bleak. Every method takes ``now`` (monotonic seconds), so a test moves
30 minutes in a microsecond. The service feeds it and persists what it reports.

A paired beacon is CONNECTED while present; missing for ``away_after`` it is AWAY; seen again
within ``reconnect_window`` of the last sighting it is CONNECTED again without anyone doing
anything; once the window has passed it is REQUIRES_TAP until ``reconnect()`` (the user's tap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from appliance.presence.areas import RSSI_CLAMP_DB as RSSI_CLAMP_DB
from appliance.presence.areas import Areas, smooth_rssi
from appliance.presence.model import (
    Advertisement,
    BeaconView,
    Pairing,
    PresenceState,
    StateChanged,
)

# The scanner id of the appliance's own radio; satellite scanners have the ids they were given.
LOCAL_SCANNER: Final = "local"


class UnknownBeaconError(KeyError):
    """No beacon with that address has been seen (or it is not paired, for unpair/reconnect)."""


@dataclass(slots=True)
class _Beacon:
    address: str
    beacon_id: int
    name: str
    first_seen: float
    last_seen: float
    window_from: float
    rssi: int | None
    rssi_smoothed: float | None
    state: PresenceState
    pairing: Pairing | None = None
    linked: bool = False
    away_since: float | None = None

    def view(self, areas: Areas) -> BeaconView:
        return BeaconView(
            address=self.address, name=self.name, beacon_id=self.beacon_id, rssi=self.rssi,
            rssi_smoothed=self.rssi_smoothed, first_seen=self.first_seen,
            last_seen=self.last_seen, state=self.state, pairing=self.pairing,
            linked=self.linked, away_since=self.away_since, area=areas.area(self.address),
            scanner=areas.scanner(self.address),
        )


class Tracker:
    def __init__(self, *, away_after: float, reconnect_window: float, forget_after: float,
                 area: str = "main", areas: Areas | None = None) -> None:
        if not 0 < away_after < reconnect_window:
            msg = "away_after must be positive and shorter than reconnect_window"
            raise ValueError(msg)
        self.away_after = away_after
        self.reconnect_window = reconnect_window
        self.forget_after = forget_after
        self.area = area  # the local radio's
        self.areas = areas or Areas()
        self._beacons: dict[str, _Beacon] = {}

    # -- queries -------------------------------------------------------------------------------
    def view(self, address: str) -> BeaconView | None:
        beacon = self._beacons.get(address)
        return beacon.view(self.areas) if beacon else None

    def views(self) -> list[BeaconView]:
        return [beacon.view(self.areas) for beacon in sorted(self._beacons.values(), key=_sort_key)]

    def window_from(self, address: str) -> float:
        """Where the reconnect window of a beacon counts from (monotonic)."""
        return self._get(address).window_from

    def wants_link(self, now: float) -> list[str]:
        """Paired, present beacons the appliance should hold a GATT link to but does not, among
        those its own radio hears: a beacon only a satellite scanner hears is present through
        that scanner, and a connect from here would wait for an advertisement that never comes."""
        return [
            b.address for b in self._beacons.values()
            if b.state is PresenceState.CONNECTED and not b.linked
            and self.areas.hears(b.address, LOCAL_SCANNER, now)
        ]

    def may_link(self, address: str, now: float) -> bool:
        """Whether a GATT link that has just come up may stand: the beacon is still paired and
        CONNECTED, or AWAY inside its window. A connect started before the window ran out can
        finish after it (BlueZ waits for the next advertisement); that link is dropped, the
        beacon waits for the tap like one that came back by advertising."""
        beacon = self._beacons.get(address)
        if beacon is None or beacon.pairing is None:
            return False
        if beacon.state is PresenceState.AWAY:
            return now - beacon.window_from <= self.reconnect_window
        return beacon.state is PresenceState.CONNECTED

    # -- inputs --------------------------------------------------------------------------------
    def restore(
        self, *, address: str, beacon_id: int, name: str, pairing: Pairing, state: PresenceState,
        first_seen: float, last_seen: float, window_from: float, rssi: int | None, now: float,
    ) -> list[StateChanged]:
        """Load a paired beacon from storage, then settle it against the clock (absence that
        happened while the appliance was down counts in full)."""
        beacon = _Beacon(
            address=address, beacon_id=beacon_id, name=name, first_seen=first_seen,
            last_seen=last_seen, window_from=window_from, rssi=rssi, rssi_smoothed=None,
            state=state, pairing=pairing,
            away_since=last_seen if state is not PresenceState.CONNECTED else None,
        )
        self._beacons[address] = beacon
        return self._settle(beacon, now)

    def advertisement(self, adv: Advertisement, now: float, *, scanner: str = LOCAL_SCANNER,
                      area: str | None = None) -> list[StateChanged]:
        """One sighting, by the local radio or by the satellite ``scanner`` in ``area``: any
        scanner's counts for presence; RSSI is the one of the scanner whose area it is in."""
        moved = self.areas.heard(adv.address, scanner, area or self.area, adv.rssi, now)
        beacon = self._beacons.get(adv.address)
        if beacon is None:
            beacon = _Beacon(
                address=adv.address, beacon_id=adv.beacon_id,
                name=adv.name or f"Beacon {adv.beacon_id}", first_seen=now, last_seen=now,
                window_from=now, rssi=adv.rssi, rssi_smoothed=float(adv.rssi),
                state=PresenceState.DISCOVERED,
            )
            self._beacons[adv.address] = beacon
            return [StateChanged(adv.address, None, PresenceState.DISCOVERED)]
        if adv.name:
            beacon.name = adv.name
        beacon.beacon_id = adv.beacon_id
        if moved or self.areas.scanner(adv.address) == scanner:
            returning = (moved or beacon.away_since is not None
                         or now - beacon.last_seen > self.away_after)
            beacon.rssi = adv.rssi
            beacon.rssi_smoothed = smooth_rssi(None if returning else beacon.rssi_smoothed, adv.rssi)
        return self._seen(beacon, now, link_changed=moved)

    def scanner_gone(self, scanner: str) -> list[StateChanged]:
        """A satellite scanner went offline: the beacons in its area are in none until heard."""
        held = [b for b in self._beacons.values() if self.areas.scanner(b.address) == scanner]
        self.areas.scanner_gone(scanner)
        return [StateChanged(b.address, b.state, b.state) for b in held]

    def link_up(self, address: str, now: float) -> list[StateChanged]:
        beacon = self._get(address)
        beacon.linked = True
        return self._seen(beacon, now, link_changed=True)

    def link_down(self, address: str, now: float) -> list[StateChanged]:
        beacon = self._beacons.get(address)
        if beacon is None or not beacon.linked:
            return []
        beacon.linked = False
        beacon.last_seen = beacon.window_from = max(beacon.window_from, now)
        return [StateChanged(address, beacon.state, beacon.state)]

    def tick(self, now: float) -> list[StateChanged]:
        changes: list[StateChanged] = []
        for beacon in list(self._beacons.values()):
            if beacon.linked:  # a live link is presence, whether or not it still advertises
                beacon.last_seen = beacon.window_from = now
            changes += self._settle(beacon, now)
        return changes

    def pair(self, address: str, pairing: Pairing, now: float) -> list[StateChanged]:
        beacon = self._get(address)
        old = beacon.state
        beacon.pairing = pairing
        if beacon.state is PresenceState.DISCOVERED:
            beacon.state = PresenceState.CONNECTED
        # A fresh pairing is a deliberate act: it starts a fresh window like a tap does.
        beacon.window_from = max(beacon.window_from, now)
        if beacon.state is PresenceState.REQUIRES_TAP:
            beacon.state = PresenceState.CONNECTED
        return [StateChanged(address, old, beacon.state), *self._settle(beacon, now)]

    def unpair(self, address: str, now: float) -> list[StateChanged]:
        beacon = self._get(address)
        if beacon.pairing is None:
            raise UnknownBeaconError(address)
        old = beacon.state
        beacon.pairing = None
        beacon.away_since = None
        beacon.state = PresenceState.DISCOVERED
        return [StateChanged(address, old, beacon.state), *self._settle(beacon, now)]

    def reconnect(self, address: str, now: float) -> list[StateChanged]:
        """The user's tap: connect again now if present, else wait a fresh window for it."""
        beacon = self._get(address)
        if beacon.pairing is None:
            raise UnknownBeaconError(address)
        old = beacon.state
        beacon.window_from = now
        present = beacon.linked or now - beacon.last_seen <= self.away_after
        beacon.state = PresenceState.CONNECTED if present else PresenceState.AWAY
        beacon.away_since = None if present else (beacon.away_since or beacon.last_seen)
        return [StateChanged(address, old, beacon.state)]

    # -- internals -----------------------------------------------------------------------------
    def _get(self, address: str) -> _Beacon:
        try:
            return self._beacons[address]
        except KeyError:
            raise UnknownBeaconError(address) from None

    def _seen(self, beacon: _Beacon, now: float, *, link_changed: bool = False) -> list[StateChanged]:
        beacon.last_seen = now
        old = beacon.state
        if beacon.state is PresenceState.AWAY:
            if now - beacon.window_from <= self.reconnect_window:
                beacon.state = PresenceState.CONNECTED  # back in time: reconnect automatically
            else:
                beacon.state = PresenceState.REQUIRES_TAP
        beacon.away_since = None
        if beacon.state is not PresenceState.REQUIRES_TAP:
            beacon.window_from = now
        if beacon.state is not old or link_changed:
            return [StateChanged(beacon.address, old, beacon.state)]
        return []

    def _settle(self, beacon: _Beacon, now: float) -> list[StateChanged]:
        old = beacon.state
        absent = now - beacon.last_seen
        if beacon.pairing is None:
            if not beacon.linked and absent > self.forget_after:
                del self._beacons[beacon.address]
                self.areas.forget(beacon.address)
                return [StateChanged(beacon.address, old, None)]
            return []
        if beacon.state is PresenceState.CONNECTED and not beacon.linked and absent > self.away_after:
            beacon.state = PresenceState.AWAY
            beacon.away_since = beacon.last_seen
        if beacon.state is PresenceState.AWAY and now - beacon.window_from > self.reconnect_window:
            beacon.state = PresenceState.REQUIRES_TAP
        return [StateChanged(beacon.address, old, beacon.state)] if beacon.state is not old else []


def _sort_key(beacon: _Beacon) -> tuple[bool, int, str]:
    return (beacon.pairing is None, beacon.beacon_id, beacon.address)
