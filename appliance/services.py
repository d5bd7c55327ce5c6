"""The services create_app builds, in one typed bundle that the web API and the Socket.IO channels share.

A neutral home: `web/` and `relay/socket.py` both take their services from here, so neither
transport imports the other. Nothing here does I/O; create_app fills it at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.auth.sessions import SessionCache
from appliance.auth.throttle import LoginThrottle
from appliance.clock import Clock
from appliance.mqtt.service import MqttService
from appliance.presence.service import PresenceService
from appliance.printer.service import PrinterService
from appliance.relay.service import RelayService
from appliance.settings import Settings
from appliance.store.db import Database
from appliance.timelapse.service import TimelapseService


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    clock: Clock
    throttle: LoginThrottle
    db: Database
    sessions: SessionCache  # login sessions from memory, forgotten at every database change
    presence: PresenceService
    relay: RelayService
    printer: PrinterService  # a printer link that says so when no printer is set up
    timelapses: TimelapseService
    mqtt: MqttService  # scanners and Home Assistant; inert when no broker is configured
    # Connected Socket.IO clients, for /status (the channels count them).
    browsers: Callable[[], int]
    publishers: Callable[[], int]
