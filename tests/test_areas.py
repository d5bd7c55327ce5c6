"""Areas: the scanner that hears a beacon best, with hysteresis (pure, fake time)."""

from __future__ import annotations

from helpers import make_advertisement

from appliance.presence.areas import MARGIN_DB, STALE_S, SUSTAIN_S, Areas
from appliance.presence.model import Pairing, PresenceState
from appliance.presence.tracker import Tracker

BEACON = "AA:BB:CC:DD:EE:01"


def _feed(areas: Areas, rssi_by_area: dict[str, int], start: float, seconds: float,
          step: float = 0.5) -> list[str | None]:
    """Each area's scanner hears the beacon every ``step``; the areas it was in, in order."""
    seen: list[str | None] = []
    now = start
    while now < start + seconds:
        for area, rssi in rssi_by_area.items():
            areas.heard(BEACON, f"scanner-{area}", area, rssi, now)
        if not seen or seen[-1] != areas.area(BEACON):
            seen.append(areas.area(BEACON))
        now += step
    return seen


def test_the_first_scanner_to_hear_a_beacon_holds_it() -> None:
    areas = Areas()
    assert areas.heard(BEACON, "hall", "hall", -80, 0.0) is True
    assert (areas.area(BEACON), areas.scanner(BEACON)) == ("hall", "hall")


def test_a_beacon_that_walks_to_another_room_follows_after_a_sustained_margin() -> None:
    areas = Areas()
    assert _feed(areas, {"hall": -55, "shop": -85}, 0.0, 10.0) == ["hall"]
    moved = _feed(areas, {"hall": -85, "shop": -55}, 10.0, 20.0)
    assert moved == ["hall", "shop"]
    # Not at once: the margin must hold for SUSTAIN_S.
    areas2 = Areas()
    _feed(areas2, {"hall": -55, "shop": -85}, 0.0, 10.0)
    _feed(areas2, {"hall": -85, "shop": -55}, 10.0, SUSTAIN_S - 1)
    assert areas2.area(BEACON) == "hall"


def test_a_beacon_between_two_rooms_does_not_flap() -> None:
    areas = Areas()
    _feed(areas, {"hall": -70, "shop": -72}, 0.0, 5.0)
    # Fading back and forth by a few dB (less than the margin), for ten minutes.
    now, seen = 5.0, set()
    for i in range(1200):
        swing = 4 if i % 4 < 2 else -4
        areas.heard(BEACON, "scanner-hall", "hall", -70 + swing, now)
        areas.heard(BEACON, "scanner-shop", "shop", -70 - swing, now)
        seen.add(areas.area(BEACON))
        now += 0.5
    assert len(seen) == 1


def test_a_short_burst_louder_than_the_margin_does_not_move_it() -> None:
    areas = Areas()
    _feed(areas, {"hall": -60, "shop": -80}, 0.0, 10.0)
    _feed(areas, {"hall": -80, "shop": -60}, 10.0, SUSTAIN_S / 2)
    _feed(areas, {"hall": -60, "shop": -80}, 10.0 + SUSTAIN_S / 2, 10.0)
    assert areas.area(BEACON) == "hall"
    assert MARGIN_DB < 20


def test_a_scanner_that_lost_the_beacon_gives_it_up_to_one_that_hears_it() -> None:
    areas = Areas()
    areas.heard(BEACON, "hall", "hall", -50, 0.0)
    areas.heard(BEACON, "shop", "shop", -90, 1.0)  # much weaker, but the hall has gone silent
    assert areas.area(BEACON) == "hall"
    areas.heard(BEACON, "shop", "shop", -90, 1.0 + STALE_S + 0.5)
    assert areas.area(BEACON) == "shop"


def test_a_scanner_that_went_offline_holds_nothing() -> None:
    areas = Areas()
    areas.heard(BEACON, "hall", "hall", -50, 0.0)
    areas.scanner_gone("hall")
    assert areas.area(BEACON) is None
    areas.heard(BEACON, "shop", "shop", -90, 1.0)
    assert areas.area(BEACON) == "shop"


def test_the_tracker_counts_any_scanner_for_presence_and_reports_moves() -> None:
    tracker = Tracker(away_after=30, reconnect_window=1800, forget_after=600, area="desk")
    adv = make_advertisement(address=BEACON, rssi=-60)
    tracker.advertisement(adv, 0.0)
    view = tracker.view(BEACON)
    assert view is not None and (view.area, view.scanner) == ("desk", "local")
    tracker.pair(BEACON, Pairing("u", "Ann"), 0.0)
    # Only the satellite hears it from now on: still present, and it moves there once the
    # local radio's sighting is stale.
    changes = []
    for step in range(1, 60):
        changes += tracker.advertisement(make_advertisement(address=BEACON, rssi=-75), float(step),
                                         scanner="shop-1", area="shop")
        changes += tracker.tick(float(step))
    view = tracker.view(BEACON)
    assert view is not None and view.state is PresenceState.CONNECTED
    assert (view.area, view.scanner, view.rssi) == ("shop", "shop-1", -75)
    assert [c for c in changes if c.new is not c.old] == []
    assert len(changes) == 1  # the one move, reported as a change of the same state


def test_the_local_radio_links_only_beacons_it_hears_itself() -> None:
    """A beacon only a satellite hears is present, but a connect from here would wait for an
    advertisement this radio never gets: it is not wanted for a link until the radio hears it."""
    tracker = Tracker(away_after=30, reconnect_window=1800, forget_after=600, area="desk")
    tracker.advertisement(make_advertisement(address=BEACON, rssi=-75), 0.0,
                          scanner="shop-1", area="shop")
    tracker.pair(BEACON, Pairing("u", "Ann"), 0.0)
    view = tracker.view(BEACON)
    assert view is not None and view.state is PresenceState.CONNECTED
    assert tracker.wants_link(1.0) == []
    tracker.advertisement(make_advertisement(address=BEACON, rssi=-60), 2.0)
    assert tracker.wants_link(2.0) == [BEACON]
    # Heard here last more than STALE_S ago, by the satellite since: no longer ours to link.
    tracker.advertisement(make_advertisement(address=BEACON, rssi=-75), 2.0 + STALE_S,
                          scanner="shop-1", area="shop")
    assert tracker.wants_link(2.0 + STALE_S + 1) == []
