"""A virtual Bluetooth radio: a real BLE host stack on virtual controllers, in this process.

The appliance side is bumble's own ``Device`` (host) on a ``VirtualController``; the beacons are
``BeaconAir``'s, each another bumble ``Device`` on its own ``VirtualController``. All controllers
share one link (bumble's ``LocalLink``), so advertising, connecting, GATT and disconnections run
through real HCI and ATT exchanges.

Which beacons run on the link is a ``BeaconFactory``'s choice: ``PythonBeacons`` (the protocol
written in Python) or ``SketchBeaconFactory`` (the firmware itself, built for the host and bridged
to bumble). A radio can mix both: ``add_beacon(..., factory=...)``.

``make_radio`` is what the appliance finds under the ``appliance.radios`` entry point ``virtual``:
`radio = "virtual"` works only where this package is installed (make setup), never on the image.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from bumble import core, hci
from bumble.device import Advertisement as BumbleAdvertisement
from bumble.device import Connection, Device, Peer

from appliance.errors import RadioError
from appliance.presence import protocol
from appliance.presence.model import Advertisement, LinkInfo
from appliance.presence.radio import Radio, advertisement_from_bleak
from appliance.settings import Settings
from appliance_sim.air import (
    RSSI_DEFAULT_DBM,
    BeaconAir,
    BeaconFactory,
    SimulatedBeacon,
    VirtualBeaconState,
)
from appliance_sim.controller import COMMAND_TIMEOUT_S, VirtualController, new_device
from appliance_sim.python_beacon import PythonBeacons

_LOGGER = logging.getLogger(__name__)

# A connection completes on the beacon's next received advertisement; 3 s is 30 intervals, so
# it still succeeds at drop_fraction(0.8). bumble cancels the attempt itself at this limit.
CONNECT_TIMEOUT_S: Final = 3.0
# Service discovery plus one read is ~6 ATT round trips of a few loop iterations each.
GATT_TIMEOUT_S: Final = 2.0
QUEUE_SIZE: Final = 1024  # advertisements waiting for the consumer; beyond this the oldest drop
CENTRAL_ADDRESS: Final = "C0:00:00:00:00:01"  # static random (top bits 11)
CENTRAL_PUBLIC_ADDRESS: Final = "00:AA:00:00:00:01"  # bumble wants non-zero public addresses


@dataclasses.dataclass(slots=True)
class _Link:
    connection: Connection
    on_lost: Callable[[str], None]
    peer: Peer
    identify: Any = None  # the IDENTIFY characteristic proxy, once discovered


class VirtualRadio:
    """The Radio protocol on bumble's host stack, listening to a BeaconAir."""

    def __init__(
        self, beacon_count: int = 3, *, seed: int | None = None,
        beacon_factory: BeaconFactory | None = None,
    ) -> None:
        """``beacon_count`` beacons, ids 1..n, made by ``beacon_factory`` (default PythonBeacons)."""
        default = beacon_factory or PythonBeacons()
        factories: dict[str, BeaconFactory] = {"python": PythonBeacons(), default.kind: default}
        self.air = BeaconAir(factories, default.kind, seed=seed)
        for beacon_id in range(1, beacon_count + 1):
            self.air.declare(beacon_id)
        self._device: Device | None = None
        self._seen: dict[str, hci.Address] = {}
        self._links: dict[str, _Link] = {}
        self._queue: asyncio.Queue[Advertisement | None] = asyncio.Queue(QUEUE_SIZE)
        self._activity = 0
        self._connect_lock = asyncio.Lock()  # bumble (like a controller) makes one at a time

    # -- Radio protocol -------------------------------------------------------------------

    @property
    def activity(self) -> int:
        return self._activity

    def interrupted(self) -> bool:
        return False  # no daemon in between to restart

    async def start(self) -> None:
        if self._device is not None:
            return
        controller = VirtualController(
            "appliance", self.air.link, CENTRAL_PUBLIC_ADDRESS, reception=self.air.reception
        )
        self._device = new_device("appliance", CENTRAL_ADDRESS, controller)
        self._device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        while not self._queue.empty():  # e.g. the end marker of an earlier stop()
            self._queue.get_nowait()
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await self._device.power_on()
            await self.air.start()
            await self._start_scanning()
        except RadioError:
            await self.stop()  # e.g. a sketch beacon whose simulator is not built: says what to do
            raise
        except (core.BaseBumbleError, TimeoutError) as exc:
            await self.stop()
            msg = f"the virtual radio did not start ({exc!r}); this is a bug, see the log"
            raise RadioError(msg) from exc

    async def stop(self) -> None:
        if self._device is None:
            return
        for address in list(self._links):
            await self.disconnect(address)
        device, self._device = self._device, None
        await self.air.stop()
        self._seen.clear()
        with contextlib.suppress(core.BaseBumbleError, TimeoutError):
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await device.stop_scanning(legacy=True)
                await device.power_off()
        self._put(None)

    async def advertisements(self) -> AsyncIterator[Advertisement]:
        while (adv := await self._queue.get()) is not None:
            yield adv

    async def connect(self, address: str, on_lost: Callable[[str], None]) -> LinkInfo:
        device = self._require_device()
        address = address.upper()
        peer_address = self._seen.get(address)
        if peer_address is None:
            msg = f"{address} has not been seen by the virtual radio; wait for an advertisement"
            raise RadioError(msg)
        if address in self._links:
            msg = f"{address} is already linked; disconnect first"
            raise RadioError(msg)
        try:
            # bumble cancels at CONNECT_TIMEOUT_S; the outer limit only guards that cancel.
            async with self._connect_lock, asyncio.timeout(CONNECT_TIMEOUT_S + COMMAND_TIMEOUT_S):
                connection = await device.connect(
                    peer_address, own_address_type=hci.OwnAddressType.RANDOM,
                    timeout=CONNECT_TIMEOUT_S,
                )
        except (core.BaseBumbleError, TimeoutError) as exc:
            msg = f"cannot connect to {address} ({exc!r}); is the beacon in range?"
            raise RadioError(msg) from exc
        link = self._links[address] = _Link(connection, on_lost, Peer(connection))
        connection.on(Connection.EVENT_DISCONNECTION, lambda _reason: self._on_dropped(address))
        try:
            async with asyncio.timeout(GATT_TIMEOUT_S):
                found = {}
                for service in await link.peer.discover_services([core.UUID(protocol.SERVICE_UUID)]):
                    for char in await link.peer.discover_characteristics([], service):
                        found[str(char.uuid).lower()] = char
                if protocol.INFO_CHAR_UUID not in found:
                    msg = "no beacon service with an info characteristic"
                    raise protocol.ProtocolError(msg)
                raw = await link.peer.read_value(found[protocol.INFO_CHAR_UUID])
                info = protocol.parse_info(bytes(raw))
                link.identify = found.get(protocol.IDENTIFY_CHAR_UUID)
        except (core.BaseBumbleError, TimeoutError, protocol.ProtocolError) as exc:
            await self.disconnect(address)
            msg = f"cannot read the info of {address} ({exc}); is it one of our beacons?"
            raise RadioError(msg) from exc
        return LinkInfo(address=address, beacon_id=info.beacon_id, firmware=info.firmware)

    async def disconnect(self, address: str) -> None:
        link = self._links.pop(address.upper(), None)  # popped first: no on_lost for this drop
        if link is None:
            return
        with contextlib.suppress(core.BaseBumbleError, TimeoutError):
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await link.connection.disconnect()

    async def identify(self, address: str, seconds: int) -> None:
        """Write IDENTIFY over the link: the beacon blinks for ``seconds`` (not in Radio yet)."""
        link = self._links.get(address.upper())
        if link is None or link.identify is None:
            msg = f"{address} is not linked; connect to it before identifying it"
            raise RadioError(msg)
        value = bytes([max(0, min(seconds, protocol.IDENTIFY_MAX_SECONDS))])
        try:
            async with asyncio.timeout(GATT_TIMEOUT_S):
                await link.peer.write_value(link.identify, value, with_response=True)
        except (core.BaseBumbleError, TimeoutError) as exc:
            msg = f"identify on {address} failed ({exc!r}); reconnect and try again"
            raise RadioError(msg) from exc

    async def recover(self, step: int) -> str:
        """Every step restarts scanning (or starts the radio if start() failed)."""
        if (device := self._device) is None:
            await self.start()
            return "started the virtual radio"
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await device.stop_scanning(legacy=True)
            await self._start_scanning()
        except (core.BaseBumbleError, TimeoutError) as exc:
            msg = f"restarting the virtual scan failed ({exc!r}); restart the appliance"
            raise RadioError(msg) from exc
        return f"restarted scanning (step {step})"

    # -- Control API (tests, make run): the air's ----------------------------------------

    @property
    def beacons(self) -> Mapping[str, VirtualBeaconState]:
        return self.air.beacons

    async def add_beacon(
        self, beacon_id: int, *, rssi: float = RSSI_DEFAULT_DBM, name: str | None = None,
        factory: BeaconFactory | None = None,
    ) -> str:
        """Add a beacon made by ``factory`` (default: the radio's); it starts if the radio runs."""
        return (await self.air.add(beacon_id, factory=factory, rssi=rssi, name=name)).address

    def simulation(self, address: str) -> SimulatedBeacon:
        """The running beacon behind ``address`` (a VirtualBeacon or a SketchBeacon)."""
        return self.air.beacon(address)

    async def remove_beacon(self, address: str) -> None:
        await self.air.remove(address)

    async def set_present(self, address: str, present: bool) -> None:
        await self.air.set_present(address, present)

    def set_rssi(self, address: str, rssi: float) -> None:
        self.air.set_rssi(address, rssi)

    def drop_fraction(self, address: str, fraction: float) -> None:
        self.air.drop_fraction(address, fraction)

    def identify_writes(self, address: str) -> list[int]:
        """The IDENTIFY values (seconds) the beacon received since it started."""
        return self.air.identify_writes(address)

    def identify_count(self, address: str) -> int:
        return len(self.identify_writes(address))

    # -- Internals ------------------------------------------------------------------------

    def _require_device(self) -> Device:
        if self._device is None:
            msg = "the virtual radio is not started; call start() first"
            raise RadioError(msg)
        return self._device

    async def _start_scanning(self) -> None:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await self._require_device().start_scanning(legacy=True, active=True)

    def _on_advertisement(self, adv: BumbleAdvertisement) -> None:
        self._activity += 1
        data = adv.data
        uuids = data.get_all(data.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
        names = data.get_all(data.Type.COMPLETE_LOCAL_NAME)
        recognised = advertisement_from_bleak(
            adv.address.to_string(False), adv.rssi,
            [str(uuid) for uuids_ in uuids for uuid in uuids_],
            dict(data.get_all(data.Type.MANUFACTURER_SPECIFIC_DATA)),
            names[0] if names else None,
        )
        if recognised is not None:
            self._seen[recognised.address] = adv.address
            self._put(recognised)

    def _on_dropped(self, address: str) -> None:
        link = self._links.pop(address, None)
        if link is not None:
            _LOGGER.info("Link to %s lost", address)
            link.on_lost(address)

    def _put(self, item: Advertisement | None) -> None:
        if self._queue.full():  # latest wins: never let a stalled consumer grow memory
            self._queue.get_nowait()
        self._queue.put_nowait(item)


def make_radio(settings: Settings) -> Radio:
    """The ``virtual`` radio of the ``appliance.radios`` entry point: settings' virtual_* keys."""
    if settings.virtual_beacon_kind == "sketch":
        from appliance_sim.sketch_beacon import SketchBeaconFactory, sim_binary

        factory = SketchBeaconFactory(sim_binary(settings.virtual_beacon_sim))
        return VirtualRadio(settings.virtual_beacons, beacon_factory=factory)
    return VirtualRadio(settings.virtual_beacons)

