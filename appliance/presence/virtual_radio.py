"""A virtual Bluetooth radio: a real BLE host stack on virtual controllers, in this process.

The appliance side is bumble's own ``Device`` (host) on a ``VirtualController``; each virtual
beacon is another bumble ``Device`` on its own ``VirtualController``. All controllers share one
``VirtualLink`` (bumble's ``LocalLink``), so advertising, connecting, GATT and disconnections run
through real HCI and ATT exchanges. ``VirtualController`` and ``VirtualLink`` only carry fixes for
bumble 0.0.236 gaps plus the radio path model (RSSI, loss).

Which beacons run on the link is a ``BeaconFactory``'s choice: ``PythonBeacons`` (the protocol
written in Python, ``VirtualBeacon``) or ``sketch_beacon.SketchBeaconFactory`` (the firmware itself,
built for the host and bridged to bumble). A radio can mix both: ``add_beacon(..., factory=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol

from bumble import core, hci, ll
from bumble.controller import Controller
from bumble.device import Advertisement as BumbleAdvertisement
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from appliance.errors import RadioError
from appliance.presence import protocol
from appliance.presence.model import Advertisement, LinkInfo
from appliance.presence.radio import advertisement_from_bleak

_LOGGER = logging.getLogger(__name__)

# The real beacon's interval: beacon.ino never sets one, so ArduinoBLE's default 160 × 0.625 ms
# applies. Discovery takes ~0.1 s; 3 beacons make ~60 HCI reports/s: 3 % of one x86 core.
ADV_INTERVAL_MS: Final = 100.0
# New counter/uptime go on air this often: the firmware's ADV_REFRESH_MS.
ADV_REFRESH_S: Final = 60.0
# Every HCI command is answered within a few loop iterations in-process; 2 s means "stack broken".
COMMAND_TIMEOUT_S: Final = 2.0
# A connection completes on the beacon's next received advertisement; 3 s is 30 intervals, so
# it still succeeds at drop_fraction(0.8). bumble cancels the attempt itself at this limit.
CONNECT_TIMEOUT_S: Final = 3.0
# Service discovery plus one read is ~6 ATT round trips of a few loop iterations each.
GATT_TIMEOUT_S: Final = 2.0
RSSI_JITTER_DB: Final = 2.0  # σ of the gaussian jitter, typical of a static indoor link
QUEUE_SIZE: Final = 1024  # advertisements waiting for the consumer; beyond this the oldest drop
FIRMWARE: Final = "0.1.0"
CENTRAL_ADDRESS: Final = "C0:00:00:00:00:01"  # static random (top bits 11)
CENTRAL_PUBLIC_ADDRESS: Final = "00:AA:00:00:00:01"  # bumble wants non-zero public addresses
# A controller's LE event mask until the host sets one: the first five events (Core 5.4, Vol 4,
# Part E, 7.8.1). bumble starts at 0, as if nothing were unmasked.
LE_EVENT_MASK_DEFAULT: Final = 0x1F
# LE event mask bit n unmasks LE subevent n + 1 (7.8.1). When the host unmasked an enhanced
# connection complete event, the controller must send it instead of the legacy one (7.7.65.10):
# Linux waits for exactly that event after LE Create Connection (up to its 20 s connection
# timeout), with every later HCI request, disconnects included, queued behind the wait.
LE_ENHANCED_CONNECTION_COMPLETE_BIT: Final = 1 << (hci.HCI_LE_ENHANCED_CONNECTION_COMPLETE_EVENT - 1)
LE_ENHANCED_CONNECTION_COMPLETE_V2_BIT: Final = 1 << (hci.HCI_LE_ENHANCED_CONNECTION_COMPLETE_V2_EVENT - 1)
# "Not applicable" in LE Enhanced Connection Complete [v2]: the link came from legacy advertising.
_NO_ADVERTISING_HANDLE: Final = 0xFF
_NO_SYNC_HANDLE: Final = 0xFFFF

ReceptionModel = Callable[[hci.Address], int | None]
"""RSSI for one received advertisement from an address, or None when the packet is lost."""


def beacon_address(beacon_id: int) -> str:
    """The static random address of virtual beacon ``beacon_id`` (top two bits set)."""
    if not 1 <= beacon_id <= 0xFFFF:
        msg = f"beacon id {beacon_id} is outside 1..65535; pick another id"
        raise ValueError(msg)
    return f"F0:00:00:00:{beacon_id >> 8:02X}:{beacon_id & 0xFF:02X}"


class VirtualLink(LocalLink):
    """bumble's LocalLink, tagging LE ACL data with the connection's own address."""

    def send_acl_data(
        self, sender_controller: Controller, destination_address: hci.Address,
        transport: core.PhysicalTransport, data: bytes,
    ) -> None:
        connection = sender_controller.le_connections.get(destination_address)
        if transport != core.PhysicalTransport.LE or connection is None:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        destination = self.find_le_controller(destination_address)
        if destination is not None:
            source = connection.self_address
            asyncio.get_running_loop().call_soon(
                destination.on_link_acl_data, source, transport, data
            )


class VirtualController(Controller):
    """A legacy-advertising (Bluetooth 4.2 style) controller with a radio path model.

    Rewrites what bumble's controller would report: the RSSI comes from ``reception`` (which may
    also drop the packet), the scan response is the advertiser's real one, a cancelled
    connection attempt completes with an error as the spec requires, a connection completes with
    the LE Enhanced Connection Complete event when the host unmasked it, Read Remote Version
    Information is answered, and a command bumble does not know gets a Command Status instead of
    silence (a host such as Linux would wait for it until its command timeout).
    """

    le_event_mask = LE_EVENT_MASK_DEFAULT

    # Without extended advertising, hosts use legacy advertising, scanning and connections.
    le_features = Controller.le_features & ~(
        hci.LeFeatureMask.LE_EXTENDED_ADVERTISING | hci.LeFeatureMask.LE_PERIODIC_ADVERTISING
    )

    def __init__(
        self, name: str, link: LocalLink, public_address: str,
        reception: ReceptionModel | None = None,
    ) -> None:
        super().__init__(name, link=link, public_address=public_address)
        self.reception = reception

    def on_hci_le_set_advertising_parameters_command(self, command: Any) -> Any:
        result = super().on_hci_le_set_advertising_parameters_command(command)
        # bumble's advertiser timer reads the interval as ms; HCI gives it in 0.625 ms units.
        advertiser = self.le_legacy_advertiser
        advertiser.advertising_interval_min = round(command.advertising_interval_min * 0.625)
        return result

    def on_hci_le_create_connection_cancel_command(self, command: Any) -> Any:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        # After the Command Complete: that is the order a real controller uses.
        asyncio.get_running_loop().call_soon(
            self.send_hci_packet,
            hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0, role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address.address_type,
                peer_address=pending.peer_address, connection_interval=0,
                peripheral_latency=0, supervision_timeout=0, central_clock_accuracy=0,
            ),
        )
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_LE_Connection_Complete_Event):
            packet = self._connection_complete_for_host(packet)
        super().send_hci_packet(packet)

    def _connection_complete_for_host(self, event: hci.HCI_LE_Connection_Complete_Event) -> hci.HCI_Packet:
        """bumble always sends the legacy event; the spec wants the newest one the host unmasked."""
        mask = self.le_event_mask
        if not mask & (LE_ENHANCED_CONNECTION_COMPLETE_BIT | LE_ENHANCED_CONNECTION_COMPLETE_V2_BIT):
            return event
        fields: dict[str, Any] = {
            "status": event.status, "connection_handle": event.connection_handle, "role": event.role,
            "peer_address_type": event.peer_address_type, "peer_address": event.peer_address,
            # No address resolution in the controller: both resolvable addresses are "none".
            "local_resolvable_private_address": hci.Address.ANY_RANDOM,
            "peer_resolvable_private_address": hci.Address.ANY_RANDOM,
            "connection_interval": event.connection_interval,
            "peripheral_latency": event.peripheral_latency,
            "supervision_timeout": event.supervision_timeout,
            "central_clock_accuracy": event.central_clock_accuracy,
        }
        if mask & LE_ENHANCED_CONNECTION_COMPLETE_V2_BIT:
            return hci.HCI_LE_Enhanced_Connection_Complete_V2_Event(
                **fields, advertising_handle=_NO_ADVERTISING_HANDLE, sync_handle=_NO_SYNC_HANDLE
            )
        return hci.HCI_LE_Enhanced_Connection_Complete_Event(**fields)

    def on_hci_command(self, command: hci.HCI_Command) -> Any:
        if isinstance(command, hci.HCI_SyncCommand):
            return super().on_hci_command(command)  # a Command Complete saying "unknown command"
        # bumble answers nothing to the other commands it lacks; the spec allows a Command Status.
        _LOGGER.warning("%s: unsupported HCI command %s", self.name, command.name)
        self._send_hci_command_status(hci.HCI_ErrorCode.UNKNOWN_HCI_COMMAND_ERROR, command.op_code)
        return None

    def on_hci_read_remote_version_information_command(self, command: Any) -> None:
        connection = self.find_le_connection_by_handle(command.connection_handle)
        if connection is None:
            self._send_hci_command_status(
                hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR, command.op_code
            )
            return
        self._send_hci_command_status(hci.HCI_COMMAND_STATUS_PENDING, command.op_code)
        remote = self.link.find_le_controller(connection.peer_address) or self
        self.send_hci_packet(hci.HCI_Read_Remote_Version_Information_Complete_Event(
            status=hci.HCI_ErrorCode.SUCCESS, connection_handle=connection.handle,
            version=remote.lmp_version, manufacturer_name=remote.manufacturer_company_identifier,
            subversion=remote.lmp_subversion,
        ))

    def on_advertising_pdu(self, pdu: Any) -> None:
        if not isinstance(pdu, ll.AdvInd):
            super().on_advertising_pdu(pdu)
            return
        address = pdu.advertiser_address
        rssi = -50 if self.reception is None else self.reception(address)
        if rssi is None:
            return  # lost: neither reported nor connected to
        if self.le_scan_enable:
            report_type = hci.HCI_LE_Advertising_Report_Event.EventType
            reports = [(report_type.ADV_IND, pdu.data)]
            advertiser = self.link.find_le_controller(address)
            response = advertiser.le_legacy_advertiser.scan_response_data if advertiser else b""
            if response and self.le_scan_type == hci.HCI_LE_Set_Scan_Parameters_Command.ACTIVE_SCANNING:
                reports.append((report_type.SCAN_RSP, response))
            for event_type, data in reports:
                report = hci.HCI_LE_Advertising_Report_Event.Report(
                    event_type=event_type, address_type=address.address_type,
                    address=address, data=data, rssi=rssi,
                )
                self.send_hci_packet(hci.HCI_LE_Advertising_Report_Event([report]))
        pending = self.pending_le_connection
        if pending is not None and pending.peer_address == address:
            self.create_le_connection(address)


def new_device(name: str, address: str, controller: Controller) -> Device:
    """A bumble host stack on ``controller`` (in-process, no transport)."""
    return Device(
        name=name, address=hci.Address(address), host=Host(controller, AsyncPipeSink(controller))
    )


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
        self.device.advertising_interval_min = ADV_INTERVAL_MS
        self.device.advertising_interval_max = ADV_INTERVAL_MS
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


@dataclasses.dataclass(frozen=True, slots=True)
class VirtualBeaconState:
    """A virtual beacon as the dashboard and tests see it."""

    address: str
    beacon_id: int
    name: str
    present: bool
    rssi: float
    drop_fraction: float = 0.0
    kind: str = "python"  # the BeaconFactory.kind that runs it: "python" or "sketch"


class SimulatedBeacon(Protocol):
    """A beacon VirtualRadio runs on its link (VirtualBeacon, SketchBeacon)."""

    @property
    def identify_writes(self) -> list[int]:
        """The IDENTIFY values (seconds) written to it since it started."""
        ...

    async def start(self, *, present: bool) -> None:
        """Power on; advertise unless ``present`` is false. Raises RadioError."""

    async def set_present(self, *, present: bool) -> None:
        """Leave (stop advertising, drop every link) or come back."""

    async def close(self) -> None:
        """Power off and leave the link."""


class BeaconFactory(Protocol):
    """Makes the simulated beacons of one kind."""

    @property
    def kind(self) -> str: ...

    def default_name(self, beacon_id: int) -> str:
        """The name the beacon will advertise when none is given."""
        ...

    def create(self, link: LocalLink, state: VirtualBeaconState) -> SimulatedBeacon: ...


class PythonBeacons:
    """VirtualBeacon: the beacon protocol written in Python, named "SG Beacon <id>"."""

    kind: Final = "python"

    def default_name(self, beacon_id: int) -> str:
        return f"{protocol.DEFAULT_LOCAL_NAME} {beacon_id}"

    def create(self, link: LocalLink, state: VirtualBeaconState) -> SimulatedBeacon:
        return VirtualBeacon(link, state.beacon_id, state.name)


@dataclasses.dataclass(slots=True)
class _Link:
    connection: Connection
    on_lost: Callable[[str], None]
    peer: Peer
    identify: Any = None  # the IDENTIFY characteristic proxy, once discovered


class VirtualRadio:
    """The Radio protocol on bumble's host stack and virtual beacons on a shared link."""

    def __init__(
        self, beacon_count: int = 3, *, seed: int | None = None,
        beacon_factory: BeaconFactory | None = None,
    ) -> None:
        """``beacon_count`` beacons, ids 1..n, made by ``beacon_factory`` (default PythonBeacons)."""
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        self._default_factory: BeaconFactory = beacon_factory or PythonBeacons()
        self._states: dict[str, VirtualBeaconState] = {}
        self._factories: dict[str, BeaconFactory] = {}
        for beacon_id in range(1, beacon_count + 1):
            self._add_state(beacon_id, -60.0, None, self._default_factory)
        self._link = VirtualLink()  # type: ignore[no-untyped-call]  # replaced by each start()
        self._device: Device | None = None
        self._beacons: dict[str, SimulatedBeacon] = {}
        self._seen: dict[str, hci.Address] = {}
        self._links: dict[str, _Link] = {}
        self._queue: asyncio.Queue[Advertisement | None] = asyncio.Queue(QUEUE_SIZE)
        self._last_activity: float | None = None
        self._connect_lock = asyncio.Lock()  # bumble (like a controller) makes one at a time

    # -- Radio protocol -------------------------------------------------------------------

    @property
    def last_activity(self) -> float | None:
        return self._last_activity

    async def start(self) -> None:
        if self._device is not None:
            return
        self._link = VirtualLink()  # type: ignore[no-untyped-call]
        controller = VirtualController(
            "appliance", self._link, CENTRAL_PUBLIC_ADDRESS, reception=self._reception
        )
        self._device = new_device("appliance", CENTRAL_ADDRESS, controller)
        self._device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        while not self._queue.empty():  # e.g. the end marker of an earlier stop()
            self._queue.get_nowait()
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await self._device.power_on()
            for state in list(self._states.values()):
                await self._start_beacon(state)
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
        for beacon in self._beacons.values():
            with contextlib.suppress(core.BaseBumbleError, TimeoutError):
                await beacon.close()
        self._beacons.clear()
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

    # -- Control API (tests, dashboard) ---------------------------------------------------

    @property
    def beacons(self) -> Mapping[str, VirtualBeaconState]:
        return MappingProxyType(self._states)

    async def add_beacon(
        self, beacon_id: int, *, rssi: float = -60.0, name: str | None = None,
        factory: BeaconFactory | None = None,
    ) -> str:
        """Add a beacon made by ``factory`` (default: the radio's); it starts if the radio runs."""
        state = self._add_state(beacon_id, rssi, name, factory or self._default_factory)
        if self._device is not None:
            try:
                await self._start_beacon(state)
            except (RadioError, core.BaseBumbleError, TimeoutError):
                del self._states[state.address]
                del self._factories[state.address]
                raise
        return state.address

    def simulation(self, address: str) -> SimulatedBeacon:
        """The running beacon behind ``address`` (a VirtualBeacon or a SketchBeacon)."""
        beacon = self._beacons.get(self._state(address).address)
        if beacon is None:
            msg = f"virtual beacon {address} is not running; start the radio first"
            raise ValueError(msg)
        return beacon

    async def remove_beacon(self, address: str) -> None:
        state = self._state(address)
        del self._states[state.address]
        del self._factories[state.address]
        beacon = self._beacons.pop(state.address, None)
        if beacon is not None:
            await beacon.close()

    async def set_present(self, address: str, present: bool) -> None:
        state = self._update(address, present=present)
        if (beacon := self._beacons.get(state.address)) is not None:
            await beacon.set_present(present=present)

    def set_rssi(self, address: str, rssi: float) -> None:
        self._update(address, rssi=rssi)

    def drop_fraction(self, address: str, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            msg = f"drop fraction {fraction} is outside 0..1"
            raise ValueError(msg)
        self._update(address, drop_fraction=fraction)

    def identify_writes(self, address: str) -> list[int]:
        """The IDENTIFY values (seconds) the beacon received since it started."""
        beacon = self._beacons.get(self._state(address).address)
        return [] if beacon is None else list(beacon.identify_writes)

    def identify_count(self, address: str) -> int:
        return len(self.identify_writes(address))

    # -- Internals ------------------------------------------------------------------------

    def _add_state(
        self, beacon_id: int, rssi: float, name: str | None, factory: BeaconFactory
    ) -> VirtualBeaconState:
        address = beacon_address(beacon_id)
        if address in self._states:
            msg = f"virtual beacon {beacon_id} already exists; pick another id"
            raise ValueError(msg)
        state = VirtualBeaconState(
            address, beacon_id, name or factory.default_name(beacon_id), True, rssi,
            kind=factory.kind,
        )
        self._states[address] = state
        self._factories[address] = factory
        return state

    def _state(self, address: str) -> VirtualBeaconState:
        state = self._states.get(address.upper())
        if state is None:
            msg = f"no virtual beacon at {address}; see VirtualRadio.beacons"
            raise ValueError(msg)
        return state

    def _update(self, address: str, **changes: Any) -> VirtualBeaconState:
        state = dataclasses.replace(self._state(address), **changes)
        self._states[state.address] = state
        return state

    def _require_device(self) -> Device:
        if self._device is None:
            msg = "the virtual radio is not started; call start() first"
            raise RadioError(msg)
        return self._device

    async def _start_beacon(self, state: VirtualBeaconState) -> None:
        beacon = self._factories[state.address].create(self._link, state)
        self._beacons[state.address] = beacon
        try:
            await beacon.start(present=state.present)
        except (RadioError, core.BaseBumbleError, TimeoutError):
            del self._beacons[state.address]
            with contextlib.suppress(core.BaseBumbleError, TimeoutError):
                await beacon.close()
            raise

    async def _start_scanning(self) -> None:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await self._require_device().start_scanning(legacy=True, active=True)

    def _reception(self, address: hci.Address) -> int | None:
        state = self._states.get(address.to_string(False))
        if state is None:
            return -50  # a device that is not one of ours: bumble's constant
        if self._rng.random() < state.drop_fraction:
            return None
        return max(-127, min(20, round(self._rng.gauss(state.rssi, RSSI_JITTER_DB))))

    def _on_advertisement(self, adv: BumbleAdvertisement) -> None:
        self._last_activity = asyncio.get_running_loop().time()
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
