"""Restarts: a recording cut by one resumes while its print runs, is rendered when the print
ended meanwhile; a render cut by one runs again; nothing half-written or orphaned survives."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from helpers import FakeClock, add_user, wait_for
from test_printer_link import CODE, app_on, running_standin
from test_timelapse import (
    camera_running,
    ffmpeg,  # noqa: F401 - a fixture
    ffprobe,
    noise_frames,  # noqa: F401 - a fixture
    publisher_site,
    timelapses,
    to_layer,
    wait_state,
)

from appliance.printer.errors import write_access_code
from appliance.timelapse.render import held_frames


async def prepared(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_access_code(data / "printer-access-code", CODE)
    await add_user(data)
    return data


def leftovers(recording_dir: Path) -> tuple[Path, Path]:
    """What a power cut leaves: a half-written frame, and a directory no recording owns."""
    part = recording_dir / "frames" / ".000099.jpg.tmp"
    part.write_bytes(b"\xff\xd8half a frame")
    orphan = recording_dir.parent / "4242"
    (orphan / "frames").mkdir(parents=True)
    return part, orphan


async def test_a_recording_cut_by_a_restart_resumes_while_the_print_runs(tmp_path: Path) -> None:
    async with running_standin(tmp_path) as standin:
        data = await prepared(tmp_path)
        async with app_on(standin, data) as env:
            await camera_running(env)
            for layer in (1, 2, 3):
                await to_layer(env, layer, total=10, frames=layer)
            first = (await timelapses(env))[0]
        part, orphan = leftovers(data / "timelapses" / str(first["id"]))
        await standin.printer.partial(layer_num=4)  # printed while the appliance was down
        async with app_on(standin, data, clock=FakeClock().restart()) as env:
            await camera_running(env)
            resumed = (await timelapses(env))[0]
            assert (resumed["id"], resumed["state"], resumed["frames"]) == (first["id"],
                                                                             "recording", 3)
            assert not part.exists() and not orphan.exists()
            await to_layer(env, 5, total=10, frames=4)
            await standin.printer.partial(gcode_state="FINISH", mc_percent=100)
            ready = await wait_state(env, "ready")
            assert (ready["id"], ready["frames"]) == (first["id"], 4)
            assert len(await timelapses(env)) == 1


async def test_a_print_that_ended_during_a_restart_is_rendered_from_its_frames(
        tmp_path: Path) -> None:
    async with running_standin(tmp_path) as standin:
        data = await prepared(tmp_path)
        async with app_on(standin, data) as env:
            await camera_running(env)
            for layer in (1, 2):
                await to_layer(env, layer, total=10, frames=layer)
        await standin.printer.partial(gcode_state="FINISH", mc_percent=100)
        async with app_on(standin, data, clock=FakeClock().restart()) as env:
            ready = await wait_state(env, "ready")
            assert ready["frames"] == 2 and ready["endedAt"] is not None
            video = data / "timelapses" / str(ready["id"]) / "video.mp4"
            assert int(ffprobe(video)["nb_read_frames"]) == 2 + held_frames(30)


def ffmpeg_writing(output: Path) -> int | None:
    """The pid of the ffmpeg that writes ``output``, if one runs."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(output).encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:  # it ended meanwhile
                continue
    return None


async def test_a_render_cut_by_a_restart_runs_again_and_leaves_no_half_file(
        tmp_path: Path, noise_frames: list[bytes]) -> None:  # noqa: F811 - the fixture
    data = tmp_path / "data"
    frames = 24
    async with publisher_site(data) as site:
        recording = await site.start()
        for n in range(frames):
            await site.frame(noise_frames[n % len(noise_frames)])
        part = data / "timelapses" / str(recording) / ".video.mp4.tmp"
        await site.stop(recording)
        pid = await wait_for(lambda: ffmpeg_writing(part), within=30, what="ffmpeg to start")
        os.kill(pid, signal.SIGSTOP)  # hold it mid-render while the appliance stops
        assert (await site.entry(recording) or {})["state"] == "rendering"
    assert ffmpeg_writing(part) is None  # stopping the appliance ended its ffmpeg too
    part.write_bytes(b"half a video")  # as a power cut would leave it
    async with publisher_site(data, clock=site.clock.restart()) as site:
        ready = await site.wait_state(recording, "ready")
        assert ready["frames"] == frames
        video = data / "timelapses" / str(recording) / "video.mp4"
        assert int(ffprobe(video)["nb_read_frames"]) == frames + held_frames(30)
        assert not part.exists()
        assert sorted(p.name for p in video.parent.iterdir()) == ["poster.jpg", "video.mp4"]
