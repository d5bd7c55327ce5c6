"""Timelapse render benchmark: 300 frames of 1280x720 through the appliance's own render().

It measures what a print's end costs the Pi: the render's wall time and ffmpeg's CPU time (nice
19, RENDER_THREADS threads), and the relay's frame latency meanwhile: the real app on hypercorn
(loopback), a publisher POSTing a 150 KB frame every 100 ms, one logged-in Socket.IO browser
timing each image2v from the POST (p50/p95/max), first idle, then while the app renders. The
render's frames are ffmpeg's testsrc2 pattern with light noise as JPEGs, made before timing.

Run: ``python tests/bench/timelapse_bench.py --out build/bench`` (``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config

from appliance.app import create_app
from appliance.auth import accounts
from appliance.settings import Settings
from appliance.store.db import Database
from appliance.timelapse.files import RecordingFiles
from appliance.timelapse.render import RENDER_THREADS, render

FRAME_EVERY_S = 0.1
FRAME_BYTES = 150 * 1024
PASSWORD = "bench password 1"
IDLE_S = 5.0


def make_frames(files: RecordingFiles, count: int) -> int:
    files.create()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=30",
         "-vf", "noise=alls=3:allf=t", "-frames:v", str(count), "-q:v", "4",
         "-start_number", "1", str(files.frames_dir / "%06d.jpg")], check=True, timeout=600)
    return sum(p.stat().st_size for p in files.frames())


@contextlib.asynccontextmanager
async def relay(directory: Path) -> AsyncIterator[tuple[httpx.AsyncClient, socketio.AsyncClient,
                                                        dict[int, float]]]:
    """The app with a publisher and a browser; the dict gets each frame's arrival time."""
    db = await Database.open(directory / "appliance.db")
    now = datetime.now(UTC)
    await accounts.add_user(db, "bench", PASSWORD, now=now)
    _record, token = await accounts.add_token(db, "bench", now=now)
    await db.close()
    app = create_app(replace(Settings(data_dir=directory), radio="virtual", virtual_beacons=0))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = Config()
    config.bind, config.accesslog = [f"fd://{sock.fileno()}"], None
    shutdown = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=shutdown.wait))
    arrived: dict[int, float] = {}
    browser = socketio.AsyncClient(reconnection=False)

    @browser.on("image2v")
    async def frame(data: dict[str, bytes]) -> None:
        arrived[int.from_bytes(data["image"][4:12], "big")] = time.perf_counter()

    async with httpx.AsyncClient(timeout=10) as client, httpx.AsyncClient(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}) as publisher:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{base}/health")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        await client.post(f"{base}/api/session", json={"username": "bench", "password": PASSWORD})
        cookie = f"appliance_session={client.cookies['appliance_session']}"
        await browser.connect(base, headers={"Cookie": cookie, "Origin": base},
                              transports=["websocket"], wait_timeout=10)
        try:
            yield publisher, browser, arrived
        finally:
            await browser.disconnect()
            shutdown.set()
            await asyncio.wait_for(server, 30)


async def latencies(publisher: httpx.AsyncClient, arrived: dict[int, float], stop: asyncio.Event,
                    first: int) -> list[float]:
    """Publish a frame every FRAME_EVERY_S until ``stop``; each one's latency in ms."""
    sent: dict[int, float] = {}
    seq = first
    filler = random.Random(1).randbytes(FRAME_BYTES)
    while not stop.is_set():
        sent[seq] = time.perf_counter()
        await publisher.post("/api/image", content=b"\xff\xd8\xff\xe0" + seq.to_bytes(8, "big")
                             + filler + b"\xff\xd9")
        seq += 1
        await asyncio.sleep(FRAME_EVERY_S)
    await asyncio.sleep(0.5)  # the last frames' arrival
    return [(arrived[n] - t) * 1000 for n, t in sent.items() if n in arrived]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2),
            "p95": round(ordered[int(len(ordered) * 0.95) - 1], 2), "max": round(ordered[-1], 2)}


async def bench(frames: int, fps: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        files = RecordingFiles(Path(tmp), 1)
        frame_bytes = make_frames(files, frames)
        (Path(tmp) / "app").mkdir()
        async with relay(Path(tmp) / "app") as (publisher, _browser, arrived):
            stop = asyncio.Event()
            idle = asyncio.create_task(latencies(publisher, arrived, stop, 0))
            await asyncio.sleep(IDLE_S)
            stop.set()
            idle_late = await idle
            stop = asyncio.Event()
            busy = asyncio.create_task(latencies(publisher, arrived, stop, 1_000_000))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            result = await render(files, fps=fps, on_progress=lambda _p: None)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            stop.set()
            busy_late = await busy
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {
            "frames": frames, "size": "1280x720", "fps": fps, "videoFrames": result.frames,
            "videoSeconds": result.duration_s, "frameBytesTotal": frame_bytes,
            "videoBytes": files.video.stat().st_size, "renderWallS": round(wall, 2),
            "ffmpegCpuS": round(cpu, 2), "cpuCores": round(cpu / wall, 2),
            "renderThreads": RENDER_THREADS, "framesPerSecond": round(frames / wall, 1),
            "relayLatencyIdleMs": summary(idle_late),
            "relayLatencyRenderingMs": summary(busy_late),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "load1": round(os.getloadavg()[0], 2)},
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    result = asyncio.run(bench(args.frames, args.fps))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timelapse.json").write_text(json.dumps(result, indent=2) + "\n")
    late_idle, late_busy = result["relayLatencyIdleMs"], result["relayLatencyRenderingMs"]
    print(
        f"timelapse render: {result['frames']} frames of 1280x720 in {result['renderWallS']} s "
        f"({result['framesPerSecond']} frames/s), ffmpeg CPU {result['ffmpegCpuS']} s "
        f"({result['cpuCores']} cores, {RENDER_THREADS} threads, nice 19); video "
        f"{result['videoBytes']} bytes for {result['frameBytesTotal']} bytes of frames; relay frame latency "
        f"p50/p95 {late_idle['p50']}/{late_idle['p95']} ms idle, "
        f"{late_busy['p50']}/{late_busy['p95']} ms rendering "
        f"(load {result['machine']['load1']}) -> {out / 'timelapse.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
