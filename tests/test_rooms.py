"""make run SCANNERS=N's rooms: beacons dwell in each room in turn, and the room they are in hears
them best even though every room's scanner hears with a model of its own."""

from __future__ import annotations

from appliance_sim.rooms import DWELL_S, ROOMS, position, rssi


def test_each_beacon_visits_every_room_and_the_room_it_is_in_hears_it_best() -> None:
    rooms = ROOMS[:3]
    visited = []
    for t in range(0, 400, 2):
        x = position(rooms, 1, float(t))
        best = max(rooms, key=lambda room: rssi(room, abs(x - room.x_m)))
        nearest = min(rooms, key=lambda room: abs(x - room.x_m))
        if abs(x - nearest.x_m) < 1.0:
            assert best == nearest, (t, x)
            if not visited or visited[-1] != best.name:
                visited.append(best.name)
    assert visited[:4] == ["workshop", "office", "storage", "office"]


def test_beacons_start_in_different_rooms() -> None:
    rooms = ROOMS[:3]
    assert len({position(rooms, beacon, DWELL_S / 2) for beacon in (1, 2, 3)}) == 3
