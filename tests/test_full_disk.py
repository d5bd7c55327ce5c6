"""A full SD card: the data dir on a real, small tmpfs filled to its last block.

The app keeps serving, logins and essential writes work (the reserve, appliance/store/space.py),
readings are refused with a clear message on the API, /status and the dashboard, nothing stored
is lost or damaged, and everything goes on by itself once there is room again.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Env
from helpers import PASSWORD, add_token, small_partition, wait_for

from appliance.store.space import RESERVE_NAME

MIB = 1024 * 1024


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """The app's data dir (app_env puts it at tmp_path): a 12 MiB card."""
    with small_partition(tmp_path / "card", 12) as card:
        yield card


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no block left, as a runaway log would."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for chunk in (MIB, 4096, 1):
            with pytest.raises(OSError, match="No space left") as raised:  # noqa: PT012
                while os.write(fd, b"\0" * chunk):
                    pass
            assert raised.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert shutil.disk_usage(directory).free == 0
    return filler


def stored_readings(data_dir: Path) -> list[float]:
    with sqlite3.connect(f"{(data_dir / 'appliance.db').as_uri()}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [row[0] for row in conn.execute("SELECT temperature FROM temphum ORDER BY id")]


@pytest.mark.parametrize("app_env", [{"storage_reserve_mib": 1, "beacons": 0}], indirect=True)
async def test_a_full_card_keeps_logins_and_data_and_recovers_by_itself(app_env: Env) -> None:
    site = app_env
    token = await add_token(site.data_dir)
    publisher = {"Authorization": f"Bearer {token}"}
    reading = f"{site.base}/api/temphum"
    assert (await site.login()).status_code == 200
    assert (site.data_dir / RESERVE_NAME).stat().st_size == MIB
    made = await site.client.post(reading, json={"temperature": 21.0, "humidity": 40},
                                  headers=publisher)
    assert made.status_code == 201, made.text

    filler = fill(site.data_dir)
    refused = await site.client.post(reading, json={"temperature": 22.0, "humidity": 40},
                                     headers=publisher)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "storage_full"
    assert "SD card is full" in refused.json()["message"]
    storage = (await site.client.get(f"{site.base}/status")).json()["storage"]
    assert storage["full"] is True and storage["refusedWrites"] >= 1
    assert "logins" in storage["message"]
    page = await site.client.get(f"{site.base}/", headers={"Accept": "text/html"})
    assert "The SD card is full" in page.text

    # The owner can still log in (a session row) and manage users: the reserve makes room.
    async with httpx.AsyncClient(timeout=10) as other:
        login = await other.post(f"{site.base}/api/session",
                                 json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        added = await other.post(f"{site.base}/api/users",
                                 json={"username": "bob", "password": "a long password 2"})
        assert added.status_code == 201, added.text
    assert stored_readings(site.data_dir) == [21.0]

    filler.unlink()  # room again: no restart, no click

    async def stored_again() -> bool:
        answer = await site.client.post(reading, json={"temperature": 23.0, "humidity": 40},
                                        headers=publisher)
        return answer.status_code == 201
    await wait_for(stored_again, what="readings stored again once there is room")
    assert (await site.client.get(f"{site.base}/status")).json()["storage"]["full"] is False
    assert (site.data_dir / RESERVE_NAME).stat().st_size == MIB  # taken again for next time
    assert stored_readings(site.data_dir) == [21.0, 23.0]
