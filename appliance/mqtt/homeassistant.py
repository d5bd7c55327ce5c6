"""Home Assistant's MQTT discovery: a device_tracker per paired beacon, sensors for the printer.

Configs are retained under ``homeassistant/`` (its integration's default discovery prefix) and
sent again at every connect; an unpaired beacon's config is replaced by an empty retained
message, which makes Home Assistant remove the entity. States go out retained and only when
they change: home/not_home, and the area, the scanner and the presence state as attributes (the
RSSI, which changes with every sighting, is left out for that reason). Everything is available
while the appliance's ``appliance/<site>/status`` says online; its last-will says offline.

Pure: what to publish is computed here; service.py sends it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from appliance import __version__
from appliance.mqtt import sightings
from appliance.presence.model import BeaconView, PresenceState

DISCOVERY_PREFIX: Final = "homeassistant"
HOME: Final = "home"
NOT_HOME: Final = "not_home"
# The printer's sensors: (key in GET /api/printer, name, unit, device_class).
PRINTER_SENSORS: Final = (
    ("state", "Printer state", None, None),
    ("progress", "Print progress", "%", None),
    ("remainingMin", "Print time left", "min", "duration"),
    ("nozzleTemp", "Nozzle temperature", "°C", "temperature"),
    ("bedTemp", "Bed temperature", "°C", "temperature"),
)

Message = tuple[str, str, bool]  # topic, payload, retained


def availability_topic(site: str) -> str:
    return f"{sightings.root(site)}/status"


def _slug(address: str) -> str:
    return address.replace(":", "").lower()


@dataclass(slots=True)
class Discovery:
    """What Home Assistant has been told; ``beacon``/``printer`` give the messages a change needs."""

    site: str
    _beacons: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # config, state, attrs
    _printer: str | None = None  # the last state payload
    _printer_config: bool = False

    @property
    def node(self) -> str:
        return f"appliance_{self.site}"

    def _device(self) -> dict[str, Any]:
        return {"identifiers": [self.node], "name": f"Appliance ({self.site})",
                "manufacturer": "Appliance", "model": "Presence appliance",
                "sw_version": __version__}

    def _availability(self) -> dict[str, str]:
        return {"availability_topic": availability_topic(self.site), "payload_available": "online",
                "payload_not_available": "offline"}

    def beacon_topics(self, address: str) -> tuple[str, str, str]:
        slug = _slug(address)
        base = f"{sightings.root(self.site)}/beacon/{slug}"
        return (f"{DISCOVERY_PREFIX}/device_tracker/{self.node}/{slug}/config", f"{base}/state",
                f"{base}/attributes")

    def reset(self) -> None:
        """A new connection: everything is sent again (configs first)."""
        self._beacons.clear()
        self._printer = None
        self._printer_config = False

    def beacon(self, address: str, view: BeaconView | None) -> list[Message]:
        """The messages that bring Home Assistant up to date with this beacon."""
        config_topic, state_topic, attributes_topic = self.beacon_topics(address)
        if view is None or view.pairing is None:
            if self._beacons.pop(address, None) is None:
                return []
            return [(config_topic, "", True), (state_topic, "", True), (attributes_topic, "", True)]
        slug = _slug(address)
        config = json.dumps({
            "name": view.pairing.user_name, "unique_id": f"{self.node}_{slug}",
            "object_id": f"{self.node}_{view.pairing.user_name}",
            "state_topic": state_topic, "payload_home": HOME, "payload_not_home": NOT_HOME,
            "source_type": "bluetooth_le", "json_attributes_topic": attributes_topic,
            **self._availability(),
            "device": {"identifiers": [f"{self.node}_{slug}"], "name": view.name,
                       "manufacturer": "Appliance", "model": "BLE beacon",
                       "via_device": self.node},
        }, sort_keys=True)
        state = HOME if view.state is PresenceState.CONNECTED else NOT_HOME
        attributes = json.dumps({"area": view.area, "scanner": view.scanner,
                                 "presence": view.state.value, "beacon_id": view.beacon_id},
                                sort_keys=True)
        old = self._beacons.get(address)
        self._beacons[address] = (config, state, attributes)
        wanted = [(config_topic, config, True), (attributes_topic, attributes, True),
                  (state_topic, state, True)]
        if old is None:
            return wanted
        return [message for message, before in zip(wanted, (old[0], old[2], old[1]), strict=True)
                if message[1] != before]

    def printer(self, payload: dict[str, Any]) -> list[Message]:
        """Sensors of the linked printer: their configs once, then the state when it changes."""
        state_topic = f"{sightings.root(self.site)}/printer/state"
        messages: list[Message] = []
        if not self._printer_config:
            self._printer_config = True
            for key, name, unit, device_class in PRINTER_SENSORS:
                config: dict[str, Any] = {
                    "name": name, "unique_id": f"{self.node}_printer_{key}",
                    "state_topic": state_topic, "value_template": f"{{{{ value_json.{key} }}}}",
                    **self._availability(), "device": self._device(),
                }
                if unit:
                    config["unit_of_measurement"] = unit
                if device_class:
                    config["device_class"] = device_class
                messages.append((f"{DISCOVERY_PREFIX}/sensor/{self.node}/printer_{key}/config",
                                 json.dumps(config, sort_keys=True), True))
        state = json.dumps({key: payload.get(key) for key, *_ in PRINTER_SENSORS}, sort_keys=True)
        if state != self._printer:
            self._printer = state
            messages.append((state_topic, state, True))
        return messages
