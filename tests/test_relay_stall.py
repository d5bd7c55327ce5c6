"""A browser that stops reading must not make the server buffer frames (latest frame wins).

The server runs as its own process (`appliance serve`), so its memory is measured honestly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio
from helpers import PASSWORD, free_port, make_jpeg_like, wait_for
from websockets.asyncio.client import connect as ws_connect

FRAMES = 1000
FRAME_BYTES = 150 * 1024
# Growth allowed while 1000 × 150 KB = 146 MB flow through: a few frames per client in flight
# and allocator slack. Buffering frames for the stalled browser would need far more.
MAX_GROWTH_MB = 40


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    """`appliance serve` in its own process, with a user and a publisher token."""
    port = free_port()
    (tmp_path / "none.toml").touch()
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
           "APPLIANCE_CONFIG": str(tmp_path / "none.toml"), "APPLIANCE_LOG_LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "appliance"]
    subprocess.run([*cli, "user", "add", "alice", "--password-stdin"], input=PASSWORD + "\n",
                   text=True, env=env, check=True, capture_output=True)
    token = subprocess.run([*cli, "token", "add", "cam"], text=True, env=env, check=True,
                           capture_output=True).stdout.strip()
    proc = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env)
    try:
        yield f"http://127.0.0.1:{port}", proc.pid, token
    finally:
        proc.terminate()
        proc.wait(20)


async def login(base: str) -> str:
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                return (await client.get(f"{base}/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(up, within=30, what="the server")
        response = await client.post(f"{base}/api/session",
                                     json={"username": "alice", "password": PASSWORD})
        return f"appliance_session={response.cookies['appliance_session']}"


async def test_stalled_browser_does_not_grow_server_memory(server: tuple[str, int, str]) -> None:
    base, pid, token = server
    cookie = await login(base)
    headers = {"Cookie": cookie, "Origin": base}

    # The stalled browser: completes the Engine.IO/Socket.IO handshake, then never reads again.
    url = base.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    stalled = await ws_connect(url, additional_headers=headers, max_queue=1, max_size=None)
    assert (await stalled.recv()).startswith("0")  # engine.io open
    await stalled.send("40")
    assert (await stalled.recv()).startswith("40")  # socket.io connect accepted

    # A healthy browser that keeps reading.
    healthy = socketio.AsyncClient(reconnection=False)
    received: list[bytes] = []
    healthy.on("image2v", lambda data: received.append(data["image"]))
    await healthy.connect(base, headers=headers, transports=["websocket"], wait_timeout=10)

    publisher = socketio.AsyncClient(reconnection=False)
    await publisher.connect(base, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    for i in range(20):  # warm up allocators and caches before the baseline
        await publisher.call("image", make_jpeg_like(FRAME_BYTES, seed=i), timeout=10)
    await wait_for(lambda: len(received) >= 1, what="warm-up frames")
    baseline = _rss_mb(pid)
    peak = baseline
    last = b""
    for i in range(FRAMES):
        last = make_jpeg_like(FRAME_BYTES, seed=1000 + i)
        ack = await publisher.call("image", last, timeout=10)
        assert ack == {"ok": True}
        if i % 50 == 0:
            peak = max(peak, _rss_mb(pid))
    peak = max(peak, _rss_mb(pid))
    await wait_for(lambda: received and received[-1] == last, within=20,
                   what="the healthy browser to get the newest frame")

    async with httpx.AsyncClient() as client:
        relay = (await client.get(f"{base}/status", headers={"Cookie": cookie})).json()["relay"]
    sys.stdout.write(f"\nserver RSS {baseline:.0f} MB -> peak {peak:.0f} MB; healthy browser got "
                     f"{len(received)} frames; dropped {relay['framesDropped']}\n")
    assert peak - baseline < MAX_GROWTH_MB
    assert relay["framesDropped"] > FRAMES // 2  # the stalled browser got almost none
    assert relay["browsers"] == 2 and relay["framesIn"] == FRAMES + 20
    assert len(received) > FRAMES // 2  # the healthy one kept receiving

    await publisher.disconnect()
    await healthy.disconnect()
    stalled.transport.abort()

