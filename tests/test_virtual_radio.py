"""VirtualRadio against bumble's real host stack and virtual controllers.

No sleeps: every wait is on a condition (advertisements seen, a link lost) under a deadline.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator

import pytest
from bumble import hci
from bumble.device import Device, Peer
from bumble.snoop import Snooper
from helpers import AdvertisementLog, lost_recorder

from appliance.errors import RadioError
from appliance.presence import protocol
from appliance.presence.model import LinkInfo
from appliance_sim import air, python_beacon
from appliance_sim import radio as virtual_radio
from appliance_sim.air import beacon_address
from appliance_sim.controller import VirtualController, VirtualLink, new_device
from appliance_sim.python_beacon import VirtualBeacon
from appliance_sim.radio import VirtualRadio

DEADLINE_S = 5.0
B1, B2, B3 = (beacon_address(beacon_id) for beacon_id in (1, 2, 3))


@pytest.fixture(autouse=True)
def fast_advertising(monkeypatch: pytest.MonkeyPatch) -> None:
    """20 ms, the shortest legal interval: the same behaviour, five times faster tests."""
    monkeypatch.setattr(air, "ADV_INTERVAL_MS", 20.0)


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    radio = VirtualRadio(3, seed=7)
    await radio.start()
    yield radio
    await radio.stop()





async def test_discovers_every_beacon_with_its_id_name_and_service(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait(lambda: {adv.address for adv in rec.ads} == {B1, B2, B3})
    first = {adv.address: adv for adv in reversed(rec.ads)}
    for address, adv in first.items():
        state = radio.beacons[address]
        assert adv.beacon_id == state.beacon_id
        assert adv.name == f"SG Beacon {state.beacon_id}"  # from the real scan response
    assert radio.activity > 0


async def test_rssi_jitters_around_its_base_and_follows_set_rssi(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait_for(B1, count=12)
    values = [adv.rssi for adv in rec.since(0, B1)]
    assert len(set(values)) > 1
    assert abs(statistics.mean(values) - (-60)) < 3

    radio.set_rssi(B1, -80)
    await rec.wait(lambda: len([a for a in rec.since(0, B1) if a.rssi <= -72]) >= 10)
    moved = [adv.rssi for adv in rec.since(0, B1) if adv.rssi <= -72]
    assert abs(statistics.mean(moved) - (-80)) < 3
    assert radio.beacons[B1].rssi == -80


async def test_connect_reads_the_beacon_info(radio: VirtualRadio, rec: AdvertisementLog) -> None:
    await rec.wait_for(B2)
    info = await radio.connect(B2, lost_recorder()[1])
    assert info == LinkInfo(address=B2, beacon_id=2, firmware="0.1.0")


async def test_beacon_leaving_drops_the_link_once_and_stops_advertising(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait_for(B1)
    calls, on_lost, lost = lost_recorder()
    await radio.connect(B1, on_lost)

    await radio.set_present(B1, False)
    async with asyncio.timeout(DEADLINE_S):
        await lost.wait()
    assert calls == [B1]
    assert radio.beacons[B1].present is False
    await rec.assert_silent(B1, [B2, B3])
    assert calls == [B1]


async def test_beacon_returning_advertises_again_and_reconnects(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait_for(B3)
    await radio.set_present(B3, False)
    await rec.assert_silent(B3, [B1, B2])

    mark = rec.mark()
    await radio.set_present(B3, True)
    await rec.wait_for(B3, mark=mark)
    info = await radio.connect(B3, lost_recorder()[1])
    assert info.beacon_id == 3


async def test_concurrent_connects_to_every_beacon_all_succeed(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait(lambda: {adv.address for adv in rec.ads} == {B1, B2, B3})
    infos = await asyncio.gather(*(radio.connect(a, lost_recorder()[1]) for a in (B1, B2, B3)))
    assert [info.beacon_id for info in infos] == [1, 2, 3]


async def test_disconnect_does_not_report_a_loss_and_the_beacon_advertises_again(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait_for(B2)
    calls, on_lost, _lost = lost_recorder()
    await radio.connect(B2, on_lost)
    await radio.disconnect(B2)
    mark = rec.mark()
    await rec.wait_for(B2, mark=mark)
    assert calls == []
    assert (await radio.connect(B2, on_lost)).beacon_id == 2


async def test_identify_write_reaches_the_beacon(radio: VirtualRadio, rec: AdvertisementLog) -> None:
    await rec.wait_for(B1)
    assert radio.identify_count(B1) == 0
    await radio.connect(B1, lost_recorder()[1])
    await radio.identify(B1, 5)
    assert radio.identify_count(B1) == 1
    assert radio.identify_writes(B1) == [5]


async def test_identify_without_a_link_is_a_radio_error(radio: VirtualRadio) -> None:
    with pytest.raises(RadioError, match="connect to it"):
        await radio.identify(B1, 5)


async def test_added_beacon_advertises_and_removed_beacon_goes_silent(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    address = await radio.add_beacon(42, rssi=-70.0, name="Lab")
    assert address == "F0:00:00:00:00:2A"
    await rec.wait_for(address)
    adv = rec.since(0, address)[0]
    assert (adv.beacon_id, adv.name) == (42, "Lab")
    info = await radio.connect(address, lost_recorder()[1])
    assert info.beacon_id == 42

    await radio.remove_beacon(address)
    assert address not in radio.beacons
    await rec.assert_silent(address, [B1, B2, B3])


async def test_adding_an_existing_id_is_refused(radio: VirtualRadio) -> None:
    with pytest.raises(ValueError, match="already exists"):
        await radio.add_beacon(1)


async def test_drop_fraction_one_silences_a_beacon_until_reset(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait_for(B2)
    radio.drop_fraction(B2, 1.0)
    await rec.assert_silent(B2, [B1, B3])
    radio.drop_fraction(B2, 0.0)
    mark = rec.mark()
    await rec.wait_for(B2, mark=mark)


async def test_beacons_refresh_their_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_beacon, "ADV_REFRESH_S", 0.05)
    radio = VirtualRadio(1, seed=7)
    await radio.start()
    rec = AdvertisementLog.listening_to(radio.advertisements())
    try:
        await rec.wait(lambda: any(adv.counter >= 2 for adv in rec.since(0, B1)))
        counters = [adv.counter for adv in rec.since(0, B1)]
        assert counters == sorted(counters)
    finally:
        await radio.stop()
        await rec.task


async def test_connect_to_unknown_address_fails_fast(radio: VirtualRadio) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RadioError, match="has not been seen"):
        await radio.connect("AA:BB:CC:DD:EE:FF", lost_recorder()[1])
    assert loop.time() - started < 0.5


async def test_connect_to_absent_beacon_times_out_and_the_radio_stays_usable(
    monkeypatch: pytest.MonkeyPatch, radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    monkeypatch.setattr(virtual_radio, "CONNECT_TIMEOUT_S", 0.3)
    await rec.wait(lambda: bool(rec.since(0, B1)) and bool(rec.since(0, B2)))
    await radio.set_present(B1, False)
    with pytest.raises(RadioError, match="in range"):
        await radio.connect(B1, lost_recorder()[1])
    # The controller completed the cancelled attempt: the next connect is not "busy".
    assert (await radio.connect(B2, lost_recorder()[1])).beacon_id == 2


async def test_recover_restarts_scanning(radio: VirtualRadio, rec: AdvertisementLog) -> None:
    assert "restarted scanning" in await radio.recover(0)
    mark = rec.mark()
    await rec.wait(lambda: all(rec.since(mark, address) for address in (B1, B2, B3)))


async def test_recover_starts_a_radio_that_is_not_running() -> None:
    radio = VirtualRadio(1, seed=7)
    rec = AdvertisementLog.listening_to(radio.advertisements())
    try:
        assert await radio.recover(1) == "started the virtual radio"
        await rec.wait_for(B1)
    finally:
        await radio.stop()
        await rec.task


async def test_stop_ends_advertisements_and_leaves_no_tasks(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait_for(B1)
    calls, on_lost, _lost = lost_recorder()
    await radio.connect(B1, on_lost)

    await radio.stop()
    async with asyncio.timeout(DEADLINE_S):
        await rec.task
    assert rec.ended
    assert calls == []
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(RadioError, match="not started"):
        await radio.connect(B1, on_lost)


async def test_control_api_rejects_unknown_addresses(radio: VirtualRadio) -> None:
    with pytest.raises(ValueError, match="no virtual beacon"):
        radio.set_rssi("AA:BB:CC:DD:EE:FF", -50)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        radio.drop_fraction(B1, 1.5)


async def test_beacons_report_their_kind_and_their_running_simulation(radio: VirtualRadio) -> None:
    assert {state.kind for state in radio.beacons.values()} == {"python"}
    assert isinstance(radio.simulation(B1), VirtualBeacon)
    assert radio.simulation(B1).identify_writes == []


async def test_the_simulation_of_a_radio_not_started_is_refused() -> None:
    radio = VirtualRadio(1, seed=7)
    with pytest.raises(ValueError, match="start the radio first"):
        radio.simulation(B1)
    with pytest.raises(ValueError, match="no virtual beacon"):
        radio.simulation("AA:BB:CC:DD:EE:FF")


# -- VirtualController against a host that is not bumble's (the virtual rig's guest: Linux) -----


class EventLog(Snooper):
    """The HCI events a controller sends its host."""

    def __init__(self) -> None:
        self.events: list[hci.HCI_Event] = []

    def snoop(self, hci_packet: bytes, direction: Snooper.Direction) -> None:
        if direction == Snooper.Direction.CONTROLLER_TO_HOST and hci_packet[0] == hci.HCI_EVENT_PACKET:
            packet = hci.HCI_Packet.from_bytes(hci_packet)
            assert isinstance(packet, hci.HCI_Event)
            self.events.append(packet)

    def names(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


@pytest.fixture
async def central() -> AsyncIterator[tuple[Device, EventLog, VirtualBeacon]]:
    """A bare bumble host on a VirtualController with beacon 1 on the same link."""
    link = VirtualLink()  # type: ignore[no-untyped-call]
    beacon = VirtualBeacon(link, 1, "SG Beacon 1")
    await beacon.start(present=True)
    controller = VirtualController("central", link, "00:AA:00:00:00:09")
    device = new_device("central", "C0:00:00:00:00:09", controller)
    log = EventLog()
    device.host.snooper = log
    await device.power_on()
    yield device, log, beacon
    await beacon.close()
    await device.power_off()


LINUX_LE_EVENT_MASK = bytes([0x7F, 0x06, 0x08, 0, 0, 0, 0, 0])  # enhanced v1 (bit 9), not v2
LEGACY_LE_EVENT_MASK = bytes([0x1F, 0, 0, 0, 0, 0, 0, 0])  # the power-on default


@pytest.mark.parametrize(("mask", "expected"), [
    (LEGACY_LE_EVENT_MASK, "HCI_LE_Connection_Complete_Event"),
    (LINUX_LE_EVENT_MASK, "HCI_LE_Enhanced_Connection_Complete_Event"),
    (None, "HCI_LE_Enhanced_Connection_Complete_V2_Event"),  # bumble's host unmasks v2 too
])
async def test_a_connection_completes_with_the_newest_event_the_host_unmasked(
    central: tuple[Device, EventLog, VirtualBeacon], mask: bytes | None, expected: str
) -> None:
    """Linux waits for exactly the enhanced event when it unmasked it: the legacy one stalls it."""
    device, log, _beacon = central
    if mask is not None:
        await device.send_sync_command(hci.HCI_LE_Set_Event_Mask_Command(le_event_mask=mask))
    async with asyncio.timeout(DEADLINE_S):
        connection = await device.connect(beacon_address(1), own_address_type=hci.OwnAddressType.PUBLIC)
    completions = [name for name in log.names() if "Connection_Complete" in name]
    assert completions == [expected]
    # From the PUBLIC address, as Linux connects: LE data must carry the connection's address.
    async with asyncio.timeout(DEADLINE_S):
        peer = Peer(connection)
        services = await peer.discover_services([protocol.SERVICE_UUID])
        info = await peer.discover_characteristics([protocol.INFO_CHAR_UUID], services[0])
        assert protocol.parse_info(bytes(await peer.read_value(info[0]))).beacon_id == 1
        await connection.disconnect()


async def test_remote_version_is_answered_and_an_unknown_command_gets_a_status(
    central: tuple[Device, EventLog, VirtualBeacon],
) -> None:
    device, log, _beacon = central
    async with asyncio.timeout(DEADLINE_S):
        connection = await device.connect(beacon_address(1), own_address_type=hci.OwnAddressType.PUBLIC)
        version = await device.send_command(
            hci.HCI_Read_Remote_Version_Information_Command(connection_handle=connection.handle)
        )
        # bumble's controller answers no async command it lacks: a host would wait forever.
        unknown = await device.send_command(
            hci.HCI_Read_Clock_Offset_Command(connection_handle=connection.handle), check_result=False
        )
    assert version.status == hci.HCI_COMMAND_STATUS_PENDING
    assert unknown.status == hci.HCI_ErrorCode.UNKNOWN_HCI_COMMAND_ERROR
    assert "HCI_Read_Remote_Version_Information_Complete_Event" in log.names()
