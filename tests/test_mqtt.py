"""Satellite scanners over MQTT: a real mosquitto on loopback with the password file and ACL the
appliance writes, scanners logging in with the credentials `appliance scanner add` issues, and
the main appliance served on loopback. The one stand-in is the local radio (InjectableRadio).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from helpers import FakeClock, InjectableRadio, add_user, free_port, make_settings, running_server, wait_for

from appliance.app import Appliance, create_app
from appliance.auth import scanners as scanner_auth
from appliance.mqtt import broker, sightings
from appliance.mqtt.client import EMBEDDED_USER, embedded_password_file
from appliance.settings import Settings
from appliance.store.db import Database
from appliance_sim.air import beacon_address
from appliance_sim.printer.broker import StandinBroker

BEACON = "AA:BB:CC:DD:EE:01"
SITE = "lab"


@dataclass
class MqttEnv:
    base: str
    client: httpx.AsyncClient
    clock: FakeClock
    settings: Settings
    app: Appliance
    mosquitto: StandinBroker
    passwords: dict[str, str]  # scanner id -> password, as `appliance scanner add` printed
    radio: InjectableRadio  # the local radio: the stand-in at the boundary

    async def get(self, path: str) -> Any:
        response = await self.client.get(f"{self.base}{path}")
        assert response.status_code == 200, response.text
        return response.json()

    async def device(self, address: str = BEACON) -> dict[str, Any] | None:
        return next((d for d in (await self.get("/devices"))["discovered"] if d["id"] == address),
                    None)

    async def mqtt(self) -> dict[str, Any]:
        status: dict[str, Any] = (await self.get("/status"))["mqtt"]
        return status

    def login(self, user: str, password: str | None = None) -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", self.mosquitto.port, username=user,
                              password=password or self.passwords[user], timeout=5)

    def appliance_login(self) -> aiomqtt.Client:
        return self.login(EMBEDDED_USER, embedded_password_file(self.settings).read_text().strip())


async def _add_scanner(data_dir: Path, name: str, area: str | None = None) -> str:
    db = await Database.open(data_dir / "appliance.db")
    try:
        return await scanner_auth.add_scanner(db, name, area=area, now=datetime.now(UTC))
    finally:
        await db.close()


@pytest.fixture
async def mqtt_env(tmp_path: Path) -> AsyncIterator[MqttEnv]:
    data = tmp_path / "data"
    port = free_port()
    settings = make_settings(data, mqtt_embedded=True, mqtt_embedded_port=port, site=SITE,
                             area="desk", mqtt_homeassistant=True)
    await add_user(data)
    passwords = {"hall": await _add_scanner(data, "hall"),
                 "shop": await _add_scanner(data, "shop", "workshop")}
    db = await Database.open(settings.db_path)
    try:  # the files the app keeps up to date, there before mosquitto first reads them
        broker.write_files(settings, await scanner_auth.all_scanners(db))
    finally:
        await db.close()
    where = broker.directory(settings)
    mosquitto = StandinBroker(
        tmp_path, None, {}, port, password_file=where / broker.PASSWORD_FILE,
        extra=f"acl_file {where / broker.ACL_FILE}\npid_file {where / broker.MOSQUITTO_PID}\n")
    await mosquitto.start()
    clock = FakeClock()
    radio = InjectableRadio()
    app = create_app(settings, radio=radio, clock=clock)
    try:
        async with running_server(app) as base, httpx.AsyncClient(timeout=10) as client:
            login = await client.post(f"{base}/api/session",
                                      json={"username": "alice", "password": "correct horse battery"})
            assert login.status_code == 200
            env = MqttEnv(base, client, clock, settings, app, mosquitto, passwords, radio)
            await wait_for(lambda: _connected(env), what="the appliance on its broker")
            yield env
    finally:
        await mosquitto.stop()


async def _connected(env: MqttEnv) -> bool:
    return bool((await env.mqtt())["connected"])


def _batch(*sighted: tuple[str, int]) -> bytes:
    return sightings.encode([sightings.Sighting(1, address, rssi, datetime.now(UTC))
                             for address, rssi in sighted])


async def _send_rounds(env: MqttEnv, clients: dict[str, aiomqtt.Client], rssi: dict[str, int],
                       seconds: float) -> None:
    """Each scanner sends a batch every half second of the appliance's clock."""
    handled = (await env.mqtt())["batches"]
    for _ in range(int(seconds / 0.5)):
        for scanner, client in clients.items():
            await client.publish(sightings.sightings_topic(SITE, scanner),
                                 _batch((BEACON, rssi[scanner])), qos=1)
        handled += len(clients)
        await wait_for(lambda n=handled: _batches_at_least(env, n), what="the batches handled")
        env.clock.advance(0.5)


async def _batches_at_least(env: MqttEnv, count: int) -> bool:
    return int((await env.mqtt())["batches"]) >= count


async def test_no_broker_configured_means_no_mqtt_and_devices_keep_every_field(
        logged_in: Any) -> None:
    status = (await logged_in.client.get(f"{logged_in.base}/status")).json()
    assert status["mqtt"]["configured"] is False and status["mqtt"]["broker"] is None
    assert logged_in.app.services.mqtt.client is None
    scanners = (await logged_in.client.get(f"{logged_in.base}/api/scanners")).json()
    assert scanners["configured"] is False
    assert [(s["id"], s["area"], s["online"]) for s in scanners["scanners"]] == [("local", "main", True)]
    device = await wait_for(lambda: logged_in.device(beacon_address(1)), what="a beacon")
    assert {"id", "name", "rssi", "isPaired", "isConnected", "beaconId", "state", "requiresTap",
            "rssiSmoothed", "userId", "userName", "firstSeen", "lastSeen"} <= set(device)
    assert (device["area"], device["scanner"]) == ("main", "local")


async def test_a_beacon_follows_its_area_between_scanners_and_does_not_flap(
        mqtt_env: MqttEnv) -> None:
    async with mqtt_env.login("hall") as hall, mqtt_env.login("shop") as shop:
        clients = {"hall": hall, "shop": shop}
        await _send_rounds(mqtt_env, clients, {"hall": -55, "shop": -85}, 3)
        device = await mqtt_env.device()
        assert device is not None and (device["area"], device["scanner"]) == ("hall", "hall")
        assert device["rssi"] == -55
        # Between the two rooms: within the margin, for a minute; it stays where it was.
        for step in range(20):
            await _send_rounds(mqtt_env, clients, {"hall": -70 - step % 3, "shop": -68 - step % 2}, 3)
            device = await mqtt_env.device()
            assert device is not None and device["area"] == "hall"
        # Into the workshop: there after the sustained margin.
        await _send_rounds(mqtt_env, clients, {"hall": -88, "shop": -52}, 10)
        device = await mqtt_env.device()
        assert device is not None and (device["area"], device["scanner"]) == ("workshop", "shop")
    listed = (await mqtt_env.get("/api/scanners"))["scanners"][1:]  # after the local radio
    assert [(s["id"], s["area"], s["beaconCount"]) for s in listed] == [
        ("hall", "hall", 1), ("shop", "workshop", 1)]
    assert all(s["lastSeen"] for s in listed)


async def test_bad_batches_are_dropped_counted_and_never_break_the_appliance(
        mqtt_env: MqttEnv) -> None:
    async with mqtt_env.appliance_login() as anyone, mqtt_env.login("hall") as hall:
        await anyone.publish(sightings.sightings_topic(SITE, "ghost"), _batch((BEACON, -50)), qos=1)
        topic = sightings.sightings_topic(SITE, "hall")
        for payload in (b"{not json", b"[]", json.dumps({"sightings": [{"beacon": 1}]}).encode(),
                        _batch((BEACON, 90)), b"x" * (sightings.MAX_PAYLOAD_BYTES + 1)):
            await hall.publish(topic, payload, qos=1)
        await wait_for(lambda: _dropped(mqtt_env, 5), what="the bad batches counted")
        for _ in range(40):  # a flood: 40 batches at one instant of the appliance's clock
            await hall.publish(topic, _batch((BEACON, -60)), qos=1)
        # The burst allows 20 batches; the 5 bad ones of hall's took their share.
        await wait_for(lambda: _dropped(mqtt_env, 6 + 25), what="the flood counted")
    status = await mqtt_env.mqtt()
    assert status["dropped"] == {"unknown_scanner": 1, "malformed": 3, "oversized": 1,
                                 "absurd_rssi": 1, "flood": 25}, status
    assert status["batches"] == 15
    assert status["errors"] == 0 and status["connected"] is True
    device = await mqtt_env.device()
    assert device is not None and device["rssi"] == -60  # the good batches did count


async def _dropped(env: MqttEnv, count: int) -> bool:
    return sum((await env.mqtt())["dropped"].values()) >= count


async def test_a_revoked_scanner_is_dropped_at_once_and_refused_by_the_broker(
        mqtt_env: MqttEnv) -> None:
    async with mqtt_env.login("shop") as shop:
        await shop.publish(sightings.sightings_topic(SITE, "shop"), _batch((BEACON, -60)), qos=1)
        await wait_for(mqtt_env.device, what="the shop's sighting")
        db = await Database.open(mqtt_env.settings.db_path)  # as `appliance scanner revoke` does
        try:
            await scanner_auth.revoke_scanner(db, "shop")
        finally:
            await db.close()
        await shop.publish(sightings.sightings_topic(SITE, "shop"), _batch((BEACON, -61)), qos=1)
        await wait_for(lambda: _dropped(mqtt_env, 1), what="the revoked scanner's batch dropped")
    listed = (await mqtt_env.get("/api/scanners"))["scanners"]
    assert [s["id"] for s in listed] == ["local", "hall"]

    async def refused() -> bool:
        mqtt_env.clock.advance(1.0)  # the watcher rewrites the broker's files and reloads it
        try:
            async with mqtt_env.login("shop"):
                return False
        except aiomqtt.MqttCodeError:
            return True

    await wait_for(refused, what="the broker refusing the revoked scanner")
    acl = (broker.directory(mqtt_env.settings) / broker.ACL_FILE).read_text()
    assert "user shop" not in acl and "user hall" in acl
    async with mqtt_env.login("hall"):  # the others still get in
        pass


async def test_a_scanner_process_forwards_its_radio_and_its_death_is_noticed_by_its_last_will(
        mqtt_env: MqttEnv, tmp_path: Path) -> None:
    password_file = tmp_path / "hall-password"
    password_file.write_text(mqtt_env.passwords["hall"] + "\n")
    password_file.chmod(0o600)
    env = {**os.environ, "APPLIANCE_ROLE": "scanner", "APPLIANCE_SITE": SITE,
           "APPLIANCE_MQTT_URL": f"mqtt://hall@127.0.0.1:{mqtt_env.mosquitto.port}",
           "APPLIANCE_MQTT_PASSWORD_FILE": str(password_file), "APPLIANCE_RADIO": "virtual",
           "APPLIANCE_VIRTUAL_BEACONS": "2", "APPLIANCE_DATA_DIR": str(tmp_path / "scanner")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "serve", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        async def heard() -> dict[str, Any] | None:
            mqtt_env.clock.advance(0.5)  # the appliance's flood bucket refills on its clock
            device = await mqtt_env.device(beacon_address(1))
            return device if device and device["scanner"] == "hall" else None

        device = await wait_for(heard, within=30, what="the scanner's beacon on the appliance")
        assert device["area"] == "hall" and device["state"] == "discovered"
        listed = (await mqtt_env.get("/api/scanners"))["scanners"]
        assert listed[1]["id"] == "hall"
        assert listed[1]["online"] is True and listed[1]["beaconCount"] >= 1
        assert not (tmp_path / "scanner").exists()  # a scanner keeps no database
        process.send_signal(signal.SIGKILL)  # no goodbye: the broker sends its last-will
        await process.wait()

        async def offline() -> bool:
            scanners = (await mqtt_env.get("/api/scanners"))["scanners"]
            return scanners[1]["online"] is False

        await wait_for(offline, what="the last-will noticed")
        device = await mqtt_env.device(beacon_address(1))
        assert device is not None and device["area"] is None  # no scanner holds it now
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def test_the_broker_files_hold_hashes_only_and_are_private(mqtt_env: MqttEnv) -> None:
    where = broker.directory(mqtt_env.settings)
    passwd = (where / broker.PASSWORD_FILE).read_text()
    assert all(password not in passwd for password in mqtt_env.passwords.values())
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["appliance", "hall", "shop"]
    for name in (broker.PASSWORD_FILE, broker.ACL_FILE, "appliance-password"):
        assert (where / name).stat().st_mode & 0o777 == 0o600
    # Written again only when something changed.
    mtime = (where / broker.PASSWORD_FILE).stat().st_mtime_ns
    db = await Database.open(mqtt_env.settings.db_path)
    try:
        assert broker.write_files(mqtt_env.settings, await scanner_auth.all_scanners(db)) is False
    finally:
        await db.close()
    assert (where / broker.PASSWORD_FILE).stat().st_mtime_ns == mtime
    await asyncio.sleep(0)


@dataclass
class Heard:
    messages: list[tuple[str, bytes, bool]]

    def last(self, topic: str) -> bytes | None:
        return next((payload for t, payload, _r in reversed(self.messages) if t == topic), None)

    def count(self, topic: str) -> int:
        return sum(t == topic for t, _p, _r in self.messages)


@contextlib.asynccontextmanager
async def _listening(env: MqttEnv, *topics: str) -> AsyncIterator[Heard]:
    heard = Heard([])
    async with env.appliance_login() as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                heard.messages.append((message.topic.value, payload, message.retain))

        task = asyncio.create_task(read())
        try:
            yield heard
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_home_assistant_discovers_a_paired_beacon_and_forgets_it_when_unpaired(
        mqtt_env: MqttEnv) -> None:
    discovery = mqtt_env.app.services.mqtt.discovery
    config_topic, state_topic, attributes_topic = discovery.beacon_topics(BEACON)
    mqtt_env.radio.refuse.add(BEACON)  # out of the local radio's reach: no GATT link
    async with mqtt_env.login("hall") as hall:
        await hall.publish(sightings.sightings_topic(SITE, "hall"), _batch((BEACON, -60)), qos=1)
        await wait_for(mqtt_env.device, what="the beacon")
        paired = await mqtt_env.client.post(f"{mqtt_env.base}/pair", json={
            "deviceId": BEACON, "userId": "u1", "userName": "Ann"})
        assert paired.status_code == 200, paired.text
        async with _listening(mqtt_env, "homeassistant/#", f"appliance/{SITE}/#") as heard:
            await wait_for(lambda: heard.last(state_topic), what="the beacon's state")
            config = json.loads(heard.last(config_topic) or b"{}")
            # What Home Assistant's MQTT device_tracker requires, and what we promise.
            assert config["unique_id"] and config["state_topic"] == state_topic
            assert (config["payload_home"], config["payload_not_home"]) == ("home", "not_home")
            assert config["availability_topic"] == f"appliance/{SITE}/status"
            assert config["device"]["identifiers"] and config["source_type"] == "bluetooth_le"
            assert config["name"] == "Ann"
            assert heard.last(state_topic) == b"home"
            assert json.loads(heard.last(attributes_topic) or b"{}")["area"] == "hall"
            assert heard.last(f"appliance/{SITE}/status") == b"online"
            assert all(retained for t, _p, retained in heard.messages if t == config_topic)
            # More sightings, nothing changed: no new state.
            states = heard.count(state_topic)
            start = (await mqtt_env.mqtt())["batches"]
            for _ in range(5):
                await hall.publish(sightings.sightings_topic(SITE, "hall"), _batch((BEACON, -61)),
                                   qos=1)
                mqtt_env.clock.advance(0.5)
            # All five handled before time moves on (a late one would count as a sighting).
            await wait_for(lambda: _batches_at_least(mqtt_env, start + 5), what="the batches")
            assert heard.count(state_topic) == states
            # Away: not_home.
            mqtt_env.clock.advance(mqtt_env.settings.away_after_s + 5)
            await wait_for(lambda: heard.last(state_topic) == b"not_home", what="not_home")
            unpaired = await mqtt_env.client.post(f"{mqtt_env.base}/unpair", json={"deviceId": BEACON})
            assert unpaired.status_code == 200
            await wait_for(lambda: heard.last(config_topic) == b"", what="the empty config")
