"""The relay: what publishers send is validated, stored and handed to subscribers (the browsers).

The newest frame, reading and status are kept in memory for browsers that connect later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from appliance.clock import Clock
from appliance.presence.model import Unsubscribe
from appliance.relay import validate
from appliance.relay.validate import Frame
from appliance.settings import Settings
from appliance.store import readings
from appliance.store.db import Database, to_db_time

_LOGGER = logging.getLogger(__name__)

# Old readings are pruned this often; a day's worth of rows is a few thousand at most.
PRUNE_EVERY_S: Final = 6 * 3600.0

IMAGE: Final = "image"
TEMPHUM: Final = "temphum"
STATUS: Final = "status"

Listener = Callable[[str, dict[str, Any]], None]


@dataclass(slots=True)
class RelayStats:
    frames_in: int = 0
    frames_dropped: int = 0  # latest-frame-wins drops for browsers that had not drained
    rejected: int = 0


@dataclass(slots=True)
class Latest:
    image: dict[str, Any] | None = None
    temphum: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class RelayService:
    def __init__(self, settings: Settings, db: Database, clock: Clock) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock
        self.stats = RelayStats()
        self.latest = Latest()
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        image = await readings.latest_image(self._db)
        if image:
            self.latest.image = _image_payload(Frame(image.mime, image.data), image.timestamp)
        reading = await readings.latest_temphum(self._db)
        if reading:
            self.latest.temphum = _temphum_payload(reading.temperature, reading.humidity,
                                                   reading.timestamp)
        last = await readings.latest_status(self._db)
        if last:
            self.latest.status = {"status": last.status, "timestamp": to_db_time(last.timestamp)}
        self._task = asyncio.create_task(self._pruner())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def subscribe(self, listener: Listener) -> Unsubscribe:
        """``listener(kind, payload)`` for every accepted image, temphum and status."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, payload)
            except Exception:
                _LOGGER.exception("Relay listener failed")

    def rejected(self, exc: validate.RelayInputError, who: str) -> None:
        self.stats.rejected += 1
        _LOGGER.info("Rejected input from %s: %s", who, exc)

    async def image(self, frame: Frame, *, store: bool = True) -> dict[str, Any]:
        """Relay a frame; ``store=False`` skips the SD card (the printer's camera stores one
        frame per image_delay, not its one or two a second)."""
        now = self._clock.wall()
        payload = _image_payload(frame, now)
        self.latest.image = payload
        self.stats.frames_in += 1
        # Browsers first, then the SD card: the write is the slowest step and viewers need not
        # wait for it (make bench: half the latency). The publisher's ack still follows the write.
        self._publish(IMAGE, payload)
        if store:
            await readings.add_image(self._db, now, frame.mime, frame.data)
        return payload

    async def temphum(self, raw: Any) -> dict[str, Any]:
        temperature, humidity = validate.temphum(raw)
        now = self._clock.wall()
        await readings.add_temphum(self._db, now, temperature, humidity)
        payload = _temphum_payload(temperature, humidity, now)
        self.latest.temphum = payload
        self._publish(TEMPHUM, payload)
        return payload

    async def status(self, raw: Any) -> dict[str, Any]:
        text = validate.status(raw)
        now = self._clock.wall()
        await readings.add_status(self._db, now, text)
        payload = {"status": text, "timestamp": to_db_time(now)}
        self.latest.status = payload
        self._publish(STATUS, payload)
        return payload

    async def prune(self) -> None:
        now = self._clock.wall()
        await readings.prune(
            self._db, now - timedelta(days=self._settings.readings_retention_days),
            now - timedelta(days=self._settings.status_retention_days),
        )

    async def _pruner(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                _LOGGER.exception("Pruning old readings failed")
            await asyncio.sleep(PRUNE_EVERY_S)


def _image_payload(frame: Frame, when: datetime) -> dict[str, Any]:
    # The reference's {image} with the bytes as a binary attachment instead of base64.
    return {"image": frame.data, "mime": frame.mime, "timestamp": to_db_time(when)}


def _temphum_payload(temperature: float, humidity: float, when: datetime) -> dict[str, Any]:
    return {"temperature": temperature, "humidity": humidity, "timestamp": to_db_time(when)}
