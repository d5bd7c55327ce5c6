"""The nginx site's limits (issue 13, finding 6): Debian's nginx with the project's template in
front of the real app on a socket. Clients are told apart as the tunnel tells them apart: by the
CF-Connecting-IP address cloudflared sends from loopback."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import socketio
from helpers import PASSWORD, FakeClock, add_user, free_port, make_settings, running_server
from nginx_site import nginx_running
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from appliance.app import create_app
from appliance_sim.radio import VirtualRadio

GUESSER = {"CF-Connecting-IP": "203.0.113.7"}
OWNER = {"CF-Connecting-IP": "198.51.100.20"}


@pytest.fixture
async def nginx(tmp_path: Path) -> AsyncIterator[str]:
    settings = make_settings(tmp_path / "data")
    await add_user(settings.data_dir)
    app = create_app(settings, radio=VirtualRadio(1, seed=3), clock=FakeClock())
    app_socket = tmp_path / "app.sock"
    async with running_server(app, unix_socket=app_socket), \
            nginx_running(tmp_path / "nginx", free_port(), app_socket) as base:
        yield base


async def browse_the_dashboard(base: str) -> list[str]:
    """What a person's browser does: the login page, a login, the dashboard with everything it
    loads, and its Socket.IO connection (which must bring the beacon list)."""
    async with httpx.AsyncClient(headers=OWNER, timeout=20) as browser:
        assert (await browser.get(f"{base}/login")).status_code == 200
        login = await browser.post(f"{base}/api/session",
                                   json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        page = await browser.get(f"{base}/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assets = sorted(set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)))
        assert assets, "the dashboard loads its scripts and styles from /static"
        for asset in assets:
            assert (await browser.get(f"{base}{asset}")).status_code == 200, asset
        for api in ("/api/session", "/devices", "/status"):
            assert (await browser.get(f"{base}{api}")).status_code == 200, api
        got = asyncio.Event()
        live = socketio.AsyncClient(reconnection=False)
        live.on("devices2v", lambda _data: got.set())
        cookie = f"appliance_session={browser.cookies['appliance_session']}"
        await live.connect(base, headers={**OWNER, "Cookie": cookie, "Origin": base},
                           transports=["websocket"], wait_timeout=10)
        try:
            await asyncio.wait_for(got.wait(), 10)
        finally:
            await live.disconnect()
        return assets


async def test_a_login_flood_gets_429_from_nginx_while_a_browser_session_works(
        nginx: str) -> None:
    async with httpx.AsyncClient(headers=GUESSER, timeout=30,
                                 limits=httpx.Limits(max_connections=50)) as guesser:

        async def guess(i: int) -> httpx.Response:
            return await guesser.post(f"{nginx}/api/session",
                                      json={"username": "alice", "password": f"guess{i}"})

        flood = asyncio.gather(*(guess(i) for i in range(60)))
        await browse_the_dashboard(nginx)
        answers = await flood
    from_nginx = [a for a in answers if a.status_code == 429
                  and a.json()["error"] == "too_many_requests"]
    # The login zone's burst (10) reaches the app (whose own throttle refuses all but 5 of them),
    # the rest nginx refuses itself, with the JSON error and Retry-After.
    assert len(from_nginx) >= 60 - 10 - 1, [a.status_code for a in answers]
    assert all(a.status_code in (401, 429) for a in answers)
    assert from_nginx[0].headers["retry-after"].isdigit()
    # The login page itself is not a login attempt: the guesser can still load it.
    async with httpx.AsyncClient(headers=GUESSER) as guesser:
        assert (await guesser.get(f"{nginx}/login")).status_code == 200


async def test_requests_and_connections_beyond_a_clients_limits_get_429(nginx: str) -> None:
    async with httpx.AsyncClient(headers=GUESSER, timeout=30,
                                 limits=httpx.Limits(max_connections=100)) as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(client.get(f"{nginx}/health") for _ in range(400)))
        elapsed = time.monotonic() - started
    codes = [a.status_code for a in answers]
    # At most the burst (100) and 20/s for as long as the requests took pass (however slowly
    # a loaded machine sent them); all others are nginx's 429.
    assert set(codes) == {200, 429}, codes
    assert codes.count(200) <= 100 + 20 * elapsed + 1, (codes.count(200), elapsed)
    # Connections: WebSockets held open count until they close; the 61st is refused.
    url = nginx.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    held = [await ws_connect(url, additional_headers=OWNER) for _ in range(60)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(url, additional_headers=OWNER)
        assert refused.value.response.status_code == 429
    finally:
        await asyncio.gather(*(ws.close() for ws in held))
    # Processes on the appliance itself (loopback, not through the tunnel) are not limited.
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as local:
        answers = await asyncio.gather(*(local.get(f"{nginx}/health") for _ in range(300)))
    assert {a.status_code for a in answers} == {200}



async def test_an_ipv6_client_is_limited_per_64_not_per_address(nginx: str) -> None:
    """A /64 is one client: a flood that takes a fresh address in it for every request is
    limited as one, and the next /64 is another client. Both forms nginx writes an address in:
    four groups before the "::", and a "::" among the first four."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as client:

        async def get(address: str) -> int:
            answer = await client.get(f"{nginx}/health", headers={"CF-Connecting-IP": address})
            return answer.status_code

        for flood, neighbour in (("2001:db8:1:2:{:x}::1", "2001:db8:1:3::1"),
                                 ("2001:db8::{:x}:1", "2001:db8:0:1::1")):
            started = time.monotonic()
            codes = await asyncio.gather(*(get(flood.format(i + 1)) for i in range(300)))
            elapsed = time.monotonic() - started
            assert set(codes) == {200, 429}, (flood, codes)
            assert codes.count(200) <= 100 + 20 * elapsed + 1, (flood, codes.count(200), elapsed)
            assert await get(neighbour) == 200  # another /64: a bucket of its own
