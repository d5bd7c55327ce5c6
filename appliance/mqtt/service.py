"""MQTT on the main appliance: one broker connection for the scanners' hub and Home Assistant.

No broker configured (no mqtt_url, no mqtt_embedded): nothing starts, nothing is sent, and
/status says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiomqtt

from appliance.clock import Clock
from appliance.mqtt.client import MqttClient, broker_of
from appliance.mqtt.hub import DROP_REASONS, ScannerHub
from appliance.presence.service import PresenceService
from appliance.settings import Settings
from appliance.store.db import Database

_LOGGER = logging.getLogger(__name__)


class MqttService:
    def __init__(self, settings: Settings, db: Database, presence: PresenceService,
                 clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self.hub = ScannerHub(settings.site, db, presence, clock)
        self.errors = 0  # batches whose handling failed (logged): a bug, never a crash
        broker = broker_of(settings)
        self.client = None if broker is None else MqttClient(
            broker, clock, client_id=f"appliance-{settings.site}", name="MQTT",
            subscriptions=self.hub.subscriptions, on_message=self._message)
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def configured(self) -> bool:
        return self.client is not None

    async def start(self) -> None:
        if self.client is None:
            return
        await self.hub.refresh()
        self._tasks.append(asyncio.create_task(self.client.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _message(self, message: aiomqtt.Message) -> None:
        try:
            await self.hub.handle(message)
        except Exception:
            self.errors += 1
            _LOGGER.exception("MQTT message on %s could not be handled", message.topic)

    def status(self) -> dict[str, Any]:
        """/status's mqtt part."""
        if self.client is None:
            return {"configured": False}
        health = self.client.health
        hub = self.hub
        return {
            "configured": True, "broker": str(self.client.broker), "connected": health.connected,
            "lastError": health.last_error, "retryInS": health.retry_in_s,
            "batches": hub.batches, "sightings": hub.sightings, "errors": self.errors,
            "dropped": {reason: hub.dropped[reason] for reason in DROP_REASONS},
            "scanners": len(hub.scanners),
            "scannersOnline": sum(bool(s.online) for s in hub.scanners.values()),
        }
