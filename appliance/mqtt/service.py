"""MQTT on the main appliance: one broker connection for the scanners' hub and Home Assistant.

No broker configured (no mqtt_url, no mqtt_embedded): nothing starts, nothing is sent, and
/status says so. With mqtt_homeassistant, every presence and printer change is queued and sent
by one task (homeassistant.py decides what, and sends only what changed); a new connection
sends everything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import aiomqtt

from appliance.clock import Clock
from appliance.mqtt import broker
from appliance.mqtt.client import MqttClient, Will, broker_of
from appliance.mqtt.homeassistant import Discovery, Message, availability_topic
from appliance.mqtt.hub import DROP_REASONS, ScannerHub
from appliance.presence.model import BeaconView
from appliance.presence.service import PresenceService
from appliance.printer.service import PrinterService
from appliance.settings import Settings
from appliance.store.db import Database

_LOGGER = logging.getLogger(__name__)

# A scanner added or revoked in another process (the CLI) reaches the embedded broker's files,
# and its batches are dropped, this fast. One PRAGMA per look (SessionCache's way).
WATCH_S: Final = 1.0


class MqttService:
    def __init__(self, settings: Settings, db: Database, presence: PresenceService,
                 printer: PrinterService, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._presence = presence
        self._printer = printer
        self.discovery = Discovery(settings.site)
        # Presence and printer changes for Home Assistant, in order; None: send everything.
        self._changes: asyncio.Queue[tuple[str, BeaconView | None] | dict[str, Any] | None] = (
            asyncio.Queue())
        self._unsubscribe: list[Callable[[], None]] = []
        self.hub = ScannerHub(settings.site, db, presence, clock)
        self.errors = 0  # batches whose handling failed (logged): a bug, never a crash
        broker = broker_of(settings)
        self.client = None if broker is None else MqttClient(
            broker, clock, client_id=f"appliance-{settings.site}", name="MQTT",
            subscriptions=self.hub.subscriptions, on_message=self._message,
            will=Will(availability_topic(settings.site), "offline"), on_connect=self._connected)
        self._tasks: list[asyncio.Task[Any]] = []
        self.embedded = False
        self._written = -1  # the hub's generation the broker's files were written at

    @property
    def configured(self) -> bool:
        return self.client is not None

    async def start(self) -> None:
        if self.client is None:
            return
        self.embedded = self._settings.mqtt_embedded and not self._settings.mqtt_url
        await self._watch()
        self._tasks += [asyncio.create_task(self.client.run()), asyncio.create_task(self._watching())]
        if self._settings.mqtt_homeassistant:
            self._unsubscribe = [
                self._presence.subscribe(lambda address, view: self._changes.put_nowait((address, view))),
                self._printer.subscribe(self._changes.put_nowait)]
            self._tasks.append(asyncio.create_task(self._homeassistant()))

    async def _connected(self) -> None:
        assert self.client is not None  # noqa: S101 - only its own client calls this
        await self.client.publish(availability_topic(self._settings.site), "online", retain=True,
                                  qos=1)
        if self._settings.mqtt_homeassistant:
            self._changes.put_nowait(None)

    async def _homeassistant(self) -> None:
        assert self.client is not None  # noqa: S101 - started only with a client
        while True:
            change = await self._changes.get()
            messages: list[Message] = []
            if change is None:
                self.discovery.reset()
                for view in self._presence.devices():
                    messages += self.discovery.beacon(view.address, view)
                if self._printer.configured:
                    messages += self.discovery.printer(self._printer.payload())
            elif isinstance(change, dict):
                if self._printer.configured:
                    messages = self.discovery.printer(change)
            else:
                messages = self.discovery.beacon(*change)
            for topic, payload, retain in messages:
                await self.client.publish(topic, payload, retain=retain, qos=1)

    async def _watching(self) -> None:
        while True:
            await self._clock.sleep(WATCH_S)
            try:
                await self._watch()
            except Exception:
                self.errors += 1
                _LOGGER.exception("Reading the scanners failed")

    async def _watch(self) -> None:
        await self.hub.refresh()
        if self.embedded and self._written != self.hub.generation:
            if broker.write_files(self._settings, list(self.hub.records.values())):
                broker.reload(self._settings)
            self._written = self.hub.generation

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self.client is not None:
            await self.client.publish(availability_topic(self._settings.site), "offline",
                                      retain=True, qos=1)
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
