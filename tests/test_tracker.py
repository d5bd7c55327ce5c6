"""The pure presence state machine, with time moved by hand."""

from __future__ import annotations

import pytest
from helpers import ADDR_A, ADDR_B, make_advertisement

from appliance.presence.model import Pairing, PresenceState
from appliance.presence.tracker import RSSI_CLAMP_DB, Tracker, UnknownBeaconError, smooth_rssi

AWAY, WINDOW, FORGET = 30.0, 1800.0, 600.0
ALICE = Pairing("u-1", "alice@example.com")


def make_tracker() -> Tracker:
    return Tracker(away_after=AWAY, reconnect_window=WINDOW, forget_after=FORGET)


def paired_tracker(t: float = 0.0) -> Tracker:
    tracker = make_tracker()
    tracker.advertisement(make_advertisement(), t)
    tracker.pair(ADDR_A, ALICE, t)
    return tracker


def state(tracker: Tracker, address: str = ADDR_A) -> PresenceState | None:
    view = tracker.view(address)
    return view.state if view else None


def test_first_advertisement_discovers_beacon() -> None:
    tracker = make_tracker()
    changes = tracker.advertisement(make_advertisement(rssi=-70, beacon_id=7), 5.0)
    view = tracker.view(ADDR_A)
    assert view is not None
    assert [(c.old, c.new) for c in changes] == [(None, PresenceState.DISCOVERED)]
    assert (view.beacon_id, view.rssi, view.first_seen, view.last_seen) == (7, -70, 5.0, 5.0)
    assert view.name == "Beacon 7"


def test_pairing_present_beacon_makes_it_connected_and_wanted_for_a_link() -> None:
    tracker = paired_tracker()
    assert state(tracker) is PresenceState.CONNECTED
    assert tracker.wants_link(1.0) == [ADDR_A]
    tracker.link_up(ADDR_A, 1.0)
    assert tracker.wants_link(1.0) == []
    assert tracker.view(ADDR_A).linked  # type: ignore[union-attr]


def test_pairing_unknown_beacon_is_refused() -> None:
    with pytest.raises(UnknownBeaconError):
        make_tracker().pair(ADDR_B, ALICE, 0.0)


def test_paired_beacon_goes_away_after_away_timeout() -> None:
    tracker = paired_tracker()
    assert tracker.tick(AWAY) == []
    changes = tracker.tick(AWAY + 0.1)
    assert [(c.old, c.new) for c in changes] == [(PresenceState.CONNECTED, PresenceState.AWAY)]
    assert tracker.view(ADDR_A).away_since == 0.0  # type: ignore[union-attr]


def test_paired_beacon_back_within_window_reconnects_without_tap() -> None:
    tracker = paired_tracker()
    tracker.tick(AWAY + 1)
    back_at = WINDOW - 1  # 29 min 59 s after it was last seen
    tracker.tick(back_at)
    assert state(tracker) is PresenceState.AWAY
    changes = tracker.advertisement(make_advertisement(), back_at)
    assert [(c.old, c.new) for c in changes] == [(PresenceState.AWAY, PresenceState.CONNECTED)]
    assert tracker.wants_link(back_at) == [ADDR_A]


def test_paired_beacon_needs_tap_after_30_minutes_away() -> None:
    tracker = paired_tracker()
    tracker.tick(AWAY + 1)
    changes = tracker.tick(WINDOW + 0.5)
    assert [(c.old, c.new) for c in changes] == [(PresenceState.AWAY, PresenceState.REQUIRES_TAP)]
    # Coming back does not reconnect by itself ...
    assert tracker.advertisement(make_advertisement(), WINDOW + 10) == []
    assert state(tracker) is PresenceState.REQUIRES_TAP
    assert tracker.wants_link(WINDOW + 10) == []
    # ... until the user taps Reconnect.
    changes = tracker.reconnect(ADDR_A, WINDOW + 11)
    assert [(c.old, c.new) for c in changes] == [(PresenceState.REQUIRES_TAP, PresenceState.CONNECTED)]


def test_beacon_returning_after_window_without_a_tick_still_needs_tap() -> None:
    tracker = paired_tracker()
    tracker.tick(AWAY + 1)
    tracker.advertisement(make_advertisement(), WINDOW + 100)  # no tick ran in between
    assert state(tracker) is PresenceState.REQUIRES_TAP


def test_reconnect_while_absent_starts_a_fresh_window() -> None:
    tracker = paired_tracker()
    tracker.tick(WINDOW + 1)
    tracker.tick(WINDOW + 2)
    assert state(tracker) is PresenceState.REQUIRES_TAP
    tap = WINDOW + 60
    tracker.reconnect(ADDR_A, tap)
    assert state(tracker) is PresenceState.AWAY
    tracker.tick(tap + WINDOW - 1)
    assert state(tracker) is PresenceState.AWAY
    tracker.tick(tap + WINDOW + 1)
    assert state(tracker) is PresenceState.REQUIRES_TAP


def test_live_link_counts_as_presence_without_advertisements() -> None:
    tracker = paired_tracker()
    tracker.link_up(ADDR_A, 0.0)
    tracker.tick(10 * AWAY)
    assert state(tracker) is PresenceState.CONNECTED
    tracker.link_down(ADDR_A, 10 * AWAY)
    tracker.tick(11 * AWAY + 1)
    assert state(tracker) is PresenceState.AWAY
    assert tracker.view(ADDR_A).last_seen == 10 * AWAY  # type: ignore[union-attr]


def test_unpaired_beacon_is_forgotten_after_forget_timeout() -> None:
    tracker = make_tracker()
    tracker.advertisement(make_advertisement(), 0.0)
    assert tracker.tick(FORGET) == []
    changes = tracker.tick(FORGET + 1)
    assert [(c.address, c.new) for c in changes] == [(ADDR_A, None)]
    assert tracker.views() == []


def test_unpair_returns_beacon_to_discovered_and_refuses_twice() -> None:
    tracker = paired_tracker()
    tracker.unpair(ADDR_A, 1.0)
    view = tracker.view(ADDR_A)
    assert view is not None and view.pairing is None and view.state is PresenceState.DISCOVERED
    with pytest.raises(UnknownBeaconError):
        tracker.unpair(ADDR_A, 2.0)
    with pytest.raises(UnknownBeaconError):
        tracker.reconnect(ADDR_A, 2.0)


def test_restore_counts_downtime_so_a_restart_never_opens_a_fresh_window() -> None:
    tracker = make_tracker()
    # Stored: seen 29 minutes before the restart, still AWAY.
    now = 5.0
    tracker.restore(address=ADDR_A, beacon_id=1, name="b", pairing=ALICE, state=PresenceState.AWAY,
                    first_seen=now - 5000, last_seen=now - 29 * 60, window_from=now - 29 * 60,
                    rssi=-60, now=now)
    assert state(tracker) is PresenceState.AWAY
    changes = tracker.tick(now + 61)
    assert [(c.old, c.new) for c in changes] == [(PresenceState.AWAY, PresenceState.REQUIRES_TAP)]


def test_restore_of_connected_beacon_last_seen_long_ago_settles_at_once() -> None:
    tracker = make_tracker()
    changes = tracker.restore(address=ADDR_A, beacon_id=1, name="b", pairing=ALICE,
                              state=PresenceState.CONNECTED, first_seen=0, last_seen=0,
                              window_from=0, rssi=None, now=WINDOW + 1)
    assert [c.new for c in changes] == [PresenceState.REQUIRES_TAP]


def test_rssi_is_smoothed_and_a_single_fade_is_clamped() -> None:
    tracker = make_tracker()
    tracker.advertisement(make_advertisement(rssi=-60), 0.0)
    tracker.advertisement(make_advertisement(rssi=-95), 0.1)  # one deep fade
    view = tracker.view(ADDR_A)
    assert view is not None and view.rssi == -95
    assert view.rssi_smoothed == pytest.approx(-60 - 0.3 * RSSI_CLAMP_DB)
    for i in range(40):
        tracker.advertisement(make_advertisement(rssi=-80), 0.2 + i / 10)
    assert tracker.view(ADDR_A).rssi_smoothed == pytest.approx(-80, abs=0.5)  # type: ignore[union-attr]


def test_rssi_filter_restarts_when_a_beacon_returns() -> None:
    assert smooth_rssi(None, -70) == -70.0
    tracker = paired_tracker()
    tracker.tick(AWAY + 1)
    tracker.advertisement(make_advertisement(rssi=-90), AWAY + 2)
    assert tracker.view(ADDR_A).rssi_smoothed == -90.0  # type: ignore[union-attr]


def test_views_list_paired_beacons_first() -> None:
    tracker = make_tracker()
    tracker.advertisement(make_advertisement(ADDR_A, beacon_id=1), 0.0)
    tracker.advertisement(make_advertisement(ADDR_B, beacon_id=2), 0.0)
    tracker.pair(ADDR_B, ALICE, 0.0)
    assert [v.address for v in tracker.views()] == [ADDR_B, ADDR_A]


def test_thirty_minutes_pass_in_a_microsecond_for_many_beacons() -> None:
    tracker = make_tracker()
    addresses = [f"C0:FF:EE:00:{i // 256:02X}:{i % 256:02X}" for i in range(200)]
    for address in addresses:
        tracker.advertisement(make_advertisement(address), 0.0)
        tracker.pair(address, ALICE, 0.0)
    tracker.tick(AWAY + 1)
    tracker.tick(WINDOW + 1)
    assert {v.state for v in tracker.views()} == {PresenceState.REQUIRES_TAP}


def test_a_link_may_stand_while_connected_or_away_in_the_window_not_after_it() -> None:
    tracker = paired_tracker()
    assert tracker.may_link(ADDR_A, 1.0)
    tracker.tick(AWAY + 1)
    assert state(tracker) is PresenceState.AWAY
    assert tracker.may_link(ADDR_A, AWAY + 1)
    assert not tracker.may_link(ADDR_A, WINDOW + 1)
    tracker.tick(WINDOW + 1)
    assert state(tracker) is PresenceState.REQUIRES_TAP
    assert not tracker.may_link(ADDR_A, WINDOW + 1)
    tracker.unpair(ADDR_A, WINDOW + 2)
    assert not tracker.may_link(ADDR_A, WINDOW + 2)
    assert not tracker.may_link(ADDR_B, WINDOW + 2)
