"""What the web layer reaches through the app: the services create_app built."""

from __future__ import annotations

from dataclasses import dataclass

from quart import current_app

from appliance.auth.throttle import LoginThrottle
from appliance.clock import Clock
from appliance.presence.service import PresenceService
from appliance.settings import Settings
from appliance.store.db import Database


@dataclass(slots=True)
class Services:
    settings: Settings
    clock: Clock
    throttle: LoginThrottle
    db: Database
    presence: PresenceService


def services() -> Services:
    ctx: Services = current_app.extensions["appliance"]
    return ctx
