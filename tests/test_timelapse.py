"""Timelapse recordings end to end: the stand-in printer plays a print, its camera's frames reach
the relay, the app records a frame per layer and Debian's ffmpeg renders the video, which
ffprobe then checks. Nothing inside the appliance is faked.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Env
from helpers import (
    PASSWORD,
    Browser,
    FakeClock,
    add_token,
    add_user,
    make_settings,
    running_server,
    wait_for,
)
from test_printer_link import PrinterEnv, start_env

from appliance.app import Appliance, create_app
from appliance.timelapse.frames import FRESH_S
from appliance.timelapse.render import held_frames
from appliance_sim.radio import VirtualRadio

FPS = 30
pytestmark = pytest.mark.usefixtures("ffmpeg")


@pytest.fixture(scope="session")
def ffmpeg() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode != 0:
            pytest.fail(f"{tool} is missing: sudo apt-get install ffmpeg", pytrace=False)


@pytest.fixture(scope="session")
def noise_frames(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Camera-sized JPEGs of noise (~200 KB each, as a busy 1280x720 scene costs), made once by
    ffmpeg: frames that take real space and that ffmpeg can render."""
    directory = tmp_path_factory.mktemp("noise")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "nullsrc=s=640x360,geq=random(1)*255:random(2)*255:random(3)*255",
                    "-frames:v", "8", "-q:v", "2", str(directory / "%02d.jpg")],
                   check=True, timeout=120)
    return [path.read_bytes() for path in sorted(directory.glob("*.jpg"))]


@dataclass
class Site:
    """The app without a printer, fed by a publisher: interval mode, driven by a fake clock."""

    base: str
    client: httpx.AsyncClient
    publisher: httpx.AsyncClient
    clock: FakeClock
    data_dir: Path
    app: Appliance

    async def get(self, path: str) -> Any:
        response = await self.client.get(f"{self.base}{path}")
        assert response.status_code == 200, response.text
        return response.json()

    async def status(self) -> dict[str, Any]:
        status: dict[str, Any] = (await self.get("/status"))["timelapse"]
        return status

    async def start(self, job: str = "by hand") -> int:
        """Start a recording; its first frame is the next one published (the newest is stale)."""
        self.clock.advance(FRESH_S + 1)
        started = await self.client.post(f"{self.base}/api/timelapses", json={"job": job})
        assert started.status_code == 201, started.text
        recording_id: int = started.json()["id"]
        return recording_id

    async def stop(self, recording_id: int) -> None:
        stopped = await self.client.post(f"{self.base}/api/timelapses/{recording_id}/stop")
        assert stopped.status_code == 200, stopped.text

    async def frame(self, data: bytes) -> None:
        """Publish a frame and let interval ticks pass until the recording has taken it."""
        recording = (await self.status())["recording"]
        before = await self.frames(recording)
        posted = await self.publisher.post(f"{self.base}/api/image", content=data)
        assert posted.status_code == 201, posted.text
        interval = self.app.services.settings.timelapse_interval_s

        async def taken() -> bool:
            self.clock.advance(interval)
            return await self.frames(recording) > before or (await self.status())["paused"]

        await wait_for(taken, what="the frame to be taken (or recording to pause)")

    async def frames(self, recording_id: int) -> int:
        entries = await self.get("/api/timelapses")
        return next(int(e["frames"]) for e in entries if e["id"] == recording_id)

    async def entry(self, recording_id: int) -> dict[str, Any] | None:
        return next((e for e in await self.get("/api/timelapses") if e["id"] == recording_id),
                    None)

    async def wait_state(self, recording_id: int, state: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            entry = await self.entry(recording_id)
            return entry if entry and entry["state"] == state else None

        return await wait_for(reached, within=90, what=f"timelapse {recording_id} to be {state}")


@contextlib.asynccontextmanager
async def publisher_site(data: Path, clock: FakeClock | None = None,
                         **changes: Any) -> AsyncIterator[Site]:
    """The app on ``data`` (a user and a publisher token made the first time); leaving stops it,
    as a restart would."""
    if not (data / "appliance.db").exists():
        await add_user(data)
    token_file = data.parent / f"{data.name}.token"
    if not token_file.exists():
        token_file.write_text(await add_token(data))
    clock = clock or FakeClock()
    settings = make_settings(data, **{"timelapse_interval_s": 1, **changes})
    app = create_app(settings, radio=VirtualRadio(0, seed=1), clock=clock)
    auth = {"Authorization": f"Bearer {token_file.read_text()}"}
    async with running_server(app) as base, httpx.AsyncClient(timeout=10) as client, \
            httpx.AsyncClient(timeout=10, headers=auth) as publisher:
        login = await client.post(f"{base}/api/session",
                                  json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        yield Site(base, client, publisher, clock, data, app)


class TimelapseBrowser(Browser):
    EVENTS = (*Browser.EVENTS, "timelapse2v")


def ffprobe(path: Path) -> dict[str, Any]:
    """What ffprobe finds in a video: the first video stream (frames counted) and the format."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,pix_fmt,width,height,nb_read_frames,avg_frame_rate:format=duration,"
         "format_name", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60).stdout
    data = json.loads(out)
    return {**data["streams"][0], **data["format"]}


async def timelapses(env: PrinterEnv) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = await env.get("/api/timelapses")
    return answer


async def wait_state(env: PrinterEnv, state: str, *, within: float = 90) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        items = await timelapses(env)
        return items[0] if items and items[0]["state"] == state else None

    return await wait_for(reached, within=within, what=f"the newest timelapse to be {state}")


async def camera_running(env: PrinterEnv) -> None:
    async def frames() -> bool:
        return (await env.printer_status())["camera"]["frames"] > 2

    await wait_for(lambda: env.retrying(frames()), within=20, what="the printer camera's frames")


async def to_layer(env: PrinterEnv, layer: int, *, total: int, frames: int) -> None:
    """The stand-in prints ``layer``; wait until the recording has ``frames`` frames.

    A layer at a time: a real layer takes seconds to minutes, but a loaded test machine may
    stall the stand-in's camera (0.2 s a frame) longer than a fast stand-in layer lasts."""
    await env.standin.printer.partial(gcode_state="RUNNING", layer_num=layer,
                                      total_layer_num=total, mc_percent=layer * 100 // total)

    async def taken() -> bool:
        items = await timelapses(env)
        return bool(items) and items[0]["frames"] == frames

    await wait_for(taken, what=f"frame {frames} at layer {layer}")


async def test_a_print_on_the_standin_printer_ends_in_a_ready_video(tmp_path: Path) -> None:
    layers = 12
    async with start_env(tmp_path) as env:
        await camera_running(env)
        browser = TimelapseBrowser()
        await browser.client.connect(env.base, headers={"Cookie": env.cookie, "Origin": env.base},
                                     transports=["websocket"], wait_timeout=10)
        printer = env.standin.printer
        try:
            await printer.partial(gcode_state="PREPARE", layer_num=0, total_layer_num=layers)
            for layer in range(1, layers + 1):
                await to_layer(env, layer, total=layers, frames=layer)
            await printer.partial(gcode_state="FINISH", mc_percent=100)
            ready = await wait_state(env, "ready")
            await wait_for(lambda: any(e["state"] == "ready" for e in browser.of("timelapse2v")),
                           what="timelapse2v saying ready")
        finally:
            await browser.client.disconnect()
        assert ready["frames"] == layers  # one per layer, though the camera sent many more
        assert ready["job"] == "stand-in benchy.3mf"
        assert (ready["mode"], ready["trigger"]) == ("layer", "printer")
        assert ready["endedAt"] and ready["startedAt"]
        states = [e["state"] for e in browser.of("timelapse2v")]
        assert states[0] == "recording" and "rendering" in states and states[-1] == "ready"
        frame_counts = [e["frames"] for e in browser.of("timelapse2v") if e["state"] == "recording"]
        assert max(frame_counts) == layers  # the live page's "recording, N frames"

        video = tmp_path / "video.mp4"
        response = await env.client.get(f"{env.base}/api/timelapses/{ready['id']}/video")
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["accept-ranges"] == "bytes"
        video.write_bytes(response.content)
        assert ready["sizeBytes"] >= len(response.content)
        probed = ffprobe(video)
        total = layers + held_frames(FPS)  # the last frame held for a second
        assert probed["codec_name"] == "h264" and probed["pix_fmt"] == "yuv420p"
        assert int(probed["nb_read_frames"]) == total
        assert probed["avg_frame_rate"] == f"{FPS}/1"
        assert (probed["width"], probed["height"]) == (640, 360)  # the stand-in camera's
        assert float(probed["duration"]) == pytest.approx(total / FPS, abs=0.05)
        assert ready["durationS"] == pytest.approx(total / FPS, abs=0.05)

        poster = await env.client.get(f"{env.base}/api/timelapses/{ready['id']}/poster")
        assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"
        assert poster.content[:3] == b"\xff\xd8\xff"
        # Frames are deleted once rendered (timelapse_keep_frames is off); nothing half-written.
        directory = env.data_dir / "timelapses" / str(ready["id"])
        assert sorted(p.name for p in directory.iterdir()) == ["poster.jpg", "video.mp4"]

        status = (await env.get("/status"))["timelapse"]
        assert status["recording"] is None and status["rendering"] is None
        assert status["usedBytes"] == ready["sizeBytes"] and status["lowSpace"] is False


async def test_range_requests_answer_206_with_the_part_asked_for(tmp_path: Path) -> None:
    async with start_env(tmp_path) as env:
        await camera_running(env)
        await env.standin.printer.play_print(layers=3, layer_s=0.4)  # a whole print, quickly
        ready = await wait_state(env, "ready")
        url = f"{env.base}/api/timelapses/{ready['id']}/video"
        whole = (await env.client.get(url)).content
        part = await env.client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.content == whole[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
        tail = await env.client.get(url, headers={"Range": "bytes=-50"})
        assert tail.status_code == 206 and tail.content == whole[-50:]
        beyond = await env.client.get(url, headers={"Range": f"bytes={len(whole) + 10}-"})
        assert beyond.status_code == 416
        assert "message" in beyond.json()


async def test_delete_removes_the_video_its_files_and_its_entry(tmp_path: Path) -> None:
    async with start_env(tmp_path) as env:
        await camera_running(env)
        await env.standin.printer.play_print(layers=2, layer_s=0.4)
        ready = await wait_state(env, "ready")
        directory = env.data_dir / "timelapses" / str(ready["id"])
        assert directory.is_dir()
        gone = await env.client.delete(f"{env.base}/api/timelapses/{ready['id']}")
        assert gone.status_code == 200 and gone.json()["success"] is True
        assert not directory.exists()
        assert await timelapses(env) == []
        again = await env.client.delete(f"{env.base}/api/timelapses/{ready['id']}")
        assert again.status_code == 404 and "GET /api/timelapses" in again.json()["message"]
        video = await env.client.get(f"{env.base}/api/timelapses/{ready['id']}/video")
        assert video.status_code == 404


async def test_every_timelapse_route_needs_a_login(tmp_path: Path) -> None:
    async with start_env(tmp_path) as env, httpx.AsyncClient(timeout=10) as stranger:
        for method, path in (("GET", "/api/timelapses"), ("POST", "/api/timelapses"),
                             ("POST", "/api/timelapses/1/stop"), ("DELETE", "/api/timelapses/1"),
                             ("GET", "/api/timelapses/1/video"),
                             ("GET", "/api/timelapses/1/poster")):
            response = await stranger.request(method, f"{env.base}{path}",
                                              headers={"Accept": "application/json"})
            assert response.status_code == 401, (method, path)


async def test_manual_start_and_stop_with_bad_input_answered_clearly(tmp_path: Path) -> None:
    async with start_env(tmp_path) as env:
        base = env.base
        bad = await env.client.post(f"{base}/api/timelapses", json={"mode": "hourly"})
        assert bad.status_code == 422 and "mode" in bad.json()["message"]
        extra = await env.client.post(f"{base}/api/timelapses", json={"jobb": "x"})
        assert extra.status_code == 422
        not_json = await env.client.post(f"{base}/api/timelapses", content=b"[1",
                                         headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400
        await camera_running(env)
        started = await env.client.post(f"{base}/api/timelapses",
                                        json={"job": "by hand", "mode": "interval"})
        assert started.status_code == 201, started.text
        body = started.json()
        assert (body["state"], body["trigger"], body["mode"]) == ("recording", "manual", "interval")
        busy = await env.client.post(f"{base}/api/timelapses", json={})
        assert busy.status_code == 409 and "stop it first" in busy.json()["message"]
        await wait_for(lambda: timelapses(env), what="the list")
        first = await wait_state(env, "recording")
        await wait_for(lambda: _frames_at_least(env, 1), what="the first frame")
        assert first["id"] == body["id"]
        not_ready = await env.client.get(f"{base}/api/timelapses/{body['id']}/video")
        assert not_ready.status_code == 409 and "recording" in not_ready.json()["message"]
        busy_delete = await env.client.delete(f"{base}/api/timelapses/{body['id']}")
        assert busy_delete.status_code == 409
        missing = await env.client.post(f"{base}/api/timelapses/999/stop")
        assert missing.status_code == 404
        stopped = await env.client.post(f"{base}/api/timelapses/{body['id']}/stop")
        assert stopped.status_code == 200 and stopped.json()["state"] in ("rendering", "ready")
        again = await env.client.post(f"{base}/api/timelapses/{body['id']}/stop")
        assert again.status_code == 409
        ready = await wait_state(env, "ready")
        assert ready["frames"] >= 1


async def _frames_at_least(env: PrinterEnv, count: int) -> bool:
    items = await timelapses(env)
    return bool(items) and items[0]["frames"] >= count



async def test_without_a_printer_recordings_are_by_interval_and_layer_mode_is_refused(
        logged_in: Env) -> None:
    env = logged_in
    status = (await env.client.get(f"{env.base}/status")).json()["timelapse"]
    assert (status["mode"], status["recording"], status["usedBytes"]) == ("interval", None, 0)
    assert (await env.client.get(f"{env.base}/api/timelapses")).json() == []
    layer = await env.client.post(f"{env.base}/api/timelapses", json={"mode": "layer"})
    assert layer.status_code == 409 and "needs a linked printer" in layer.json()["message"]
    long_job = await env.client.post(f"{env.base}/api/timelapses", json={"job": "x" * 201})
    assert long_job.status_code == 422 and "job" in long_job.json()["message"]
    two_lines = await env.client.post(f"{env.base}/api/timelapses", json={"job": "a\r\nb"})
    assert two_lines.status_code == 422, two_lines.text
    assert two_lines.json()["message"] == "job: must be one line of printable text"
    started = await env.client.post(f"{env.base}/api/timelapses", json={})
    assert started.status_code == 201 and started.json()["mode"] == "interval"
