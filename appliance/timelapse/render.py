"""Rendering a recording's frames into an MP4 with Debian's ffmpeg, as a low-priority subprocess.

H.264 (yuv420p, the profile every phone and browser decodes), at ``fps`` frames a second, with
the last frame held for HOLD_LAST_S so a video does not end abruptly; ``-movflags +faststart``
puts the index first, so a browser can start playing and seek before it has the whole file. The
video and the poster are written under temporary names and renamed: a half-rendered video is
never where a ready one would be. A cancelled render kills ffmpeg and removes its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from appliance.errors import ApplianceError
from appliance.files import temporary_of
from appliance.timelapse.files import RecordingFiles

_LOGGER = logging.getLogger(__name__)

FFMPEG: Final = "ffmpeg"
FFPROBE: Final = "ffprobe"
INSTALL: Final = "sudo apt-get install ffmpeg"
# The last frame stays on screen this long: the finished print, not a cut.
HOLD_LAST_S: Final = 1.0
# A Pi 4 has four cores: two encode, two keep relaying frames and answering browsers.
RENDER_THREADS: Final = 2
# nice 19: the scheduler gives ffmpeg only the time nothing else wants.
NICENESS: Final = 19
# veryfast: about 3x the speed of ffmpeg's default on a Pi for ~10 % more bytes; CRF 23 is
# x264's default quality, sharp enough for a 1280x720 printer camera.
PRESET: Final = "veryfast"
CRF: Final = 23
POSTER_WIDTH: Final = 640
# ffmpeg's own complaints kept for the error message (it writes little at -loglevel error).
STDERR_KEPT: Final = 2000


class RenderError(ApplianceError):
    """ffmpeg could not make the video; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Rendered:
    frames: int  # frames of the video (recorded frames plus the held last frame)
    duration_s: float


def held_frames(fps: int) -> int:
    return round(fps * HOLD_LAST_S)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        msg = f"{name} is missing, so no video can be made: {INSTALL}"
        raise RenderError(msg)
    return found


async def _run(args: list[str], *, what: str, cwd: Path | None = None,
               on_line: Callable[[str], None] | None = None) -> str:
    """Run a command; its stdout's lines to ``on_line``; its stdout if it succeeds."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out: list[str] = []

    async def read_stdout() -> None:
        assert proc.stdout is not None  # noqa: S101 - PIPE above
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            out.append(line)
            if on_line is not None:
                on_line(line)

    async def read_stderr() -> bytes:
        assert proc.stderr is not None  # noqa: S101 - PIPE above
        return await proc.stderr.read()

    try:
        _, err = await asyncio.gather(read_stdout(), read_stderr())
        code = await proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if code != 0:
        text = err.decode(errors="replace").strip()[-STDERR_KEPT:] or f"exit status {code}"
        msg = f"{what} failed: {text}"
        raise RenderError(msg)
    return "\n".join(out)


async def frame_size(first: Path) -> tuple[int, int]:
    """Width and height of a frame, rounded down to even numbers (yuv420p needs them even)."""
    out = await _run([_tool(FFPROBE), "-v", "error", "-select_streams", "v:0", "-show_entries",
                      "stream=width,height", "-of", "csv=p=0", str(first)],
                     what=f"reading frame {first.name}")
    try:
        width, height = (int(part) for part in out.split(",")[:2])
    except ValueError:
        msg = f"cannot read the size of frame {first.name}: {out!r}"
        raise RenderError(msg) from None
    if width < 2 or height < 2:
        msg = f"frame {first.name} is {width}x{height}: too small for a video"
        raise RenderError(msg)
    return width - width % 2, height - height % 2


def ffmpeg_args(ffmpeg: str, *, pattern: str, fps: int, size: tuple[int, int],
                output: Path) -> list[str]:
    width, height = size
    scale = (f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
             f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,"
             f"tpad=stop_mode=clone:stop_duration={HOLD_LAST_S},format=yuv420p")
    return [
        "nice", "-n", str(NICENESS), ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-nostats", "-progress", "pipe:1", "-y",
        # Frames in name order (glob: a missing number leaves no gap), read one thread each.
        "-threads", "1", "-framerate", str(fps), "-pattern_type", "glob", "-i", pattern,
        "-filter_threads", "1", "-vf", scale, "-an",
        "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p",
        "-threads", str(RENDER_THREADS), "-movflags", "+faststart", "-f", "mp4", str(output),
    ]


def _put_in_place(*moves: tuple[Path, Path]) -> None:
    """Each temporary file synced (a power cut must not leave a renamed empty file), renamed."""
    for part, final in moves:
        with part.open("rb") as fh:
            os.fsync(fh.fileno())
        part.replace(final)


async def render(files: RecordingFiles, *, fps: int,
                 on_progress: Callable[[float], None]) -> Rendered:
    """``files``' frames into ``video.mp4`` and ``poster.jpg``; ``on_progress(0..1)`` as it goes."""
    frames = files.frames()
    if not frames:
        msg = "no frames were taken: no camera or publisher frame reached the appliance"
        raise RenderError(msg)
    ffmpeg = _tool(FFMPEG)
    extension = frames[0].suffix
    usable = [f for f in frames if f.suffix == extension]
    total = len(usable) + held_frames(fps)
    size = await frame_size(usable[0])

    def progress(line: str) -> None:
        key, _, value = line.partition("=")
        if key == "frame" and value.isdigit():
            on_progress(min(1.0, int(value) / total))

    video_part = temporary_of(files.video)
    try:
        await _run(ffmpeg_args(ffmpeg, pattern=f"*{extension}", fps=fps, size=size,
                               output=video_part), what="rendering the video", cwd=files.frames_dir,
                   on_line=progress)
        poster_part = temporary_of(files.poster)
        await _run(["nice", "-n", str(NICENESS), ffmpeg, "-hide_banner", "-nostdin", "-loglevel",
                    "error", "-y", "-i", str(usable[-1]), "-frames:v", "1", "-vf",
                    f"scale='min({POSTER_WIDTH},iw)':-2", "-q:v", "4", "-f", "image2",
                    "-c:v", "mjpeg", str(poster_part)], what="making the poster")
    except BaseException:
        for part in (video_part, temporary_of(files.poster)):
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        raise
    await asyncio.to_thread(_put_in_place, (video_part, files.video), (poster_part, files.poster))
    on_progress(1.0)
    return Rendered(frames=total, duration_s=round(total / fps, 3))
