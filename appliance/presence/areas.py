"""Which area a beacon is in: the scanner that hears it best, with hysteresis. Pure, like the
tracker: every method takes ``now`` (monotonic seconds).

Each scanner's RSSI of a beacon is smoothed on its own (the tracker's clamped EMA). The beacon
moves to another scanner's area only when that scanner's smoothed RSSI beats the current one's by
MARGIN_DB for SUSTAIN_S without a break (Bermuda's users saw a beacon between two rooms flap
when the stronger scanner won at once), or when the current scanner has not heard it for
STALE_S (it has left that room).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# RSSI smoothing: a sample may move the estimate by at most RSSI_CLAMP_DB before averaging, then an
# exponential moving average with weight RSSI_ALPHA. BLE RSSI swings 10-20 dB for single packets
# (multipath fades, a body in the way); the clamp keeps one such packet from dragging the estimate,
# the EMA follows a real move within ~5 packets (about half a second at 100 ms advertising) and
# needs O(1) memory per beacon, unlike a median window.
RSSI_ALPHA: Final = 0.3
RSSI_CLAMP_DB: Final = 15.0


# 6 dB is about twice the distance indoors: more than a body turning or a door closing moves a
# smoothed RSSI, less than walking from one room to the next.
MARGIN_DB: Final = 6.0
# A walk across a room takes a few seconds; a fade or a passer-by blocking the path is shorter.
SUSTAIN_S: Final = 5.0
# A scanner that has not heard the beacon for this long no longer holds it (scanners send at
# least every second, the local radio hears ten advertisements a second).
STALE_S: Final = 10.0


def smooth_rssi(previous: float | None, sample: int) -> float:
    if previous is None:
        return float(sample)
    delta = max(-RSSI_CLAMP_DB, min(RSSI_CLAMP_DB, sample - previous))
    return previous + RSSI_ALPHA * delta


@dataclass(slots=True)
class _Heard:
    area: str
    rssi: int
    smoothed: float
    last: float


@dataclass(slots=True)
class _Beacon:
    heard: dict[str, _Heard] = field(default_factory=dict)
    scanner: str | None = None
    candidate: str | None = None
    candidate_since: float = 0.0


class Areas:
    def __init__(self, *, margin_db: float = MARGIN_DB, sustain_s: float = SUSTAIN_S,
                 stale_s: float = STALE_S) -> None:
        self.margin_db, self.sustain_s, self.stale_s = margin_db, sustain_s, stale_s
        self._beacons: dict[str, _Beacon] = {}

    def scanner(self, address: str) -> str | None:
        beacon = self._beacons.get(address)
        return beacon.scanner if beacon else None

    def area(self, address: str) -> str | None:
        beacon = self._beacons.get(address)
        if beacon is None or beacon.scanner is None:
            return None
        return beacon.heard[beacon.scanner].area

    def hears(self, address: str, scanner: str, now: float) -> bool:
        """Whether ``scanner`` has heard ``address`` within STALE_S."""
        beacon = self._beacons.get(address)
        return self._fresh(beacon.heard.get(scanner) if beacon else None, now)

    def _fresh(self, heard: _Heard | None, now: float) -> bool:
        return heard is not None and now - heard.last <= self.stale_s

    def heard(self, address: str, scanner: str, area: str, rssi: int, now: float) -> bool:
        """One sighting of ``address`` by ``scanner`` (in ``area``); True when its area changed."""
        beacon = self._beacons.setdefault(address, _Beacon())
        old = beacon.heard.get(scanner)
        previous = old.smoothed if old is not None and self._fresh(old, now) else None
        beacon.heard[scanner] = _Heard(area, rssi, smooth_rssi(previous, rssi), now)
        before = (beacon.scanner, self.area(address))
        self._decide(beacon, now)
        return (beacon.scanner, self.area(address)) != before

    def forget(self, address: str) -> None:
        self._beacons.pop(address, None)

    def scanner_gone(self, scanner: str) -> None:
        """A scanner went offline (its last-will): it holds no beacon any more."""
        for beacon in self._beacons.values():
            beacon.heard.pop(scanner, None)
            if beacon.scanner == scanner:
                beacon.scanner = beacon.candidate = None

    def _decide(self, beacon: _Beacon, now: float) -> None:
        live = {s: h for s, h in beacon.heard.items() if self._fresh(h, now)}
        best = max(live, key=lambda s: live[s].smoothed)
        if beacon.scanner not in live:  # new, or its scanner lost it: the best one now
            beacon.scanner, beacon.candidate = best, None
            return
        current = live[beacon.scanner]
        if best == beacon.scanner or live[best].smoothed < current.smoothed + self.margin_db:
            beacon.candidate = None
            return
        if beacon.candidate != best:
            beacon.candidate, beacon.candidate_since = best, now
        elif now - beacon.candidate_since >= self.sustain_s:
            beacon.scanner, beacon.candidate = best, None
