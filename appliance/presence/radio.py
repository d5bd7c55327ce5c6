"""The Radio protocol, its production implementation on bleak, and the choice of radio by name.

This is the only module of the appliance that imports bleak. Other radios (the simulation's
"virtual") are found by name under the ``appliance.radios`` entry points; none is ever a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Final, Protocol

from appliance.errors import ConfigError, RadioError
from appliance.presence import protocol
from appliance.presence.model import Advertisement, LinkInfo
from appliance.settings import Settings
from appliance.settings_values import RADIO_ENTRY_POINTS

if TYPE_CHECKING:
    from bleak.args.bluez import BlueZScannerArgs
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

_LOGGER = logging.getLogger(__name__)

BLUEZ: Final = "org.bluez"
# bluetoothd's name changing owner, and objects (an adapter) appearing.
BLUEZ_MATCH_RULES: Final = (
    f"type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    f"member='NameOwnerChanged',arg0='{BLUEZ}'",
    f"type='signal',sender='{BLUEZ}',interface='org.freedesktop.DBus.ObjectManager',"
    "member='InterfacesAdded'",
)


def _add_match(rule: str) -> Message:
    from dbus_fast import Message

    return Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                   interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                   body=[rule])

# One connect (with bleak-retry-connector's own retries inside) may take this long in total:
# BlueZ's own connect timeout is 20 s and we allow three attempts of that, plus service discovery.
CONNECT_TIMEOUT_S: Final = 75.0
CONNECT_ATTEMPTS: Final = 3
# Reading one characteristic on a healthy link takes tens of milliseconds.
GATT_TIMEOUT_S: Final = 10.0
DISCONNECT_TIMEOUT_S: Final = 10.0
SCANNER_TIMEOUT_S: Final = 15.0
# Advertisements waiting for the service; beyond this the oldest are dropped, never buffered.
QUEUE_SIZE: Final = 1024


class Radio(Protocol):
    """What the presence service needs from a Bluetooth radio."""

    async def start(self) -> None:
        """Start scanning. Raises RadioError when the adapter is unusable."""

    async def stop(self) -> None:
        """Stop scanning and drop every link."""

    def advertisements(self) -> AsyncIterator[Advertisement]:
        """Our beacons' advertisements, as they arrive, until stop()."""
        ...

    @property
    def activity(self) -> int:
        """How many advertisements of any device (ours or not) it has heard: the watchdog
        tells a quiet room from a stalled scanner by whether this moves."""
        ...

    def interrupted(self) -> bool:
        """Whether scanning was cut from outside since the last call (bluetoothd restarted, the
        adapter removed and plugged back): the watchdog restarts the scanner at once instead of
        waiting for a stall."""
        ...

    async def connect(self, address: str, on_lost: Callable[[str], None]) -> LinkInfo:
        """Connect to a beacon, read its info characteristic and keep the link.

        ``on_lost(address)`` is called once when the link drops later. Raises RadioError.
        """
        ...

    async def disconnect(self, address: str) -> None:
        """Drop the link to a beacon, if any."""

    async def recover(self, step: int) -> str:
        """Try recovery step ``step`` (0 = lightest); return what was done."""
        ...


def advertisement_from_bleak(
    address: str, rssi: int, service_uuids: list[str], manufacturer_data: dict[int, bytes],
    local_name: str | None,
) -> Advertisement | None:
    """Recognise one of our beacons; None for any other device or malformed data."""
    if protocol.SERVICE_UUID not in (uuid.lower() for uuid in service_uuids):
        return None
    raw = manufacturer_data.get(protocol.COMPANY_ID)
    if raw is None:
        return None
    try:
        payload = protocol.parse_payload(raw)
    except protocol.ProtocolError as exc:
        _LOGGER.debug("Ignoring %s: %s", address, exc)
        return None
    return Advertisement(
        address=address.upper(), rssi=rssi, beacon_id=payload.beacon_id,
        counter=payload.counter, uptime_min=payload.uptime_min, name=local_name,
    )


class BleakRadio:
    """The radio on a real adapter through BlueZ (bleak + bleak-retry-connector)."""

    def __init__(self, adapter: str = "hci0", *, passive: bool = False,
                 dbus_address: str | None = None) -> None:
        self._adapter = adapter
        self._passive = passive
        self._queue: asyncio.Queue[Advertisement | None] = asyncio.Queue(QUEUE_SIZE)
        self._scanner: object | None = None
        self._devices: dict[str, BLEDevice] = {}
        self._clients: dict[str, object] = {}
        self._activity = 0
        self._dbus_address = dbus_address  # None: the system bus (a test passes its own)
        self._bus: MessageBus | None = None
        self._interrupted = False

    @property
    def activity(self) -> int:
        return self._activity

    def interrupted(self) -> bool:
        interrupted, self._interrupted = self._interrupted, False
        return interrupted

    async def watch_bluez(self) -> None:
        """Notice bluetoothd (re)starting and the adapter coming back, from D-Bus signals.

        bleak does not: its scanner then hears nothing, and only the watchdog's 90 s stall
        brought it back (the 97 s one HIL run measured after `systemctl restart bluetooth`).
        """
        if self._bus is not None:
            return
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        bus = MessageBus(bus_address=self._dbus_address) if self._dbus_address \
            else MessageBus(bus_type=BusType.SYSTEM)
        try:
            async with asyncio.timeout(SCANNER_TIMEOUT_S):
                await bus.connect()
                for rule in BLUEZ_MATCH_RULES:
                    await bus.call(_add_match(rule))
        except (OSError, TimeoutError, ValueError) as exc:
            bus.disconnect()
            msg = f"cannot watch bluetoothd on D-Bus: {exc}; is dbus running?"
            raise RadioError(msg) from exc
        bus.add_message_handler(self._on_bluez_signal)
        self._bus = bus

    def _on_bluez_signal(self, message: Message) -> None:
        body = message.body
        if message.member == "NameOwnerChanged" and len(body) == 3 and body[0] == BLUEZ:
            back = bool(body[2])  # a new owner: bluetoothd has started
        elif message.member == "InterfacesAdded" and len(body) == 2:
            back = body[0] == f"/org/bluez/{self._adapter}" and "org.bluez.Adapter1" in body[1]
        else:
            return
        if back:
            _LOGGER.warning("bluetoothd started or %s came back: scanning restarts", self._adapter)
            self._interrupted = True

    def _on_detection(self, device: BLEDevice, data: AdvertisementData) -> None:
        self._activity += 1
        adv = advertisement_from_bleak(
            device.address, data.rssi, data.service_uuids, data.manufacturer_data, data.local_name
        )
        if adv is None:
            return
        self._devices[adv.address] = device
        if self._queue.full():  # latest wins: never let a stalled consumer grow memory
            self._queue.get_nowait()
        self._queue.put_nowait(adv)

    def scanner_args(self) -> BlueZScannerArgs:
        from bleak.args.bluez import BlueZScannerArgs, OrPattern

        # DuplicateData: BlueZ signals every advertisement. Without it, it signals only data
        # that changed (the firmware refreshes its data every 60 s) or an RSSI that moved by
        # 8 dB or more, so a beacon standing still and not linked looked silent for up to a
        # minute: longer than away_after_s. With it, the twin's bluetoothctl shows each packet
        # (RSSI -62, -59, -60). None of it is written to the card (see PresenceService.flush).
        bluez = BlueZScannerArgs(adapter=self._adapter, filters={"DuplicateData": True})
        if self._passive:
            # Passive scanning needs bluetoothd --experimental and at least one or-pattern: ours
            # is the company id at the start of the manufacturer data.
            bluez["or_patterns"] = [
                OrPattern(0, 0xFF, protocol.COMPANY_ID.to_bytes(2, "little"))  # type: ignore[arg-type]
            ]
        return bluez

    async def start(self) -> None:
        from bleak import BleakScanner
        from bleak.exc import BleakError

        bluez = self.scanner_args()
        scanner = BleakScanner(
            detection_callback=self._on_detection,
            scanning_mode="passive" if self._passive else "active", bluez=bluez,
        )
        try:
            async with asyncio.timeout(SCANNER_TIMEOUT_S):
                await scanner.start()
        except (BleakError, TimeoutError, OSError) as exc:
            msg = f"cannot start scanning on {self._adapter}: {exc}; is bluetoothd running?"
            raise RadioError(msg) from exc
        self._scanner = scanner
        await self.watch_bluez()  # once scanning works: the same bus, so it works too

    async def stop(self) -> None:
        for address in list(self._clients):
            await self.disconnect(address)
        await self._stop_scanner()
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SCANNER_TIMEOUT_S):
                    await scanner.stop()  # type: ignore[attr-defined]

    async def advertisements(self) -> AsyncIterator[Advertisement]:
        while (adv := await self._queue.get()) is not None:
            yield adv

    async def connect(self, address: str, on_lost: Callable[[str], None]) -> LinkInfo:
        from bleak.exc import BleakError
        from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

        device = self._devices.get(address)
        if device is None:
            msg = f"{address} has not been seen by this adapter yet; wait for an advertisement"
            raise RadioError(msg)

        def _lost(_client: object) -> None:
            # bleak also calls this after our own disconnect(); only a drop we did not ask for
            # (the client is still registered) is reported, as the Radio protocol says.
            if self._clients.pop(address, None) is not None:
                on_lost(address)

        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                client = await establish_connection(
                    BleakClientWithServiceCache, device, address,
                    disconnected_callback=_lost, max_attempts=CONNECT_ATTEMPTS,
                )
            self._clients[address] = client
            async with asyncio.timeout(GATT_TIMEOUT_S):
                raw = await client.read_gatt_char(protocol.INFO_CHAR_UUID)
            info = protocol.parse_info(bytes(raw))
        except (BleakError, TimeoutError, OSError, protocol.ProtocolError) as exc:
            await self.disconnect(address)
            msg = f"cannot connect to {address}: {exc}"
            raise RadioError(msg) from exc
        return LinkInfo(address=address, beacon_id=info.beacon_id, firmware=info.firmware)

    async def disconnect(self, address: str) -> None:
        client = self._clients.pop(address, None)
        if client is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await client.disconnect()  # type: ignore[attr-defined]

    async def recover(self, step: int) -> str:
        """Step 0 restarts the scanner; step 1 resets the adapter (bluetooth-auto-recovery)."""
        await self._stop_scanner()
        if step >= 1:
            from bluetooth_adapters import get_adapters_from_hci
            from bluetooth_auto_recovery import recover_adapter

            hci = int(self._adapter.removeprefix("hci") or 0)
            mac = get_adapters_from_hci().get(hci, {}).get("bdaddr", "00:00:00:00:00:00")
            async with asyncio.timeout(60):
                ok = await recover_adapter(hci, mac)
            if not ok:
                msg = f"resetting {self._adapter} failed; check `journalctl -u bluetooth`"
                raise RadioError(msg)
        await self.start()
        return "restarted scanner" if step == 0 else f"reset adapter {self._adapter}"


def make_radio(settings: Settings) -> Radio:
    """The radio ``settings.radio`` names: bleak, or one an installed package registers."""
    if settings.radio == "bleak":
        return BleakRadio(settings.adapter, passive=settings.passive_scan)
    found = entry_points(group=RADIO_ENTRY_POINTS, name=settings.radio)
    if not found:
        msg = f"radio {settings.radio!r} is not installed here; set radio = \"bleak\" for the adapter"
        raise ConfigError(msg)
    factory: Callable[[Settings], Radio] = next(iter(found)).load()
    return factory(settings)
