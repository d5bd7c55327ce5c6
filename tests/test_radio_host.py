"""The virtual rig's radio, driven over its sockets as the QEMU guest and the HIL suite drive it; no VM.

The radio runs as the HIL suite starts it (``python -m tests.hil.radio``, its own process). The
guest's BlueZ cannot run here (this kernel has no Bluetooth), so a bumble host on the radio's HCI
socket stands in for it and behaves as Linux does where it matters: it connects from its PUBLIC
address, unmasks LE Enhanced Connection Complete (LE event mask bit 9, as Linux does for a
controller with LL privacy) and waits for exactly that event after connecting, reads the remote
LE features and version. What only the real guest can show (btattach, the kernel's command
sequence, bluetoothd's reports) is left to the VM-based suite.

No sleeps: every wait is on a condition under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import statistics
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
from bumble import hci
from bumble.device import Advertisement as BumbleAdvertisement
from bumble.device import Connection, Device, Peer
from bumble.snoop import Snooper
from bumble.transport import open_transport
from bumble.transport.common import Transport
from helpers import AdvertisementLog, SerialConsole
from hil.radio_client import Op, RadioClient, RadioControlError

from appliance.presence import protocol
from appliance.presence.radio import advertisement_from_bleak
from appliance_sim.air import beacon_address

ROOT: Final = Path(__file__).resolve().parents[1]
SIM: Final = ROOT / "firmware" / "build" / "sim" / "beacon-sim"
DEADLINE_S: Final = 5.0
# Python start-up, bumble's import and the beacons (sketch ones are processes) on 2 busy cores.
START_DEADLINE_S: Final = 30.0
STOP_DEADLINE_S: Final = 10.0
# The shortest legal interval: the same behaviour as ArduinoBLE's 100 ms, five times faster tests.
ADV_INTERVAL_MS: Final = 20
# Connecting completes on the beacon's next advertisement (20 ms); generous for a loaded machine.
CONNECT_TIMEOUT_S: Final = 3.0
# Linux's stall without the enhanced event is ~21 s; a working disconnect takes milliseconds.
DISCONNECT_BUDGET_S: Final = 2.0
# The LE event mask Linux (hci_le_set_event_mask_sync) sets for this controller: connection
# complete, advertising report, connection update, remote features, LTK request, connection
# parameter request, data length change (byte 0: 0x7F); enhanced connection complete (bit 9,
# LL privacy) and directed advertising report (bit 10) (byte 1: 0x06); channel selection
# algorithm (bit 19, CSA #2) (byte 2: 0x08). Not v2 (bit 40), which bumble's own host unmasks.
LINUX_LE_EVENT_MASK: Final = bytes([0x7F, 0x06, 0x08, 0, 0, 0, 0, 0])
RSSI_MEAN: Final = -60
B1, B2, B3 = (beacon_address(beacon_id) for beacon_id in (1, 2, 3))


# -- the radio process ------------------------------------------------------------------------


@dataclasses.dataclass
class Radio:
    """A running ``python -m tests.hil.radio`` and its control client."""

    process: asyncio.subprocess.Process
    hci_socket: Path
    control: RadioClient
    ready: dict[str, Any]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.asynccontextmanager
async def running_radio(
    tmp_path: Path, *, beacons: int = 3, kind: str = "python", seed: int = 7
) -> AsyncIterator[Radio]:
    hci_socket, control_socket, log = (tmp_path / name for name in ("hci.sock", "control.sock", "radio.log"))
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.hil.radio", "--hci-socket", str(hci_socket),
            "--control", str(control_socket), "--beacons", str(beacons), "--kind", kind,
            "--seed", str(seed), "--rssi", str(RSSI_MEAN), "--adv-interval-ms", str(ADV_INTERVAL_MS),
            "--sim", str(SIM), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log_file,
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(START_DEADLINE_S):
            line = await process.stdout.readline()
        assert line, f"the radio exited before it was ready:\n{log.read_text()}"
        ready = json.loads(line)
        assert ready["event"] == "ready"
        control = await RadioClient.open(control_socket)
        try:
            yield Radio(process, hci_socket, control, ready, log)
        finally:
            await control.close()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_DEADLINE_S):
            status = await process.wait()
    assert status == 0, f"the radio exited with {status}:\n{log.read_text()[-4000:]}"
    assert os.listdir(tmp_path) == ["radio.log"]  # sockets and their locks are gone


@pytest.fixture
async def radio(tmp_path: Path) -> AsyncIterator[Radio]:
    async with running_radio(tmp_path) as radio:
        yield radio


# -- the guest's stand-in ---------------------------------------------------------------------


class EventLog(Snooper):
    """Every HCI event the controller sends the host, parsed."""

    def __init__(self) -> None:
        self.events: list[hci.HCI_Event] = []
        self.changed = asyncio.Event()

    def snoop(self, hci_packet: bytes, direction: Snooper.Direction) -> None:
        if direction == Snooper.Direction.CONTROLLER_TO_HOST and hci_packet[0] == hci.HCI_EVENT_PACKET:
            packet = hci.HCI_Packet.from_bytes(hci_packet)
            assert isinstance(packet, hci.HCI_Event)
            self.events.append(packet)
            self.changed.set()

    def of(self, kind: type[hci.HCI_Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def wait_for(self, kind: type[hci.HCI_Event], count: int = 1) -> None:
        async with asyncio.timeout(DEADLINE_S):
            while len(self.of(kind)) < count:
                self.changed.clear()
                await self.changed.wait()


class Guest(AdvertisementLog):
    """A bumble host on the radio's HCI socket in BlueZ's place (see the module docstring)."""

    def __init__(self, transport: Transport, device: Device, log: EventLog) -> None:
        super().__init__(DEADLINE_S)
        self.transport = transport
        self.device = device
        self.log = log
        device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)

    @classmethod
    async def attach(cls, hci_socket: Path) -> Guest:
        async with asyncio.timeout(DEADLINE_S):
            transport = await open_transport(f"unix:{hci_socket}")
            device = Device.with_hci("guest", hci.Address.ANY_RANDOM, transport.source, transport.sink)
            log = EventLog()
            device.host.snooper = log
            await device.power_on()  # HCI Reset first, as the kernel does when btattach attaches
            await device.send_sync_command(
                hci.HCI_LE_Set_Event_Mask_Command(le_event_mask=LINUX_LE_EVENT_MASK)
            )
        return cls(transport, device, log)

    async def detach(self) -> None:
        async with asyncio.timeout(DEADLINE_S):
            await self.transport.close()

    async def scan(self) -> None:
        async with asyncio.timeout(DEADLINE_S):
            await self.device.start_scanning(
                legacy=True, active=True, own_address_type=hci.OwnAddressType.PUBLIC
            )

    def _on_advertisement(self, adv: BumbleAdvertisement) -> None:
        data = adv.data
        uuids = data.get_all(data.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
        names = data.get_all(data.Type.COMPLETE_LOCAL_NAME)
        recognised = advertisement_from_bleak(
            adv.address.to_string(False), adv.rssi, [str(uuid) for group in uuids for uuid in group],
            dict(data.get_all(data.Type.MANUFACTURER_SPECIFIC_DATA)), names[0] if names else None,
        )
        if recognised is not None:
            self.add(recognised)

    async def connect(self, address: str) -> Connection:
        """Connect from the PUBLIC address and wait, as Linux does, for the enhanced event."""
        enhanced = len(self.log.of(hci.HCI_LE_Enhanced_Connection_Complete_Event))
        async with asyncio.timeout(CONNECT_TIMEOUT_S + DEADLINE_S):
            connection = await self.device.connect(
                hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS),
                own_address_type=hci.OwnAddressType.PUBLIC, timeout=CONNECT_TIMEOUT_S,
            )
        await self.log.wait_for(hci.HCI_LE_Enhanced_Connection_Complete_Event, enhanced + 1)
        return connection

    async def read_info(self, connection: Connection) -> protocol.BeaconInfo:
        peer = Peer(connection)
        async with asyncio.timeout(DEADLINE_S):
            found = {}
            for service in await peer.discover_services():
                for characteristic in await peer.discover_characteristics([], service):
                    found[str(characteristic.uuid).lower()] = characteristic
            return protocol.parse_info(bytes(await peer.read_value(found[protocol.INFO_CHAR_UUID])))


@pytest.fixture
async def guest(radio: Radio) -> AsyncIterator[Guest]:
    guest = await Guest.attach(radio.hci_socket)
    await guest.scan()
    yield guest
    await guest.detach()




# -- scanning ---------------------------------------------------------------------------------


async def test_guest_scanning_from_its_public_address_sees_every_beacon_with_jittering_rssi(
    radio: Radio, guest: Guest
) -> None:
    await guest.wait(lambda: all(len(guest.since(0, a)) >= 12 for a in (B1, B2, B3)))
    for beacon_id, address in enumerate((B1, B2, B3), start=1):
        ads = guest.since(0, address)
        assert {(adv.beacon_id, adv.name) for adv in ads} == {(beacon_id, f"SG Beacon {beacon_id}")}
        rssis = [adv.rssi for adv in ads]
        assert len(set(rssis)) > 1, f"{address}: constant RSSI {rssis[0]}: BlueZ would stop reporting it"
        assert abs(statistics.mean(rssis) - RSSI_MEAN) < 3
    status = await radio.control.guest()
    assert status.attached and status.scanning
    assert status.le_event_mask == int.from_bytes(LINUX_LE_EVENT_MASK, "little")


async def test_a_beacon_back_within_the_same_scan_is_reported_again(radio: Radio, guest: Guest) -> None:
    await guest.wait_for(B1)
    assert (await radio.control.set_present(1, False)).present is False
    await guest.assert_silent(B1, [B2, B3])
    mark = guest.mark()
    await radio.control.set_present(1, True)
    await guest.wait_for(B1, count=3, mark=mark)  # the guest never restarted its scan
    assert len({adv.rssi for adv in guest.since(mark, B1)}) > 1


# -- connections ------------------------------------------------------------------------------


async def test_guest_connects_from_its_public_address_reads_info_and_disconnects_without_a_stall(
    radio: Radio, guest: Guest
) -> None:
    await guest.wait_for(B2)
    loop = asyncio.get_running_loop()
    for attempt in range(2):  # connect, read, disconnect; then all of it again
        connection = await guest.connect(B2)
        assert connection.self_address == guest.device.public_address
        # The data went both ways on the public address: VirtualLink, not bumble's LocalLink.
        assert await guest.read_info(connection) == protocol.BeaconInfo(2, firmware="0.1.0")
        assert (await radio.control.guest()).links == (B2,)

        started = loop.time()
        async with asyncio.timeout(DISCONNECT_BUDGET_S):
            await connection.disconnect()
        assert loop.time() - started < DISCONNECT_BUDGET_S, f"attempt {attempt}"
        assert (await radio.control.guest()).links == ()
        mark = guest.mark()
        await guest.wait_for(B2, mark=mark)  # advertising again: ready for the next connect
    # Only the event Linux waits for: the legacy one would stall it ~21 s per connection.
    assert len(guest.log.of(hci.HCI_LE_Enhanced_Connection_Complete_Event)) == 2
    assert guest.log.of(hci.HCI_LE_Connection_Complete_Event) == []


async def test_guest_reads_remote_features_and_version_as_linux_does(radio: Radio, guest: Guest) -> None:
    await guest.wait_for(B3)
    connection = await guest.connect(B3)
    async with asyncio.timeout(DEADLINE_S):
        features = await connection.get_remote_le_features()
        status = await guest.device.send_command(
            hci.HCI_Read_Remote_Version_Information_Command(connection_handle=connection.handle)
        )
    assert features & hci.LeFeatureMask.LE_ENCRYPTION
    assert status.status == hci.HCI_COMMAND_STATUS_PENDING
    await guest.log.wait_for(hci.HCI_Read_Remote_Version_Information_Complete_Event)
    version = guest.log.of(hci.HCI_Read_Remote_Version_Information_Complete_Event)[0]
    assert (version.status, version.connection_handle) == (hci.HCI_SUCCESS, connection.handle)


async def test_an_unknown_async_command_gets_a_command_status_instead_of_silence(
    radio: Radio, guest: Guest
) -> None:
    async with asyncio.timeout(DEADLINE_S):  # bumble's controller would never answer this one
        status = await guest.device.send_command(
            hci.HCI_Read_Clock_Offset_Command(connection_handle=1), check_result=False
        )
    assert status.status == hci.HCI_ErrorCode.UNKNOWN_HCI_COMMAND_ERROR


async def test_a_restarted_guest_replaces_the_old_one_whose_links_drop(radio: Radio) -> None:
    """QEMU killed and started again: a new connection on the HCI socket is a fresh host."""
    first = await Guest.attach(radio.hci_socket)
    await first.scan()
    await first.wait_for(B1)
    await first.connect(B1)
    assert (await radio.control.guest()).links == (B1,)

    guest = await Guest.attach(radio.hci_socket)
    try:
        async with asyncio.timeout(DEADLINE_S):
            await first.transport.source.terminated  # the old host is disconnected
        status = await radio.control.guest()
        assert (status.attached, status.scanning, status.links) == (True, False, ())
        await guest.scan()
        await guest.wait_for(B1)  # the beacon saw its link drop and advertises again
        connection = await guest.connect(B1)
        assert (await guest.read_info(connection)).beacon_id == 1
    finally:
        await guest.detach()
        await first.detach()


async def test_an_hci_reset_drops_the_links_and_stops_the_scan_as_a_reboot_does(
    radio: Radio, guest: Guest
) -> None:
    await guest.wait_for(B2)
    await guest.connect(B2)
    async with asyncio.timeout(DEADLINE_S):
        await guest.device.send_command(hci.HCI_Reset_Command())
    status = await radio.control.guest()
    assert (status.attached, status.scanning, status.links, status.le_event_mask) == (True, False, (), 0x1F)
    mark = guest.mark()
    await guest.device.send_command(hci.HCI_LE_Set_Scan_Enable_Command(le_scan_enable=1, filter_duplicates=0))
    await guest.wait_for(B2, mark=mark)  # the beacon lost its link and advertises again


# -- the control interface --------------------------------------------------------------------


async def test_a_removed_beacon_goes_silent_and_an_added_one_advertises(radio: Radio, guest: Guest) -> None:
    await guest.wait_for(B2)
    await radio.control.remove_beacon(2)
    assert [beacon.beacon_id for beacon in await radio.control.beacons()] == [1, 3]
    await guest.assert_silent(B2, [B1, B3])

    added = await radio.control.add_beacon(42, rssi=-70, name="Lab")
    assert (added.address, added.kind, added.serial) == (beacon_address(42), "python", None)
    await guest.wait_for(added.address, count=5)
    assert {(adv.beacon_id, adv.name) for adv in guest.since(0, added.address)} == {(42, "Lab")}
    connection = await guest.connect(added.address)
    assert (await guest.read_info(connection)).beacon_id == 42


async def test_drop_fraction_thins_then_silences_a_beacon_until_reset(radio: Radio, guest: Guest) -> None:
    await guest.wait_for(B1)
    await radio.control.drop_fraction(1, 0.5)
    mark = guest.mark()
    await guest.wait(lambda: len(guest.since(mark, B3)) >= 60)
    heard = len(guest.since(mark, B1)) / len(guest.since(mark, B3))
    assert 0.2 < heard < 0.8  # about half of B1's packets are lost; none of B3's

    await radio.control.drop_fraction(1, 1.0)
    await guest.assert_silent(B1, [B2, B3])
    await radio.control.drop_fraction(1, 0.0)
    await guest.wait_for(B1, mark=guest.mark())


async def test_rssi_and_distance_move_a_beacon(radio: Radio, guest: Guest) -> None:
    assert (await radio.control.set_rssi(3, -85)).rssi == -85
    mark = guest.mark()
    await guest.wait(lambda: len([a for a in guest.since(mark, B3) if a.rssi <= -77]) >= 10)
    assert abs(statistics.mean(a.rssi for a in guest.since(mark, B3) if a.rssi <= -77) - (-85)) < 3

    near = await radio.control.set_distance(3, 1.0)
    far = await radio.control.set_distance(3, 10.0)
    assert near.rssi == -59.0 and far.rssi == -79.0  # 20 dB per decade: free space


async def test_bad_requests_are_refused_with_a_reason_and_the_radio_carries_on(radio: Radio) -> None:
    with pytest.raises(RadioControlError, match="no virtual beacon 9"):
        await radio.control.set_rssi(9, -70)
    with pytest.raises(RadioControlError, match=r"outside 0\.\.1"):
        await radio.control.drop_fraction(1, 1.5)
    with pytest.raises(RadioControlError, match="already exists"):
        await radio.control.add_beacon(1)
    with pytest.raises(RadioControlError, match="unknown beacon kind"):
        await radio.control.add_beacon(5, kind="zigbee")
    with pytest.raises(RadioControlError, match="python beacon"):
        await radio.control.serial_path(1)
    with pytest.raises(RadioControlError, match="needs the argument 'beacon'"):
        await radio.control.call(Op.PRESENT, present=True)
    assert len(await radio.control.beacons()) == 3


async def test_a_second_radio_on_the_same_socket_refuses_to_start(radio: Radio) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.hil.radio", "--hci-socket", str(radio.hci_socket),
        "--control", str(radio.hci_socket.with_name("other.sock")), "--beacons", "0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(START_DEADLINE_S):
        _out, err = await process.communicate()
    assert process.returncode == 1
    assert b"is in use (another radio?)" in err


# -- sketch beacons ---------------------------------------------------------------------------


async def test_a_sketch_beacon_leaves_on_adv_off_typed_at_its_serial_port_and_returns_on_adv_on(
    sim_binary: Path, tmp_path: Path
) -> None:
    async with running_radio(tmp_path, beacons=1, kind="sketch") as radio:
        sketch = await radio.control.beacon(1)
        assert sketch.kind == "sketch" and sketch.serial is not None
        assert radio.ready["beacons"][0]["serial"] == sketch.serial
        python = await radio.control.add_beacon(2, kind="python")  # a clock for the silence
        guest = await Guest.attach(radio.hci_socket)
        console = SerialConsole(sketch.serial)
        try:
            await guest.scan()
            await guest.wait(lambda: bool(guest.since(0, B1)) and bool(guest.since(0, B2)))
            assert guest.since(0, B1)[0].beacon_id == 1
            assert (await console.command("version")).startswith("ok firmware=")

            connection = await guest.connect(B1)
            assert (await guest.read_info(connection)).beacon_id == 1
            assert "connected=yes" in await console.command("status")
            lost = asyncio.Event()
            connection.on(Connection.EVENT_DISCONNECTION, lambda _reason: lost.set())

            assert await console.command("adv off") == "ok adv=off"
            async with asyncio.timeout(DEADLINE_S):
                await lost.wait()  # the sketch dropped the guest's link as it left
            await guest.assert_silent(B1, [python.address])

            mark = guest.mark()
            assert await console.command("adv on") == "ok adv=on"
            await guest.wait_for(B1, mark=mark)
            assert (await guest.read_info(await guest.connect(B1))).beacon_id == 1
        finally:
            console.close()
            await guest.detach()

