"""Home Assistant's discovery messages, pure: what goes out for a beacon and the printer."""

from __future__ import annotations

import json
from dataclasses import replace

from appliance.mqtt.homeassistant import Discovery
from appliance.presence.model import BeaconView, Pairing, PresenceState

ADDRESS = "AA:BB:CC:DD:EE:01"
VIEW = BeaconView(address=ADDRESS, name="Beacon 1", beacon_id=1, rssi=-60, rssi_smoothed=-60.0,
                  first_seen=0.0, last_seen=0.0, state=PresenceState.CONNECTED,
                  pairing=Pairing("u1", "Ann"), linked=False, away_since=None, area="hall",
                  scanner="hall")


def test_a_beacon_is_sent_once_and_then_only_what_changed() -> None:
    discovery = Discovery("lab")
    first = discovery.beacon(ADDRESS, VIEW)
    assert [topic.rsplit("/", 1)[1] for topic, _p, _r in first] == ["config", "attributes", "state"]
    assert all(retained for *_m, retained in first)
    assert discovery.beacon(ADDRESS, replace(VIEW, rssi=-70, last_seen=5.0)) == []
    moved = discovery.beacon(ADDRESS, replace(VIEW, area="shop", scanner="shop"))
    assert [json.loads(p)["area"] for t, p, _r in moved] == ["shop"]
    away = discovery.beacon(ADDRESS, replace(VIEW, area="shop", scanner="shop",
                                             state=PresenceState.REQUIRES_TAP))
    assert [p for t, p, _r in away if t.endswith("/state")] == ["not_home"]


def test_an_unpaired_beacon_gets_an_empty_retained_config_once() -> None:
    discovery = Discovery("lab")
    assert discovery.beacon(ADDRESS, replace(VIEW, pairing=None)) == []  # never told: nothing
    discovery.beacon(ADDRESS, VIEW)
    gone = discovery.beacon(ADDRESS, replace(VIEW, pairing=None))
    assert gone and all(payload == "" and retained for _t, payload, retained in gone)
    assert discovery.beacon(ADDRESS, None) == []


def test_printer_sensors_come_with_their_configs_then_on_change_only() -> None:
    discovery = Discovery("lab")
    payload = {"state": "RUNNING", "progress": 42, "remainingMin": 30, "nozzleTemp": 220.0,
               "bedTemp": 60.0, "layer": 3}
    first = discovery.printer(payload)
    configs = [json.loads(p) for t, p, _r in first if t.endswith("/config")]
    assert len(configs) == 5 and all(c["unique_id"] and c["availability_topic"] and c["device"]
                                     for c in configs)
    assert json.loads(first[-1][1]) == {k: payload[k] for k in
                                        ("state", "progress", "remainingMin", "nozzleTemp", "bedTemp")}
    assert discovery.printer({**payload, "layer": 4}) == []  # not a sensor: nothing to send
    assert len(discovery.printer({**payload, "progress": 43})) == 1
