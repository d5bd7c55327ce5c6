"""/frames: the dashboard's frames as one binary WebSocket message each, against the app on hypercorn."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Env
from helpers import (
    PASSWORD,
    Browser,
    add_token,
    add_user,
    close_code,
    free_port,
    make_jpeg_like,
    make_png,
    wait_for,
)
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from appliance.relay.wire import CLOSE_GOING_AWAY, CLOSE_POLICY, HEADER_LENGTH


def wire_url(env: Env) -> str:
    return env.base.replace("http", "ws", 1) + "/frames"


async def open_wire(env: Env, headers: dict[str, str] | None = None, **kwargs: Any
                    ) -> ClientConnection:
    headers = {"Cookie": env.cookie, "Origin": env.base} if headers is None else headers
    return await ws_connect(wire_url(env), additional_headers=headers, max_size=None,
                            open_timeout=10, **kwargs)


def parse(message: str | bytes) -> tuple[dict[str, Any], bytes]:
    assert isinstance(message, bytes), "a frame is a binary message"
    (length,) = HEADER_LENGTH.unpack_from(message)
    header = json.loads(message[HEADER_LENGTH.size:HEADER_LENGTH.size + length])
    return header, message[HEADER_LENGTH.size + length:]


async def publish(env: Env, token: str, *images: bytes) -> None:
    async with httpx.AsyncClient(timeout=10) as camera:
        for image in images:
            posted = await camera.post(f"{env.base}/api/image", content=image,
                                       headers={"Authorization": f"Bearer {token}"})
            assert posted.status_code == 201, posted.text


async def test_a_frame_is_one_binary_message_with_its_mime_and_time(logged_in: Env) -> None:
    token = await add_token(logged_in.data_dir)
    png = make_png(rgb=(7, 8, 9))
    async with await open_wire(logged_in) as viewer:
        await publish(logged_in, token, png)
        header, image = parse(await asyncio.wait_for(viewer.recv(), 10))
    assert image == png
    assert header["mime"] == "image/png"
    assert header["timestamp"].endswith("Z")
    # A dashboard opened later gets the newest frame at once, as over Socket.IO.
    async with await open_wire(logged_in) as late:
        header_late, image_late = parse(await asyncio.wait_for(late.recv(), 10))
    assert (header_late, image_late) == (header, png)


@pytest.mark.parametrize("how", ["no cookie", "foreign origin", "a publisher token"])
async def test_anyone_but_a_logged_in_browser_is_refused_before_the_handshake(
        logged_in: Env, how: str) -> None:
    headers = {"Origin": logged_in.base}
    if how == "foreign origin":
        headers = {"Cookie": logged_in.cookie, "Origin": "https://evil.example.com"}
    elif how == "a publisher token":
        headers["Authorization"] = f"Bearer {await add_token(logged_in.data_dir)}"
    with pytest.raises(InvalidStatus) as refused:
        await open_wire(logged_in, headers)
    assert refused.value.response.status_code == 403


async def test_logout_closes_the_open_frames_socket_at_once(logged_in: Env) -> None:
    viewer = await open_wire(logged_in)
    assert (await logged_in.client.delete(f"{logged_in.base}/api/session")).status_code == 200
    # The app's clock stands still: no periodic re-check can have closed it.
    assert await asyncio.wait_for(close_code(viewer), 10) == CLOSE_POLICY


async def test_a_browser_that_stops_reading_gets_the_newest_frame_not_a_queue(
        logged_in: Env) -> None:
    token = await add_token(logged_in.data_dir)
    # max_queue=1: this client stops reading its socket after one message, like a frozen tab.
    stalled = await open_wire(logged_in, max_queue=1)
    healthy = await open_wire(logged_in)
    last: list[bytes] = []

    async def watch() -> None:
        async for message in healthy:
            last.append(parse(message)[1])

    watcher = asyncio.create_task(watch())
    frames = [make_jpeg_like(150 * 1024, seed=i) for i in range(60)]
    try:
        await publish(logged_in, token, *frames)
        await wait_for(lambda: last and last[-1] == frames[-1], within=20,
                       what="the healthy dashboard to get the last frame")
        status = (await logged_in.client.get(f"{logged_in.base}/status")).json()
        assert status["relay"]["framesDropped"] > 0  # the stalled one's, replaced while waiting
    finally:
        watcher.cancel()
        await healthy.close()
        stalled.transport.abort()  # it is not reading: a close handshake would wait it out


async def test_a_dashboard_on_frames_asks_socketio_for_no_image2v(logged_in: Env) -> None:
    token = await add_token(logged_in.data_dir)
    browser = Browser()
    await browser.client.connect(logged_in.base, transports=["websocket"], wait_timeout=10,
                                 headers={"Cookie": logged_in.cookie, "Origin": logged_in.base})
    try:
        assert await browser.client.call("frames", {"image2v": False}) == {"ok": True}
        bad = await browser.client.call("frames", {"image2v": "no"})
        assert bad["error"] == "invalid"
        await publish(logged_in, token, make_png(rgb=(1, 1, 1)))
        assert await browser.client.call("frames", {"image2v": True}) == {"ok": True}
        second = make_png(rgb=(2, 2, 2))
        await publish(logged_in, token, second)
        await wait_for(lambda: browser.of("image2v"), what="image2v after asking again")
        assert [f["image"] for f in browser.of("image2v")] == [second]
    finally:
        await browser.client.disconnect()


async def test_a_stopping_appliance_ends_its_frames_sockets_going_away(tmp_path: Path) -> None:
    """SIGTERM: the dashboard hears 1001 and reconnects to the next process; the exit is clean."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    await add_user(data)
    (tmp_path / "none.toml").touch()
    base = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data), "APPLIANCE_LOG_LEVEL": "WARNING",
           "APPLIANCE_CONFIG": str(tmp_path / "none.toml")}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "serve", "--port", base.rsplit(":", 1)[1], env=env)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            async def logged_in() -> bool:
                try:
                    answer = await client.post(f"{base}/api/session",
                                               json={"username": "alice", "password": PASSWORD})
                except httpx.TransportError:
                    return False
                return answer.status_code == 200

            await wait_for(logged_in, within=30, what="appliance serve to log alice in")
            cookie = f"appliance_session={client.cookies['appliance_session']}"
        viewer = await ws_connect(base.replace("http", "ws", 1) + "/frames", open_timeout=10,
                                  additional_headers={"Cookie": cookie, "Origin": base})
        server.terminate()
        assert await asyncio.wait_for(close_code(viewer), 10) == CLOSE_GOING_AWAY
        assert await asyncio.wait_for(server.wait(), 20) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
