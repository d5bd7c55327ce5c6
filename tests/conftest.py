"""Shared fixtures: the real app served on loopback with a virtual radio and a fake clock."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import PASSWORD, AdvertisementLog, FakeClock, add_user, make_settings, running_server

from appliance.app import Appliance, create_app
from appliance_sim.air import beacon_address
from appliance_sim.radio import VirtualRadio

B1, B2 = beacon_address(1), beacon_address(2)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sim_binary() -> Path:
    """make -C firmware sim; a machine that cannot build it fails here, saying what to install."""
    install = "sudo apt-get install make g++"
    if shutil.which("make") is None:
        pytest.fail(f"the sketch beacon tests build the firmware for the host with make: {install}",
                    pytrace=False)
    result = subprocess.run(["make", "-C", "firmware", "sim"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, check=False)
    if result.returncode != 0:
        cause = "g++ is not installed" if shutil.which("g++") is None else "the build failed"
        pytest.fail(f"`make -C firmware sim` failed: {cause}. The sketch beacon tests need the "
                    f"firmware built for the host ({install}).\n{result.stderr[-3000:]}",
                    pytrace=False)
    return ROOT / "firmware" / "build" / "sim" / "beacon-sim"


@pytest.fixture
async def rec(radio: VirtualRadio) -> AsyncIterator[AdvertisementLog]:
    """The advertisements of the test module's ``radio`` fixture, logged until it stops."""
    recorder = AdvertisementLog.listening_to(radio.advertisements())
    yield recorder
    await radio.stop()
    async with asyncio.timeout(recorder.deadline_s):
        await recorder.task


@dataclass
class Env:
    base: str
    client: httpx.AsyncClient
    radio: VirtualRadio
    clock: FakeClock
    data_dir: Path
    app: Appliance

    async def login(self, username: str = "alice", password: str = PASSWORD) -> httpx.Response:
        return await self.client.post(f"{self.base}/api/session",
                                      json={"username": username, "password": password})

    @property
    def cookie(self) -> str:
        return f"appliance_session={self.client.cookies['appliance_session']}"

    async def device(self, address: str) -> dict[str, Any] | None:
        response = await self.client.get(f"{self.base}/devices")
        assert response.status_code == 200, response.text
        return next((d for d in response.json()["discovered"] if d["id"] == address), None)


@pytest.fixture
async def app_env(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    """The app served on loopback, one user (alice), a virtual radio and a fake clock.

    Not named ``env``: that is labgrid's fixture (the rig's environment), which tests/hil uses.
    """
    # Indirect parameters: settings to change (a callable value is given the data dir, for paths
    # inside it), and "beacons" (2 by default; 0 for tests that need quiet).
    overrides = dict(getattr(request, "param", {}))
    beacons = overrides.pop("beacons", 2)
    settings = make_settings(tmp_path, **{
        key: value(tmp_path) if callable(value) else value for key, value in overrides.items()})
    await add_user(tmp_path)
    clock = FakeClock()
    radio = VirtualRadio(beacons, seed=7)
    app = create_app(settings, radio=radio, clock=clock)
    async with running_server(app) as base, httpx.AsyncClient(timeout=10) as client:
        yield Env(base, client, radio, clock, tmp_path, app)


@pytest.fixture
async def logged_in(app_env: Env) -> Env:
    assert (await app_env.login()).status_code == 200
    return app_env


