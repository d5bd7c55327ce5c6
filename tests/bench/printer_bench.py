"""Issue 11's measurements: the app's own printer link, fed by the stand-in printer.

The stand-in (sim/appliance_sim/printer: Debian's mosquitto with a TLS listener and a password
file, the printer player on it, and a TLS camera speaking the A1's port-6000 protocol) runs in
the benchmark's process, on the client CPUs, with ``--printer-browsers`` logged-in Socket.IO
browsers (relay_bench's bare clients). The app is ``appliance serve`` from the production venv,
pinned to the server CPU, linked to the stand-in as to an A1 on the LAN (``printer_tls`` = pin,
the access code in a 0600 file of its data dir). The camera sends real 1280x720 JPEGs (ffmpeg's
testsrc2 with noise, as the timelapse bench makes them) at ``--camera-fps``.

* CPU per relayed camera frame: the app's CPU time (/proc/<pid>/stat) over the window ÷ the
  camera frames sent in it (and ÷ browser deliveries);
* RSS: the app's VmRSS at the end of that run (printer linked, the browsers connected), VmHWM
  beside it;
* latency: the stand-in's send (the moment before the frame goes into its TLS stream) → a
  browser's receive, p50/p95 over every delivery.

Anchor, in the same run: the same app without a printer, the same JPEGs sent by a Socket.IO
publisher at the same rate to the same number of browsers (issue 14's path, which camera frames
share after the camera link has read them). That app's CPU idle (the browsers connected, no
frames) for ``IDLE_S`` is measured first: at an A1's one frame a second the idle share dominates,
so the marginal CPU per frame (over idle) is given beside the plain one.

Each frame carries the run's nonce and its sequence number in an extra APP0 segment right after
SOI (relay_bench's 24-byte head, so its browsers read it); the JPEG stays valid and nothing in
the app decodes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relay_bench as rb
from timelapse_bench import make_frames

from appliance.printer.errors import write_access_code
from appliance.timelapse.files import RecordingFiles
from appliance_sim.printer.standin import Standin

DISTINCT_JPEGS = 4  # cycled, as relay_bench's bodies
LINK_TIMEOUT_S = 60.0  # the app's MQTT and camera links up, under load
WARMUP_FRAMES = 3  # frames every browser must have before the window opens
IDLE_S = 5.0  # the anchor app's idle CPU is sampled this long
SEGMENT = rb.HEAD.size - 4  # the APP0 segment's length field: itself and 18 bytes of payload


class CameraFrames(rb.Frames):
    """Real JPEGs carrying (nonce, seq) in an APP0 segment after SOI: bytes 0-24 are relay_bench's
    head (FFD8 FFE0, then the 8-byte nonce, whose first two bytes are the segment's length, the
    8-byte sequence number and 4 bytes of padding), so rb.Browser reads them unchanged."""

    def __init__(self, jpegs: list[bytes]) -> None:  # not rb.Frames': no random bodies
        self._jpegs = [jpeg[2:] for jpeg in jpegs]  # without SOI: the head brings it
        self.mean_bytes = statistics.fmean(len(j) for j in self._jpegs) + rb.HEAD.size

    @staticmethod
    def nonce() -> bytes:
        return SEGMENT.to_bytes(2, "big") + secrets.token_bytes(6)

    def binary(self, nonce: bytes, seq: int) -> bytes:
        return rb.HEAD.pack(rb.JPEG_APP0, nonce, seq) + self._jpegs[seq % len(self._jpegs)]


def real_jpegs(count: int) -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        files = RecordingFiles(Path(tmp), 1)
        make_frames(files, count)
        return [path.read_bytes() for path in files.frames()]


async def printer_status(base: str, cookie: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/status", headers={"Cookie": cookie})
        response.raise_for_status()
        status: dict[str, Any] = response.json()["printer"]
        return status


async def links_up(base: str, cookie: str) -> None:
    deadline = time.monotonic() + LINK_TIMEOUT_S
    while True:
        status = await printer_status(base, cookie)
        if status["mqtt"]["connected"] and status["camera"]["connected"]:
            return
        if time.monotonic() > deadline:
            msg = f"the app's printer links did not come up within {LINK_TIMEOUT_S:g} s: {status}"
            raise RuntimeError(msg)
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def standin_printer(work: Path, frames: CameraFrames, fps: float,
                          ) -> AsyncIterator[tuple[Standin, dict[int, int], bytes]]:
    """The stand-in, its camera sending ``frames`` at ``fps``: (stand-in, send time by sequence
    number, the run's nonce)."""
    standin = Standin(work / "standin", secrets.token_hex(4), frame_interval_s=1 / fps)
    sent: dict[int, int] = {}
    nonce = CameraFrames.nonce()

    def next_frame() -> bytes:
        seq = len(sent)
        sent[seq] = time.perf_counter_ns()
        return frames.binary(nonce, seq)

    standin.camera.frame = next_frame
    await standin.start()
    try:
        yield standin, sent, nonce
    finally:
        await standin.stop()


def summary(rows: list[tuple[int, int]], sent: dict[int, int], first: int, last: int,
            ) -> dict[str, float]:
    """Latency (ms) over deliveries of frames first..last (inclusive)."""
    late = [(t - sent[seq]) / 1e6 for seq, t in rows if first <= seq <= last]
    return {"p50": rb.percentile(late, 50), "p95": rb.percentile(late, 95),
            "max": max(late, default=float("nan")), "samples": len(late)}


def result(name: str, pid: int, cpu_s: float, window_s: float, frames: int,
           browsers: list[rb.Browser], latency: dict[str, float]) -> dict[str, Any]:
    delivered = int(latency["samples"])
    return {"path": name, "frames": frames, "window_s": window_s, "browsers": len(browsers),
            "delivered": delivered, "all_delivered": delivered == frames * len(browsers),
            "app_cpu_pct": 100 * cpu_s / window_s,
            "cpu_us_per_frame": cpu_s / max(1, frames) * 1e6,
            "cpu_us_per_delivery": cpu_s / max(1, delivered) * 1e6,
            "latency_ms": latency, "rss_mb": rb.proc_status_mb(pid, "VmRSS"),
            "peak_rss_mb": rb.proc_status_mb(pid, "VmHWM")}


async def camera_run(target: rb.Relay, work: Path, frames: CameraFrames, *, browsers_n: int,
                     fps: float, seconds: float, drain_s: float) -> dict[str, Any]:
    data = target.data_dir / "data"
    async with standin_printer(work, frames, fps) as (standin, sent, nonce):
        write_access_code(data / "printer-access-code", standin.access_code)
        env = {**target.env(), "APPLIANCE_PRINTER_HOST": "127.0.0.1",
               "APPLIANCE_PRINTER_SERIAL": standin.serial,
               "APPLIANCE_PRINTER_MQTT_PORT": str(standin.mqtt_port),
               "APPLIANCE_PRINTER_CAMERA_PORT": str(standin.camera.port)}
        port = rb.free_port()
        base = f"http://127.0.0.1:{port}"
        try:
            async with rb.spawned([target.python, "-m", "appliance", "serve", "--port", str(port)],
                                  env=env, health=f"{base}/health", cpus=target.server_cpus,
                                  log=target.data_dir / "ours-printer.log") as (pid, _ready):
                headers = await target.browser_auth(base)
                await links_up(base, headers["Cookie"])
                browsers = await rb.connect_browsers(base, browsers_n, headers, True, False)
                try:
                    for browser in browsers:
                        browser.nonce = nonce
                    warm = len(sent) + WARMUP_FRAMES
                    if not await rb.wait_until(lambda: all(b.last_seq >= warm for b in browsers),
                                               rb.WARMUP_TIMEOUT_S):
                        msg = "camera frames did not reach every browser"
                        raise RuntimeError(msg)
                    first, cpu0, t0 = len(sent), target.cpu_s(pid), time.perf_counter()
                    await asyncio.sleep(seconds)  # the window: the camera sends on its own
                    last, cpu_s = len(sent) - 1, target.cpu_s(pid) - cpu0
                    window_s = time.perf_counter() - t0
                    await rb.wait_until(lambda: all(b.last_seq >= last for b in browsers), drain_s)
                    camera = (await printer_status(base, headers["Cookie"]))["camera"]
                    rows = [row for b in browsers for row in b.received]
                    out = result("camera", pid, cpu_s, window_s, last - first + 1, browsers,
                                 summary(rows, sent, first, last))
                finally:
                    for browser in browsers:
                        await browser.close()
        finally:
            (data / "printer-access-code").unlink(missing_ok=True)
    out["camera_refused"] = {k: camera.get(k) for k in ("oversized", "truncated")}
    out["frame_bytes_mean"] = frames.mean_bytes
    return out


async def publisher_run(target: rb.Relay, frames: CameraFrames, *, browsers_n: int, fps: float,
                        seconds: float, drain_s: float) -> dict[str, Any]:
    """The anchor: the same frames from a Socket.IO publisher, no printer linked."""
    async with target.running("printer-anchor") as (base, pid):
        headers = await target.browser_auth(base)
        browsers = await rb.connect_browsers(base, browsers_n, headers, True, False)
        publisher = rb.Publisher(await rb.open_socketio(base, headers={},
                                                        auth={"token": target.token},
                                                        deflate=False), True)
        try:
            cpu0 = target.cpu_s(pid)
            await asyncio.sleep(IDLE_S)
            idle_pct = 100 * (target.cpu_s(pid) - cpu0) / IDLE_S
            warm = rb.Limits(WARMUP_FRAMES, rb.WARMUP_TIMEOUT_S, 0, fps, 1)
            await rb.publish_run(publisher, browsers, frames, limits=warm)
            for browser in browsers:
                browser.received.clear()
            cpu0, t0 = target.cpu_s(pid), time.perf_counter()
            limits = rb.Limits(10**9, seconds, 0, fps, 1)
            _nonce, sent, _end = await rb.publish_run(publisher, browsers, frames, limits=limits)
            await asyncio.sleep(1 / fps)  # the window ends a frame interval after the last, as
            cpu_s = target.cpu_s(pid) - cpu0  # the camera's does
            window_s = time.perf_counter() - t0
            last = len(sent) - 1
            await rb.wait_until(lambda: all(b.last_seq >= last for b in browsers), drain_s)
            rows = [row for b in browsers for row in b.received]
            out = result("publisher", pid, cpu_s, window_s, len(sent), browsers,
                         summary(rows, sent, 0, last))
            out["idle_cpu_pct"] = idle_pct
            return out
        finally:
            await publisher.close()
            for browser in browsers:
                await browser.close()


async def measure(target: rb.Relay, work: Path, *, browsers_n: int, fps: float, seconds: float,
                  drain_s: float) -> dict[str, Any]:
    frames = CameraFrames(real_jpegs(DISTINCT_JPEGS))
    camera = await camera_run(target, work, frames, browsers_n=browsers_n, fps=fps,
                              seconds=seconds, drain_s=drain_s)
    anchor = await publisher_run(target, frames, browsers_n=browsers_n, fps=fps, seconds=seconds,
                                 drain_s=drain_s)
    for run in (camera, anchor):
        busy_s = (run["app_cpu_pct"] - anchor["idle_cpu_pct"]) / 100 * run["window_s"]
        run["marginal_us_per_frame"] = busy_s / max(1, run["frames"]) * 1e6
    return {"camera": camera, "publisher": anchor}
