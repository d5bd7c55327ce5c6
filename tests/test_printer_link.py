"""The printer link against the stand-in printer: Debian's mosquitto with a TLS listener and a
password file, the printer player on it, and a TLS camera server sending real JPEGs.

Nothing is faked inside the appliance: the app runs on hypercorn, its MQTT and camera clients
talk TLS over loopback, browsers are real Socket.IO clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import shutil
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import Browser, FakeClock, add_user, make_settings, running_server, wait_for

from appliance.app import create_app
from appliance.printer.backoff import Backoff
from appliance.printer.errors import write_access_code
from appliance.printer.mqtt import MqttLink
from appliance.printer.trust import PrinterTrust
from appliance.store.db import Database
from appliance_sim.printer.standin import Standin
from appliance_sim.radio import VirtualRadio

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path(
    "/usr/sbin/mosquitto").exists(), reason="needs mosquitto (apt-get install mosquitto)")

CODE = "Zq7Kp9Xw"  # the stand-in's access code: a test greps for it everywhere
PASSWORD = "correct horse battery"


@dataclass
class PrinterEnv:
    base: str
    client: httpx.AsyncClient
    standin: Standin
    data_dir: Path
    answers: list[str]
    clock: FakeClock  # the app's: the links sleep out their backoff on it

    async def get(self, path: str) -> Any:
        response = await self.client.get(f"{self.base}{path}")
        self.answers.append(response.text)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, path: str, body: Any) -> httpx.Response:
        response = await self.client.post(f"{self.base}{path}", json=body)
        self.answers.append(response.text)
        return response

    async def printer_status(self) -> dict[str, Any]:
        status: dict[str, Any] = (await self.get("/status"))["printer"]
        return status

    @property
    def cookie(self) -> str:
        return f"appliance_session={self.client.cookies['appliance_session']}"

    async def retrying(self, check: Awaitable[bool]) -> bool:
        """``check``, after a link that waits out its backoff was let try again: the fake clock
        jumps past the delay (it moves only then, so frames stored per image_delay stay put)."""
        status = await self.printer_status()
        delays = [status[link]["retryInS"] for link in ("mqtt", "camera")
                  if not status[link]["connected"] and status[link]["retryInS"]]
        if delays:
            self.clock.advance(max(delays))
        return await check


@contextlib.asynccontextmanager
async def start_env(tmp_path: Path, *, code: str = CODE, developer_mode: bool = True,
                    **changes: Any) -> AsyncIterator[PrinterEnv]:
    async with running_standin(tmp_path, developer_mode=developer_mode) as standin:
        data = tmp_path / "data"
        data.mkdir()
        write_access_code(data / "printer-access-code", code)
        await add_user(data)
        async with app_on(standin, data, **changes) as env:
            yield env


@contextlib.asynccontextmanager
async def running_standin(tmp_path: Path, *, developer_mode: bool = True) -> AsyncIterator[Standin]:
    standin = Standin(tmp_path / "standin", CODE, frame_interval_s=0.2,
                      developer_mode=developer_mode)
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()


@contextlib.asynccontextmanager
async def app_on(standin: Standin, data: Path, *, clock: FakeClock | None = None,
                 **changes: Any) -> AsyncIterator[PrinterEnv]:
    """The app linked to ``standin``, its data in ``data`` (a user and the access code there),
    logged in; leaving stops the app, as a restart would."""
    settings = make_settings(data, **{
        "printer_host": "127.0.0.1", "printer_serial": standin.serial,
        "printer_mqtt_port": standin.mqtt_port, "printer_camera_port": standin.camera.port,
        **changes})
    clock = clock or FakeClock()
    app = create_app(settings, radio=VirtualRadio(0, seed=1), clock=clock)
    answers: list[str] = []
    async with running_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        login = await client.post(f"{base}/api/session",
                                  json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        yield PrinterEnv(base, client, standin, data, answers, clock)


@pytest.fixture
async def penv(tmp_path: Path) -> AsyncIterator[PrinterEnv]:
    async with start_env(tmp_path) as env:
        yield env


async def connect_browser(env: PrinterEnv) -> Browser:
    browser = Browser()
    await browser.client.connect(env.base, headers={"Cookie": env.cookie, "Origin": env.base},
                                 transports=["websocket"], wait_timeout=10)
    return browser


async def count(env: PrinterEnv, table: str) -> int:
    db = await Database.open(env.data_dir / "appliance.db")
    row = await db.fetch_one(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - a fixed table name
    await db.close()
    return int(row[0]) if row else 0


async def statuses(env: PrinterEnv) -> list[str]:
    db = await Database.open(env.data_dir / "appliance.db")
    rows = await db.fetch_all("SELECT status FROM status ORDER BY id")
    await db.close()
    return [row["status"] for row in rows]


async def api_state(env: PrinterEnv) -> dict[str, Any]:
    state: dict[str, Any] = await env.get("/api/printer")
    return state


async def test_state_and_frames_reach_the_api_and_a_browser(penv: PrinterEnv) -> None:
    async def idle() -> bool:
        state = await api_state(penv)
        return state["connected"] and state["state"] == "IDLE"

    await wait_for(idle, within=20, what="the stand-in's full report in /api/printer")
    state = await api_state(penv)
    assert state["job"] == "stand-in benchy.3mf" and state["lightOn"] is False
    assert state["nozzleTemp"] == 24.0 and state["lastSeen"].endswith("Z")
    browser = await connect_browser(penv)
    try:
        await wait_for(lambda: browser.of("printer2v") and len(browser.of("image2v")) >= 3,
                       within=20, what="printer2v and camera frames in the browser")
        assert browser.of("printer2v")[0]["state"] == "IDLE"
        frame = browser.of("image2v")[-1]
        assert isinstance(frame["image"], bytes) and frame["image"].startswith(b"\xff\xd8\xff")
        assert frame["image"].endswith(b"\xff\xd9") and frame["mime"] == "image/jpeg"
        status = await penv.printer_status()
        assert status["mqtt"]["connected"] and status["camera"]["connected"]
        assert status["camera"]["frames"] >= 3 and status["tls"]["pinned"]
        # The fake clock stands still: one frame per image_delay reaches the SD card, not each.
        assert await count(penv, "images") == 1
    finally:
        await browser.client.disconnect()


async def test_partial_reports_merge_and_state_changes_reach_the_status_history(
        penv: PrinterEnv) -> None:
    await wait_for(lambda: penv.standin.printer.requests, within=20, what="the app's pushall")
    await wait_for(lambda: _connected(penv), within=20, what="the MQTT link")
    browser = await connect_browser(penv)
    try:
        await penv.standin.printer.partial(gcode_state="RUNNING", layer_num=3, total_layer_num=10,
                                           mc_percent=30)
        await penv.standin.printer.partial(nozzle_temper=215.5)

        async def merged() -> bool:
            state = await api_state(penv)
            return state["layer"] == 3 and state["nozzleTemp"] == 215.5

        await wait_for(merged, within=10, what="both partial reports merged")
        state = await api_state(penv)
        assert (state["state"], state["progress"], state["totalLayers"]) == ("RUNNING", 30, 10)
        assert state["job"] == "stand-in benchy.3mf"  # from the full report, kept
        await wait_for(lambda: any(s["status"] == "RUNNING 30% layer 3/10"
                                   for s in browser.of("status2v")), within=10, what="status2v")
        # Many reports, few rows: a temperature report alone writes nothing.
        history = await statuses(penv)
        assert history.count("RUNNING 30% layer 3/10") == 1
        before = len(history)
        for temp in (216, 217, 218):
            await penv.standin.printer.partial(nozzle_temper=float(temp))
        await wait_for(lambda: _nozzle(penv, 218.0), within=10, what="the last temperature")
        assert len(await statuses(penv)) == before
    finally:
        await browser.client.disconnect()


async def _connected(env: PrinterEnv) -> bool:
    async def connected() -> bool:
        return bool((await api_state(env))["connected"])
    return await env.retrying(connected())


async def _nozzle(env: PrinterEnv, value: float) -> bool:
    return bool((await api_state(env))["nozzleTemp"] == value)


async def test_the_light_switches_through_ledctrl(penv: PrinterEnv) -> None:
    await wait_for(lambda: _connected(penv), within=20, what="the MQTT link")
    response = await penv.post("/api/printer/light", {"on": True})
    assert response.status_code == 200, response.text
    assert response.json()["lightOn"] is True
    await wait_for(lambda: _light(penv, True), within=10, what="lightOn true")
    [ledctrl] = [r["system"] for r in penv.standin.printer.requests if "system" in r]
    assert ledctrl["command"] == "ledctrl" and ledctrl["led_mode"] == "on"
    bad = await penv.post("/api/printer/light", {"on": "maybe"})
    assert bad.status_code == 422


async def _light(env: PrinterEnv, on: bool) -> bool:
    return bool((await api_state(env))["lightOn"] is on)


async def test_a_refused_command_is_reported_once_not_retried(tmp_path: Path) -> None:
    async with start_env(tmp_path, developer_mode=False) as penv:
        await wait_for(lambda: _connected(penv), within=20, what="the MQTT link")
        response = await penv.post("/api/printer/light", {"on": True})
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["error"] == "command_refused" and "Developer Mode" in body["message"]
        commands = [r for r in penv.standin.printer.requests if "system" in r]
        assert len(commands) == 1
        assert (await api_state(penv))["lightOn"] is False


async def test_a_wrong_access_code_is_named_in_status_and_backs_off(tmp_path: Path) -> None:
    async with start_env(tmp_path, code="wrong123") as penv:
        async def both_refused() -> bool:
            status = await penv.printer_status()
            return all(status[link]["failures"] >= 2 for link in ("mqtt", "camera"))

        await wait_for(lambda: penv.retrying(both_refused()), within=30, what="two refusals on each link")
        status = await penv.printer_status()
        for link in ("mqtt", "camera"):
            assert not status[link]["connected"]
            assert "access code refused" in status[link]["lastError"], status[link]
            assert status[link]["retryInS"] >= 1.0 * 0.7  # the second delay is about 2 s
        assert penv.standin.camera.refused >= 2
        assert (await api_state(penv))["lastError"].startswith("access code refused")


async def test_an_access_code_from_the_settings_page_is_used_at_once_and_never_shown(
        tmp_path: Path) -> None:
    async with start_env(tmp_path, code="wrong123") as penv:
        await wait_for(lambda: _failures(penv, 1), within=30, what="the wrong code refused")
        too_long = await penv.client.put(f"{penv.base}/api/printer/access-code",
                                         json={"accessCode": "x" * 33})
        assert too_long.status_code == 422
        response = await penv.client.put(f"{penv.base}/api/printer/access-code",
                                         json={"accessCode": CODE})
        penv.answers.append(response.text)
        assert response.status_code == 200, response.text
        assert CODE not in response.text
        code_file = penv.data_dir / "printer-access-code"
        assert code_file.read_text().strip() == CODE and code_file.stat().st_mode & 0o777 == 0o600
        await wait_for(lambda: _connected(penv), within=15, what="the link with the new code")
        assert CODE not in json.dumps(await penv.printer_status())
        page = await penv.client.get(f"{penv.base}/settings")
        assert page.status_code == 200 and CODE not in page.text


async def test_the_address_from_the_settings_page_links_the_printer_at_once_and_stays(
        tmp_path: Path) -> None:
    async with start_env(tmp_path, printer_host="", printer_serial="") as penv:
        assert (await penv.printer_status())["configured"] is False
        dashboard = await connect_browser(penv)  # open before the printer is linked
        url = f"{penv.base}/api/printer/address"
        serial = penv.standin.serial
        for body, says in [({"host": "192.168.1.40; rm", "serial": serial}, "IP address"),
                           ({"host": "127.0.0.1", "serial": "short"}, "serial"),
                           ({"host": "127.0.0.1", "serial": ""}, "serial too"),
                           ({"host": "127.0.0.1"}, "serial")]:
            refused = await penv.client.put(url, json=body)
            assert refused.status_code in (400, 422), refused.text
            assert says in refused.text
        assert not (penv.data_dir / "printer-address.json").exists()
        saved = await penv.client.put(url, json={"host": "127.0.0.1", "serial": serial.lower()})
        assert saved.status_code == 200, saved.text
        await wait_for(lambda: _connected(penv), within=15, what="the link to the saved address")
        await wait_for(lambda: any(p["connected"] for p in dashboard.of("printer2v")),
                       what="printer2v on the dashboard that was open before the link")
        await dashboard.client.disconnect()
        status = await penv.printer_status()
        assert (status["host"], status["serial"]) == ("127.0.0.1", serial)
        assert status["tls"]["pinned"]
        # Another serial is another printer with its own certificate: the old pin must go, or
        # the new printer would be refused as "certificate changed". (The stand-in plays both,
        # so the pin is made another printer's first.)
        (penv.data_dir / "printer-cert.sha256").write_text("0" * 64 + "\n")
        moved = await penv.client.put(url, json={"host": "127.0.0.1", "serial": "01S00C999999999"})
        assert moved.status_code == 200
        await wait_for(lambda: _connected(penv), within=15, what="the link to the other printer")
        assert (await penv.printer_status())["tls"]["pinned"] == status["tls"]["pinned"]
        unlinked = await penv.client.put(url, json={"host": "", "serial": ""})
        assert unlinked.status_code == 200 and "no printer" in unlinked.text
        assert (await penv.printer_status())["configured"] is False
        back = await penv.client.put(url, json={"host": "127.0.0.1", "serial": serial})
        assert back.status_code == 200
    # A restart keeps the Settings page's address over appliance.toml's (empty here).
    settings = make_settings(penv.data_dir, printer_host="", printer_serial="")
    from appliance.printer.service import read_address
    assert read_address(settings) == ("127.0.0.1", serial)


async def _failures(env: PrinterEnv, at_least: int) -> bool:
    return bool((await env.printer_status())["mqtt"]["failures"] >= at_least)


async def test_the_printer_going_away_and_coming_back(penv: PrinterEnv) -> None:
    await wait_for(lambda: _connected(penv), within=20, what="the MQTT link")
    await penv.standin.away()

    async def gone() -> bool:
        status = await penv.printer_status()
        return not status["mqtt"]["connected"] and status["mqtt"]["lastError"] is not None

    await wait_for(gone, within=60, what="the link to notice the printer left")
    assert (await api_state(penv))["connected"] is False
    await penv.standin.back()

    async def back() -> bool:
        status = await penv.printer_status()
        return bool(status["mqtt"]["connected"] and status["camera"]["connected"])

    await wait_for(lambda: penv.retrying(back()), within=60, what="both links back")
    assert (await api_state(penv))["state"] == "IDLE"


async def test_a_changed_certificate_is_refused_under_pin(penv: PrinterEnv) -> None:
    await wait_for(lambda: _connected(penv), within=20, what="the MQTT link")
    pinned = (await penv.printer_status())["tls"]["pinned"]
    auths_before = penv.standin.camera.refused
    await penv.standin.away()
    penv.standin.replace_certificate()
    await penv.standin.back()

    async def refused() -> bool:
        status = await penv.printer_status()
        return "certificate changed" in (status["mqtt"]["lastError"] or "") and \
            "certificate changed" in (status["camera"]["lastError"] or "")

    await wait_for(lambda: penv.retrying(refused()), within=60, what="the changed certificate refused")
    status = await penv.printer_status()
    assert "certificate changed" in status["tls"]["problem"]
    assert "certificate changed" in status["mqtt"]["lastError"]
    assert status["tls"]["pinned"] == pinned and status["tls"]["offered"] != pinned
    assert not status["mqtt"]["connected"]
    assert penv.standin.camera.refused == auths_before  # no access code went to the impostor
    mosquitto_log = penv.standin.broker.log.read_text()
    assert mosquitto_log.count("u'bblp'") == 1, mosquitto_log  # bblp logged in once: before
    wrong = await penv.post("/api/printer/trust", {"fingerprint": "0" * 64})
    assert wrong.status_code == 409
    right = await penv.post("/api/printer/trust", {"fingerprint": status["tls"]["offered"]})
    assert right.status_code == 200, right.text
    assert (await penv.printer_status())["tls"]["pinned"] == status["tls"]["offered"]


async def test_oversized_and_truncated_frames_are_refused_and_the_stream_resyncs(
        tmp_path: Path) -> None:
    async with start_env(tmp_path, image_max_bytes=200_000) as penv:
        await wait_for(lambda: _camera_frames(penv, 2), within=20, what="first frames")
        penv.standin.camera.oversize_bytes = 200_001
        penv.standin.camera.oversize_next = True
        await wait_for(lambda: _camera(penv, "oversized", 1), within=20, what="an oversized frame")
        status = await penv.printer_status()
        frames = status["camera"]["frames"]
        assert "200001-byte frame" in status["camera"]["lastError"]
        await wait_for(lambda: _camera_frames(penv, frames + 2), within=30, what="frames again")
        penv.standin.camera.truncate_next = True
        await wait_for(lambda: _camera(penv, "truncated", 1), within=20, what="a truncated frame")
        frames = (await penv.printer_status())["camera"]["frames"]
        await wait_for(lambda: _camera_frames(penv, frames + 2), within=30, what="frames again")


async def _camera(env: PrinterEnv, key: str, at_least: int) -> bool:
    return bool((await env.printer_status())["camera"][key] >= at_least)


async def _camera_frames(env: PrinterEnv, at_least: int) -> bool:
    return await env.retrying(_camera(env, "frames", at_least))


async def test_the_access_code_is_in_no_log_answer_or_process_argument(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with start_env(tmp_path) as penv:
        await wait_for(lambda: _camera_frames(penv, 1), within=20, what="frames")
        await wait_for(lambda: _connected(penv), within=20, what="the MQTT link")
        await penv.post("/api/printer/light", {"on": True})
        await penv.get("/api/printer")
        await penv.get("/status")
        await penv.get("/openapi.json")
        await penv.client.get(f"{penv.base}/")
        arguments = process_arguments()
        captured = "\n".join([*penv.answers, caplog.text, json.dumps(dict(os.environ))])
        assert "Camera" not in CODE and len(caplog.records) > 10  # the log did capture the run
        assert CODE not in captured
        assert not [arg for arg in arguments if CODE.encode() in arg]
        assert CODE not in penv.standin.broker.log.read_text()
        config = (penv.standin.broker.directory / "mosquitto.conf").read_text()
        assert CODE not in config


def process_arguments() -> list[bytes]:
    """Every process's arguments and environment on this machine (the broker's among them)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found += [(proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()]
            except OSError:
                continue
    return found


async def test_backoff_between_refused_attempts_grows(tmp_path: Path) -> None:
    """The MQTT link alone, on a fake clock: the delays between refused attempts double, and
    each attempt waits for the clock (nothing retries before its delay has passed)."""
    standin = Standin(tmp_path / "standin", CODE)
    await standin.broker.start()
    clock = FakeClock()
    link = MqttLink("127.0.0.1", standin.mqtt_port, standin.serial, lambda: "wrong123",
                    PrinterTrust("pin", tmp_path, standin.serial), lambda _report: None,
                    clock, backoff=Backoff(rng=random.Random(3)))
    task = asyncio.create_task(link.run())
    delays: list[float] = []
    try:
        for attempt in range(1, 5):
            await wait_for(lambda a=attempt: link.health.failures == a and clock.sleepers == 1,
                           within=20, what=f"refusal {attempt} and the link asleep")
            delay = link.health.retry_in_s
            assert delay is not None
            delays.append(delay)
            clock.advance(delay - 0.1)  # (retryInS is rounded to 0.1 s)
            assert clock.sleepers == 1 and link.health.attempts == attempt  # still waiting
            clock.advance(1.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await standin.broker.stop()
    for earlier, later in itertools.pairwise(delays):
        assert later > earlier
    assert delays[0] <= 1.0 and delays[3] >= 8 * 0.7
    assert "access code refused" in (link.health.last_error or "")
