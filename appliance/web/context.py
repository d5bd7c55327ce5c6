"""What the web layer reaches through the app: the services create_app built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from quart import current_app

from appliance.auth.throttle import LoginThrottle
from appliance.clock import Clock
from appliance.presence.service import PresenceService
from appliance.printer.service import PrinterService
from appliance.relay.service import RelayService
from appliance.settings import Settings
from appliance.store.db import Database


@dataclass(slots=True)
class Services:
    settings: Settings
    clock: Clock
    throttle: LoginThrottle
    db: Database
    presence: PresenceService
    relay: RelayService
    browsers: Callable[[], int]
    publishers: Callable[[], int]
    printer: PrinterService | None = None


def services() -> Services:
    ctx: Services = current_app.extensions["appliance"]
    return ctx
