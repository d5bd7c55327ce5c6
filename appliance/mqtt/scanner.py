"""The scanner role: only the radio, its sightings of our beacons forwarded to the broker.

Sightings are batched: the newest of each beacon per BATCH_INTERVAL_S goes out in one message
on ``appliance/<site>/scanner/<id>/sightings``, so a scanner sends at most 1/BATCH_INTERVAL_S
messages a second however many beacons it hears. Its retained ``online`` on ``.../status`` is
replaced by the broker with the last-will ``offline`` when it vanishes. Nothing is written to the
SD card: a scanner keeps no database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from appliance.clock import Clock
from appliance.errors import RadioError
from appliance.mqtt import sightings
from appliance.mqtt.client import Broker, MqttClient, Will
from appliance.presence.radio import Radio
from appliance.settings import Settings, scanner_id

_LOGGER = logging.getLogger(__name__)

# Two batches a second: "a few messages per second per scanner" at most, and the main
# appliance's areas (SUSTAIN_S, 5 s) get ten samples to decide on.
BATCH_INTERVAL_S: Final = 0.5
# A radio that failed is started again this often.
RADIO_RETRY_S: Final = 5.0


class Scanner:
    def __init__(self, settings: Settings, broker: Broker, radio: Radio, clock: Clock) -> None:
        self.id = scanner_id(settings)
        self._site = settings.site
        self._radio = radio
        self._clock = clock
        self._pending: dict[str, sightings.Sighting] = {}
        self.sent = 0  # sightings forwarded
        self.client = MqttClient(
            broker, clock, client_id=f"appliance-scanner-{self.id}", name="MQTT scanner",
            will=Will(self.status_topic, sightings.OFFLINE), on_connect=self._online)

    @property
    def status_topic(self) -> str:
        return sightings.status_topic(self._site, self.id)

    async def run(self, stop: asyncio.Event) -> None:
        """Scan and forward until ``stop`` is set; then say offline and let go of the radio."""
        tasks = [asyncio.create_task(coro) for coro in (
            self.client.run(), self._scan(), self._forward())]
        try:
            await stop.wait()
        finally:
            await self.client.publish(self.status_topic, sightings.OFFLINE, retain=True, qos=1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._radio.stop()

    async def _online(self) -> None:
        await self.client.publish(self.status_topic, sightings.ONLINE, retain=True, qos=1)

    async def _scan(self) -> None:
        while True:
            try:
                await self._radio.start()
                async for adv in self._radio.advertisements():
                    self._pending[adv.address] = sightings.Sighting(
                        adv.beacon_id, adv.address, adv.rssi, self._clock.wall())
            except (RadioError, OSError) as exc:
                _LOGGER.warning("Scanner radio failed (again in %s s): %s", RADIO_RETRY_S, exc)
            await self._clock.sleep(RADIO_RETRY_S)

    async def _forward(self) -> None:
        topic = sightings.sightings_topic(self._site, self.id)
        while True:
            await self._clock.sleep(BATCH_INTERVAL_S)
            if not self._pending or not self.client.connected:
                continue  # while offline only the newest of each beacon is kept
            batch, self._pending = list(self._pending.values()), {}
            if await self.client.publish(topic, sightings.encode(batch)):
                self.sent += len(batch)
