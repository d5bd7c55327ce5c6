"""BleakRadio at bleak's callback boundary, with bleak's own types (no BlueZ on this host; the
hardware-in-the-loop suite runs it against real BlueZ)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from helpers import wait_for

from appliance.presence import protocol
from appliance.presence.radio import QUEUE_SIZE, BleakRadio


def _seen(radio: BleakRadio, address: str, *, ours: bool = True, beacon_id: int = 1) -> None:
    payload = protocol.BeaconPayload(beacon_id, 0, 0).pack()
    data = AdvertisementData(
        local_name=None, manufacturer_data={protocol.COMPANY_ID: payload} if ours else {0x4C: b"x"},
        service_data={}, service_uuids=[protocol.SERVICE_UUID] if ours else [], tx_power=None,
        rssi=-70, platform_data=())
    radio._on_detection(BLEDevice(address, None, {}), data)


async def test_only_our_beacons_are_queued_but_all_traffic_counts_as_activity() -> None:
    radio = BleakRadio()
    assert radio.activity == 0
    _seen(radio, "11:22:33:44:55:66", ours=False)
    assert radio.activity == 1 and radio._queue.empty()
    _seen(radio, "f0:00:00:00:00:07", beacon_id=7)
    adv = radio._queue.get_nowait()
    assert adv is not None and (adv.address, adv.beacon_id, adv.rssi) == ("F0:00:00:00:00:07", 7, -70)


async def test_a_stalled_consumer_never_grows_the_queue() -> None:
    radio = BleakRadio()
    for i in range(QUEUE_SIZE + 50):
        _seen(radio, "f0:00:00:00:00:07", beacon_id=i % 65535 + 1)
    assert radio._queue.qsize() == QUEUE_SIZE
    first = radio._queue.get_nowait()
    assert first is not None and first.beacon_id == 51  # the oldest 50 were dropped


def test_bluez_signals_every_advertisement_so_a_returning_beacon_is_heard_at_once() -> None:
    # Without DuplicateData BlueZ stays silent about a beacon whose data and RSSI hold still.
    assert BleakRadio().scanner_args()["filters"] == {"DuplicateData": True}
    passive = BleakRadio(passive=True).scanner_args()
    assert passive["filters"] == {"DuplicateData": True} and len(passive["or_patterns"]) == 1


@pytest.fixture
async def bus_address(tmp_path: Path) -> AsyncIterator[str]:
    """A private D-Bus daemon (Debian's dbus-daemon) standing where the system bus would be."""
    if shutil.which("dbus-daemon") is None:
        pytest.fail("dbus-daemon is missing: apt install dbus (system-packages/test.txt)",
                    pytrace=False)
    address = f"unix:path={tmp_path / 'bus'}"
    daemon = await asyncio.create_subprocess_exec(
        "dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={address}",
        "--print-address", stdout=asyncio.subprocess.PIPE)
    assert daemon.stdout is not None
    async with asyncio.timeout(10):
        assert (await daemon.stdout.readline()).startswith(b"unix:")
    yield address
    daemon.terminate()
    await daemon.wait()


async def test_bluetoothd_starting_and_the_adapter_coming_back_are_noticed_on_d_bus(
    bus_address: str,
) -> None:
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    radio = BleakRadio("hci0", dbus_address=bus_address)
    await radio.watch_bluez()
    bluetoothd = await MessageBus(bus_address=bus_address).connect()
    try:
        assert radio.interrupted() is False
        await bluetoothd.request_name("org.bluez")  # bluetoothd (re)starts
        await wait_for(radio.interrupted, what="the restart noticed")
        assert radio.interrupted() is False  # once per restart
        for path in ("/org/bluez/hci1", "/org/bluez/hci0"):  # another adapter, then ours, back
            await bluetoothd.send(Message.new_signal(
                "/", "org.freedesktop.DBus.ObjectManager", "InterfacesAdded", "oa{sa{sv}}",
                [path, {"org.bluez.Adapter1": {}}]))
        await wait_for(radio.interrupted, what="hci0 back noticed")
        assert radio.interrupted() is False  # hci1 is not ours
    finally:
        bluetoothd.disconnect()
        await radio.stop()
