"""The firmware itself as a simulated beacon: the host-built sketch (beacon-sim) on VirtualRadio's link.

The sketch's BLE calls are bridged to a bumble device; its Serial is a pty, typed at with pyserial
as the hardware-in-the-loop rig does. No sleeps: every wait is on a condition under a deadline.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import AdvertisementLog, FakeClock, SerialConsole, lost_recorder, make_settings, wait_for

from appliance.errors import RadioError
from appliance.presence import protocol
from appliance.presence.model import BeaconView, LinkInfo, PresenceState
from appliance.presence.service import PresenceService
from appliance.store.db import Database
from appliance_sim import air
from appliance_sim import radio as virtual_radio
from appliance_sim.air import beacon_address
from appliance_sim.python_beacon import PythonBeacons
from appliance_sim.radio import VirtualRadio
from appliance_sim.sketch_beacon import SketchBeacon, SketchBeaconFactory

ROOT = Path(__file__).resolve().parent.parent
VERSION_H = ROOT / "firmware" / "beacon" / "version.h"
DEADLINE_S = 5.0
SKETCH_ID, PYTHON_ID = 7, 9
SKETCH, PYTHON = beacon_address(SKETCH_ID), beacon_address(PYTHON_ID)
B1 = beacon_address(1)


def firmware_version() -> str:
    text = VERSION_H.read_text()
    parts = [re.search(rf"#define FW_VERSION_{part} (\d+)", text) for part in ("MAJOR", "MINOR", "PATCH")]
    assert all(parts), f"{VERSION_H} no longer defines FW_VERSION_MAJOR/MINOR/PATCH"
    return ".".join(match.group(1) for match in parts if match)


@pytest.fixture(autouse=True)
def fast_advertising(monkeypatch: pytest.MonkeyPatch) -> None:
    """20 ms, the shortest legal interval: the same behaviour, five times faster tests."""
    monkeypatch.setattr(air, "ADV_INTERVAL_MS", 20.0)


@pytest.fixture
async def radio(sim_binary: Path) -> AsyncIterator[VirtualRadio]:
    """Python beacon 1 and, next to it, the sketch as beacon 7."""
    radio = VirtualRadio(1, seed=7)
    await radio.start()
    await radio.add_beacon(SKETCH_ID, factory=SketchBeaconFactory(sim_binary))
    yield radio
    await radio.stop()


@pytest.fixture
def sketch(radio: VirtualRadio) -> SketchBeacon:
    beacon = radio.simulation(SKETCH)
    assert isinstance(beacon, SketchBeacon)
    return beacon


@pytest.fixture
async def console(sketch: SketchBeacon) -> AsyncIterator[SerialConsole]:
    assert sketch.serial_path is not None
    console = SerialConsole(sketch.serial_path)
    yield console
    console.close()





async def test_radio_discovers_the_sketch_beacon_with_its_id_next_to_a_python_beacon(
    radio: VirtualRadio, rec: AdvertisementLog, sketch: SketchBeacon
) -> None:
    await rec.wait(lambda: bool(rec.since(0, SKETCH)) and bool(rec.since(0, B1)))
    first = rec.since(0, SKETCH)[0]
    assert (first.beacon_id, first.counter, first.uptime_min) == (SKETCH_ID, 0, 0)
    assert first.name == protocol.DEFAULT_LOCAL_NAME  # from the sketch's scan response
    # On air exactly as the sketch built it, and as protocol.py defines it.
    payload = protocol.BeaconPayload(SKETCH_ID, counter=0, uptime_min=0)
    assert sketch.advertising_data == protocol.advertising_data(payload)
    assert sketch.scan_response_data == protocol.scan_response_data(protocol.DEFAULT_LOCAL_NAME)
    assert radio.beacons[SKETCH].kind == "sketch"
    assert radio.beacons[B1].kind == "python"


async def test_connect_reads_info_as_the_sketch_defines_it(
    radio: VirtualRadio, rec: AdvertisementLog, sketch: SketchBeacon
) -> None:
    await rec.wait_for(SKETCH)
    info = await radio.connect(SKETCH, lost_recorder()[1])
    assert info == LinkInfo(address=SKETCH, beacon_id=SKETCH_ID, firmware=firmware_version())
    assert sketch.values[protocol.INFO_CHAR_UUID] == protocol.BeaconInfo(
        SKETCH_ID, firmware=firmware_version()).pack()


async def test_adv_off_typed_on_the_pty_makes_the_beacon_leave_and_adv_on_brings_it_back(
    radio: VirtualRadio, rec: AdvertisementLog, console: SerialConsole
) -> None:
    await rec.wait_for(SKETCH)
    calls, on_lost, lost = lost_recorder()
    await radio.connect(SKETCH, on_lost)
    assert "connected=yes" in await console.command("status")

    assert await console.command("adv off") == "ok adv=off"
    async with asyncio.timeout(DEADLINE_S):
        await lost.wait()
    assert calls == [SKETCH]
    await rec.assert_silent(SKETCH, [B1])
    assert "adv=off connected=no" in await console.command("status")

    mark = len(rec.ads)
    assert await console.command("adv on") == "ok adv=on"
    await rec.wait_for(SKETCH, mark=mark)
    assert rec.since(mark, SKETCH)[0].counter == 1  # fresh data each time it goes on air
    assert (await radio.connect(SKETCH, on_lost)).beacon_id == SKETCH_ID
    assert calls == [SKETCH]


async def test_version_over_the_pty_matches_version_h(console: SerialConsole) -> None:
    expected = f"ok firmware={firmware_version()} protocol={protocol.PROTOCOL_VERSION}"
    assert await console.command("version") == expected


async def test_id_typed_on_the_pty_changes_the_advertised_id_and_info(
    radio: VirtualRadio, rec: AdvertisementLog, console: SerialConsole
) -> None:
    await rec.wait_for(SKETCH)
    assert await console.command("id 300") == "ok id=300"
    await rec.wait(lambda: any(adv.beacon_id == 300 for adv in rec.since(0, SKETCH)))
    assert (await radio.connect(SKETCH, lost_recorder()[1])).beacon_id == 300


async def test_identify_write_blinks_the_sketchs_led(
    radio: VirtualRadio, rec: AdvertisementLog, sketch: SketchBeacon
) -> None:
    await rec.wait_for(SKETCH)
    await radio.connect(SKETCH, lost_recorder()[1])
    assert sketch.led is False
    await radio.identify(SKETCH, 2)
    await sketch.wait_until(lambda: sketch.led)
    await sketch.wait_until(lambda: not sketch.led)  # 2 Hz: off again after 250 ms
    assert radio.identify_writes(SKETCH) == [2]


async def test_set_present_drives_the_sketch_through_its_serial_port(
    radio: VirtualRadio, rec: AdvertisementLog
) -> None:
    await rec.wait_for(SKETCH)
    await radio.set_present(SKETCH, False)
    await rec.assert_silent(SKETCH, [B1])
    mark = len(rec.ads)
    await radio.set_present(SKETCH, True)
    await rec.wait_for(SKETCH, mark=mark)


async def test_a_radio_of_sketch_beacons_hosts_a_python_one_too(sim_binary: Path) -> None:
    radio = VirtualRadio(2, seed=7, beacon_factory=SketchBeaconFactory(sim_binary))
    await radio.start()
    rec = AdvertisementLog.listening_to(radio.advertisements())
    try:
        await radio.add_beacon(PYTHON_ID, factory=PythonBeacons())
        addresses = {beacon_address(1), beacon_address(2), PYTHON}
        await rec.wait(lambda: all(rec.since(0, address) for address in addresses))
        assert {address: rec.since(0, address)[0].beacon_id for address in addresses} == {
            beacon_address(1): 1, beacon_address(2): 2, PYTHON: PYTHON_ID}
        assert {state.kind for state in radio.beacons.values()} == {"sketch", "python"}
    finally:
        await radio.stop()
        await rec.task


async def test_a_sketch_beacon_started_absent_never_goes_on_air(sim_binary: Path) -> None:
    radio = VirtualRadio(1, seed=7)
    address = await radio.add_beacon(SKETCH_ID, factory=SketchBeaconFactory(sim_binary))
    await radio.set_present(address, False)  # before start: the sketch reads `adv off` first
    await radio.start()
    rec = AdvertisementLog.listening_to(radio.advertisements())
    try:
        await rec.assert_silent(address, [B1])
        await radio.set_present(address, True)
        await rec.wait_for(address)
    finally:
        await radio.stop()
        await rec.task


async def test_close_stops_the_simulator_cleanly(radio: VirtualRadio, sketch: SketchBeacon) -> None:
    assert sketch.running
    await radio.stop()
    assert sketch.returncode == 0  # also: no leak or sanitizer report at exit
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_missing_simulator_is_a_radio_error_that_says_how_to_build_it(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    factory = SketchBeaconFactory(tmp_path / "beacon-sim")
    with pytest.raises(RadioError, match=r"make -C firmware sim"):
        await radio.add_beacon(8, factory=factory)
    assert beacon_address(8) not in radio.beacons


async def test_a_command_to_a_stopped_sketch_says_to_start_the_radio(sim_binary: Path) -> None:
    radio = VirtualRadio(0, beacon_factory=SketchBeaconFactory(sim_binary))
    await radio.start()
    await radio.add_beacon(5)
    beacon = radio.simulation(beacon_address(5))
    assert isinstance(beacon, SketchBeacon)
    await radio.stop()
    with pytest.raises(RadioError, match="start the virtual radio"):
        await beacon.command("status")


async def test_presence_service_follows_the_sketch_leaving_and_returning_within_the_window(
    sim_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HIL scenario "beacon leaves (adv off) and returns within the window", on the sketch."""
    monkeypatch.setattr(virtual_radio, "CONNECT_TIMEOUT_S", 0.3)  # attempts while it is away
    settings = make_settings(tmp_path)
    clock = FakeClock()
    db = await Database.open(tmp_path / "appliance.db")
    radio = VirtualRadio(0, beacon_factory=SketchBeaconFactory(sim_binary))
    await radio.add_beacon(SKETCH_ID)
    presence = PresenceService(settings, db, radio, clock)
    await presence.start()

    def view() -> BeaconView:
        found = presence.tracker.view(SKETCH)
        assert found is not None
        return found

    sketch = radio.simulation(SKETCH)
    assert isinstance(sketch, SketchBeacon) and sketch.serial_path is not None
    console = SerialConsole(sketch.serial_path)
    try:
        await wait_for(lambda: presence.tracker.view(SKETCH) is not None, what="discovery")
        await presence.pair(SKETCH, "u1", "Alice")
        await wait_for(lambda: view().linked, what="the GATT link")
        assert "connected=yes connections=1" in await console.command("status")

        assert await console.command("adv off") == "ok adv=off"
        await wait_for(lambda: not view().linked, what="the link lost")
        clock.advance(settings.away_after_s + 1)
        await wait_for(lambda: view().state is PresenceState.AWAY, what="away")

        assert await console.command("adv on") == "ok adv=on"

        def back_after_a_second_more() -> bool:
            clock.advance(1)  # the connect backoff (5 s doubling) runs on the service's clock
            return view().state is PresenceState.CONNECTED and view().linked

        await wait_for(back_after_a_second_more, within=10, what="reconnected without a tap")
        assert view().state is PresenceState.CONNECTED  # well inside the 30-minute window
        assert "connected=yes connections=2" in await console.command("status")
    finally:
        console.close()
        await presence.stop()
        await db.close()
