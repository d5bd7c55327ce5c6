"""Production is the default: the real adapter, never the simulation, and a package without bumble."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import httpx
from helpers import PASSWORD, add_user, running_server, wait_for

from appliance.app import create_app
from appliance.settings import load_settings


def test_the_app_imports_neither_the_simulation_nor_bumble() -> None:
    code = (
        "import sys, appliance.app, appliance.cli, appliance.firstboot\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'bumble', 'appliance_sim'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_the_app_package_requires_no_bumble() -> None:
    assert not [r for r in requires("appliance") or [] if r.lower().startswith("bumble")]


async def test_serve_with_no_settings_uses_the_adapter_and_says_there_is_none(tmp_path: Path) -> None:
    # No appliance.toml, no APPLIANCE_* variables: only the data directory is a temporary one.
    # This machine's kernel has no Bluetooth and no bluetoothd: the real adapter cannot start.
    settings = load_settings(env={}, data_dir=str(tmp_path))
    assert settings.radio == "bleak"
    await add_user(tmp_path)
    async with running_server(create_app(settings)) as base, httpx.AsyncClient() as client:
        login = await client.post(f"{base}/api/session",
                                  json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200

        async def bluetooth() -> dict[str, object] | None:
            body: dict[str, object] = (await client.get(f"{base}/status")).json()["bluetooth"]
            return body if body["lastError"] else None

        state = await wait_for(bluetooth, within=20, what="the adapter's error in /status")
        assert state["radio"] == "bleak" and state["scanning"] is False
        assert "cannot start scanning on hci0" in str(state["lastError"])
        assert (await client.get(f"{base}/devices")).json() == {"discovered": []}
        page = (await client.get(f"{base}/")).text
        assert "Bluetooth is not scanning, so beacons are not tracked" in page
        assert (await client.get(f"{base}/health")).status_code == 200
