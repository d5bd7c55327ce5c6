"""The relay: what publishers send is stored and handed to subscribers (the browsers).

Input arrives validated (frames by ``relay.frames``, readings and status by the models of
``appliance.schema``); what leaves are plain events with UTC wall times, which the transports
turn into the API's JSON. The newest frame, reading and status are kept in memory for browsers
that connect later.

Every frame is relayed; a frame reaches the SD card at most once per ``image_delay`` seconds (the
reference's own setting), written by a background task so no publisher's ack waits for the disk.
A camera at 10 frames/s of 150 KB would otherwise write over 5 GB an hour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from appliance.clock import Clock
from appliance.errors import StorageFullError
from appliance.relay.frames import Frame
from appliance.settings import Settings
from appliance.store import readings, timelapse
from appliance.store.db import Database

_LOGGER = logging.getLogger(__name__)

# Old readings are pruned this often; a day's worth of rows is a few thousand at most.
PRUNE_EVERY_S: Final = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class FrameEvent:
    frame: Frame
    at: datetime


@dataclass(frozen=True, slots=True)
class Reading:
    temperature: float
    humidity: float
    at: datetime


@dataclass(frozen=True, slots=True)
class StatusEvent:
    status: str
    at: datetime


RelayEvent = FrameEvent | Reading | StatusEvent
Listener = Callable[[RelayEvent], None]
Unsubscribe = Callable[[], None]


@dataclass(slots=True)
class RelayStats:
    frames_in: int = 0
    frames_dropped: int = 0  # latest-frame-wins drops for browsers that had not drained
    frames_stored: int = 0  # written to the SD card (at most one per image_delay)
    store_errors: int = 0
    rejected: int = 0


@dataclass(slots=True)
class Latest:
    image: FrameEvent | None = None
    temphum: Reading | None = None
    status: StatusEvent | None = None


class RelayService:
    def __init__(self, settings: Settings, db: Database, clock: Clock) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock
        self.stats = RelayStats()
        self.latest = Latest()
        self._listeners: list[Listener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._image_delay_s = 0.0  # from the timelapse config, read at start and on change
        self._stored_at = float("-inf")  # monotonic time the last stored frame arrived
        self._unwritten: FrameEvent | None = None  # the frame the writer has yet to store
        self._wake_writer = asyncio.Event()

    async def start(self) -> None:
        image = await readings.latest_image(self._db)
        if image:
            self.latest.image = FrameEvent(Frame(image.mime, image.data), image.timestamp)
        reading = await readings.latest_temphum(self._db)
        if reading:
            self.latest.temphum = Reading(reading.temperature, reading.humidity, reading.timestamp)
        last = await readings.latest_status(self._db)
        if last:
            self.latest.status = StatusEvent(last.status, last.timestamp)
        self._image_delay_s = float((await timelapse.get(self._db)).image_delay)
        self._tasks = [asyncio.create_task(self._pruner()), asyncio.create_task(self._writer())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._write_unwritten()  # the frame the writer had not reached yet

    def subscribe(self, listener: Listener) -> Unsubscribe:
        """``listener(event)`` for every accepted frame, reading and status."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _publish(self, event: RelayEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                _LOGGER.exception("Relay listener failed")

    def rejected(self, reason: str, who: str) -> None:
        self.stats.rejected += 1
        _LOGGER.info("Rejected input from %s: %s", who, reason)

    async def image(self, frame: Frame) -> FrameEvent:
        """Relay a frame to every browser now; keep it on the SD card if image_delay has passed
        since the last one kept (in the background: the caller does not wait for the disk)."""
        event = FrameEvent(frame, self._clock.wall())
        self.latest.image = event
        self.stats.frames_in += 1
        self._publish(event)
        now = self._clock.monotonic()
        if now - self._stored_at >= self._image_delay_s:
            self._stored_at = now
            self._unwritten = event
            self._wake_writer.set()
        return event

    async def _writer(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            await self._write_unwritten()

    async def _write_unwritten(self) -> None:
        event, self._unwritten = self._unwritten, None
        if event is None:
            return
        try:
            await readings.add_image(self._db, event.at, event.frame.mime, event.frame.data)
        except StorageFullError:  # the database logs that once; /status counts each
            self.stats.store_errors += 1
        except Exception:  # the relay goes on, /status counts it
            self.stats.store_errors += 1
            _LOGGER.exception("Storing a frame failed")
        else:
            self.stats.frames_stored += 1

    async def temphum(self, temperature: float, humidity: float) -> Reading:
        event = Reading(temperature, humidity, self._clock.wall())
        # Live first: on a full card the reading still reaches browsers (then StorageFullError).
        self.latest.temphum = event
        self._publish(event)
        await readings.add_temphum(self._db, event.at, temperature, humidity)
        return event

    async def status(self, text: str) -> StatusEvent:
        event = StatusEvent(text, self._clock.wall())
        self.latest.status = event
        self._publish(event)
        await readings.add_status(self._db, event.at, text)
        return event

    async def readings_on(self, day: date) -> list[Reading]:
        """Every temperature/humidity reading of one UTC day, oldest first."""
        return [Reading(r.temperature, r.humidity, r.timestamp)
                for r in await readings.temphum_on(self._db, day)]

    async def delays(self) -> timelapse.TimelapseConfig:
        """Seconds between frames, readings and status updates that publishers are asked to keep."""
        return await timelapse.get(self._db)

    async def set_delays(self, image_delay: int, temphum_delay: int, status_delay: int) -> None:
        await timelapse.put(
            self._db, timelapse.TimelapseConfig(image_delay, temphum_delay, status_delay))
        self._image_delay_s = float(image_delay)

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
            await self._clock.sleep(PRUNE_EVERY_S)
