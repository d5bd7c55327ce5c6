"""A simulated beacon written in Python: the beacon protocol on a bumble Device and VirtualController."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Final

from bumble import core, hci
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.link import LocalLink

from appliance.presence import protocol
from appliance_sim import air
from appliance_sim.air import SimulatedBeacon, VirtualBeaconState, beacon_address
from appliance_sim.controller import COMMAND_TIMEOUT_S, VirtualController, new_device

_LOGGER = logging.getLogger(__name__)

# New counter/uptime go on air this often: the firmware's ADV_REFRESH_MS.
ADV_REFRESH_S: Final = 60.0
FIRMWARE: Final = "0.1.0"


class VirtualBeacon:
    """One beacon: a bumble Device + VirtualController speaking the beacon protocol."""

    def __init__(self, link: LocalLink, beacon_id: int, name: str) -> None:
        self.beacon_id = beacon_id
        self.name = name
        self.address = beacon_address(beacon_id)
        self.present = False
        self.identify_writes: list[int] = []
        self._counter = 0
        self._started_at = asyncio.get_running_loop().time()
        self._lock = asyncio.Lock()  # serialises advertising changes
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        public = f"00:BE:AC:00:{beacon_id >> 8:02X}:{beacon_id & 0xFF:02X}"
        self.controller = VirtualController(name, link, public)
        self.device = new_device(name, self.address, self.controller)
        self.device.advertising_interval_min = air.ADV_INTERVAL_MS
        self.device.advertising_interval_max = air.ADV_INTERVAL_MS
        self.device.advertising_data = self._advertising_data()
        self.device.scan_response_data = protocol.scan_response_data(name)
        info = protocol.BeaconInfo(beacon_id, firmware=FIRMWARE).pack()
        self.device.add_service(Service(protocol.SERVICE_UUID, [
            Characteristic(protocol.INFO_CHAR_UUID, Characteristic.Properties.READ,
                           Characteristic.READABLE, info),
            Characteristic(protocol.IDENTIFY_CHAR_UUID, Characteristic.Properties.WRITE,
                           Characteristic.WRITEABLE, CharacteristicValue(write=self._on_identify)),
        ]))
        self.device.on(Device.EVENT_CONNECTION, self._on_connection)

    def _advertising_data(self) -> bytes:
        uptime_min = int((asyncio.get_running_loop().time() - self._started_at) // 60)
        payload = protocol.BeaconPayload(self.beacon_id, self._counter & 0xFF, uptime_min)
        return protocol.advertising_data(payload)

    def _on_identify(self, _connection: Connection, value: bytes) -> None:
        seconds = min(value[0] if value else 0, protocol.IDENTIFY_MAX_SECONDS)
        _LOGGER.info("%s: identify for %s s", self.name, seconds)
        self.identify_writes.append(seconds)

    def _on_connection(self, connection: Connection) -> None:
        connection.on(Connection.EVENT_DISCONNECTION, lambda _reason: self._spawn(self._resume()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self) -> None:
        """After a central disconnects: advertise again if still in range."""
        await self.set_present(present=self.present)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(ADV_REFRESH_S)
            self._counter += 1
            data = self._advertising_data()
            try:
                async with self._lock, asyncio.timeout(COMMAND_TIMEOUT_S):
                    self.device.advertising_data = data
                    if self.device.legacy_advertiser is not None:
                        await self.device.send_sync_command(
                            hci.HCI_LE_Set_Advertising_Data_Command(advertising_data=data)
                        )
            except (core.BaseBumbleError, TimeoutError) as exc:
                _LOGGER.warning("%s: refreshing advertising data failed: %r", self.name, exc)

    async def start(self, *, present: bool) -> None:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await self.device.power_on()
        self._spawn(self._refresh())
        await self.set_present(present=present)

    async def set_present(self, *, present: bool) -> None:
        """Out of range = stop advertising and drop every link from this side."""
        self.present = present
        async with self._lock, asyncio.timeout(COMMAND_TIMEOUT_S):
            if present and self.device.legacy_advertiser is None and not self.device.connections:
                await self.device.start_advertising(own_address_type=hci.OwnAddressType.RANDOM)
            elif not present:
                await self.device.stop_advertising()
                for connection in list(self.device.connections.values()):
                    with contextlib.suppress(core.BaseBumbleError):
                        await connection.disconnect()

    async def close(self) -> None:
        self._closed = True
        await self.set_present(present=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await self.device.power_off()
        self.controller.link.remove_controller(self.controller)



class PythonBeacons:
    """VirtualBeacon: the beacon protocol written in Python, named "SG Beacon <id>"."""

    kind: Final = "python"

    def default_name(self, beacon_id: int) -> str:
        return f"{protocol.DEFAULT_LOCAL_NAME} {beacon_id}"

    def create(self, link: LocalLink, state: VirtualBeaconState) -> SimulatedBeacon:
        return VirtualBeacon(link, state.beacon_id, state.name)

