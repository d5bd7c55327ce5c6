"""Timelapse render benchmark: 300 frames of 1280x720 through the appliance's own render().

It measures what a print's end costs the Pi: the render's wall time and ffmpeg's CPU time (nice
19, RENDER_THREADS threads), and how late the app's event loop runs meanwhile (a 10 ms ticker's
lateness, p50/p95/max, idle and while rendering): the relay's frames wait on that loop. The frames
are ffmpeg's testsrc2 pattern with light noise as JPEGs, made before timing.

Run: ``python tests/bench/timelapse_bench.py --out build/bench`` (``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from appliance.timelapse.files import RecordingFiles
from appliance.timelapse.render import RENDER_THREADS, render

TICK_S = 0.01


def make_frames(files: RecordingFiles, count: int) -> int:
    files.create()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=30",
         "-vf", "noise=alls=3:allf=t", "-frames:v", str(count), "-q:v", "4",
         "-start_number", "1", str(files.frames_dir / "%06d.jpg")], check=True, timeout=600)
    return sum(p.stat().st_size for p in files.frames())


async def loop_lateness(stop: asyncio.Event) -> list[float]:
    """How late a TICK_S sleep wakes, in ms, until ``stop``."""
    late = []
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(TICK_S)
        late.append((time.perf_counter() - start - TICK_S) * 1000)
    return late


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2),
            "p95": round(ordered[int(len(ordered) * 0.95) - 1], 2), "max": round(ordered[-1], 2)}


async def bench(frames: int, fps: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        files = RecordingFiles(Path(tmp), 1)
        frame_bytes = make_frames(files, frames)
        stop = asyncio.Event()
        idle = asyncio.create_task(loop_lateness(stop))
        await asyncio.sleep(2)
        stop.set()
        idle_late = await idle
        stop = asyncio.Event()
        busy = asyncio.create_task(loop_lateness(stop))
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
            "loopLatenessIdleMs": summary(idle_late), "loopLatenessRenderingMs": summary(busy_late),
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
    late_idle, late_busy = result["loopLatenessIdleMs"], result["loopLatenessRenderingMs"]
    print(
        f"timelapse render: {result['frames']} frames of 1280x720 in {result['renderWallS']} s "
        f"({result['framesPerSecond']} frames/s), ffmpeg CPU {result['ffmpegCpuS']} s "
        f"({result['cpuCores']} cores, {RENDER_THREADS} threads, nice 19); video "
        f"{result['videoBytes']} bytes for {result['frameBytesTotal']} bytes of frames; event loop "
        f"late by p50/p95 {late_idle['p50']}/{late_idle['p95']} ms idle, "  # type: ignore[index]
        f"{late_busy['p50']}/{late_busy['p95']} ms rendering "  # type: ignore[index]
        f"(load {result['machine']['load1']}) -> {out / 'timelapse.json'}")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
