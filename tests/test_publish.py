"""`appliance publish` as a user runs it, against the real app: frames reach a browser, and it
reconnects after the appliance restarts."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import socketio
from conftest import Env
from helpers import add_token, free_port, make_png, wait_for


async def publish(*args: str, token: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "publish", *args,
        env={**os.environ, "APPLIANCE_PUBLISH_TOKEN": token},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def browser_for(env: Env) -> tuple[socketio.AsyncClient, list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []
    client = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1)
    for event in ("image2v", "temphum2v", "status2v"):
        client.on(event, lambda data, event=event: seen.append((event, data)))
    await client.connect(env.base, headers={"Cookie": env.cookie, "Origin": env.base},
                         transports=["websocket"], wait_timeout=10)
    return client, seen


async def test_publish_images_readings_and_status_once(logged_in: Env, tmp_path: Path) -> None:
    env = logged_in
    token = await add_token(env.data_dir)
    frames = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, path in enumerate(frames):
        path.write_bytes(make_png(rgb=(i, i, i)))
    client, seen = await browser_for(env)
    proc = await publish("--url", env.base, "--image", *map(str, frames), "--temphum", "21.5,40",
                         "--status", "printing", token=token)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "sent a.png" in out.decode() and "sent status 'printing'" in out.decode()
    await wait_for(lambda: len(seen) >= 4, what="two frames, a reading and a status")
    images = [data["image"] for name, data in seen if name == "image2v"]  # type: ignore[index]
    assert images == [p.read_bytes() for p in frames]
    await client.disconnect()


async def test_publish_reports_rejections_and_bad_tokens(logged_in: Env, tmp_path: Path) -> None:
    env = logged_in
    token = await add_token(env.data_dir)
    bogus = tmp_path / "notes.png"
    bogus.write_bytes(b"not really a png")
    proc = await publish("--url", env.base, "--image", str(bogus), token=token)
    out, _err = await asyncio.wait_for(proc.communicate(), 60)
    assert "rejected notes.png" in out.decode() and "neither JPEG nor PNG" in out.decode()
    proc = await publish("--url", env.base, "--status", "x", token="apt_wrong")
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and "refused the token" in err.decode()
    proc = await publish("--url", env.base, "--temphum", "hot", token=token)
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and "TEMPERATURE,HUMIDITY" in err.decode()


async def test_publisher_reconnects_after_the_appliance_restarts(tmp_path: Path) -> None:
    # Real processes, as on the Pi: a restart ends the old process, so the kernel closes its
    # sockets and the publisher sees the link drop at once (an in-process server stopped in a
    # test keeps them open until engine.io's 45 s ping timeout).
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    token = await add_token(data)
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "f1.png").write_bytes(make_png())
    (tmp_path / "none.toml").touch()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data), "APPLIANCE_LOG_LEVEL": "WARNING",
           "APPLIANCE_CONFIG": str(tmp_path / "none.toml")}

    async def frames_in(client: httpx.AsyncClient) -> int | None:
        try:
            status = await client.get(f"{base}/status", headers={"Authorization": f"Bearer {token}"})
        except httpx.TransportError:
            return None
        return int(status.json()["relay"]["framesIn"]) or None

    publisher = await publish("--url", base, "--dir", str(frames), "--interval", "0.2",
                              "--max-backoff", "0.5", token=token)
    try:
        async with httpx.AsyncClient() as client:
            for _run in ("first", "after a restart"):
                server = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "appliance", "serve", "--port", str(port), env=env)
                try:
                    # The publisher backs off at most 0.5 s (±25 %) here (30 s by default).
                    await wait_for(lambda: frames_in(client), within=30, what=f"frames, {_run}")
                finally:
                    server.terminate()
                    # It ends its WebSockets itself (drop_transports): no wait on a publisher
                    # that keeps sending, and a clean exit.
                    assert await asyncio.wait_for(server.wait(), 20) == 0
    finally:
        publisher.terminate()
        out, _err = await asyncio.wait_for(publisher.communicate(), 20)
    assert out.decode().count("connected to") >= 1
    assert "cannot connect" in out.decode()  # it was started before the first server
