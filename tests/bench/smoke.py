"""make bench in miniature, for CI: every row still runs and gives a number (no figures judged).

Nothing else runs the benchmarks, and they broke silently twice when the app changed under them.
Here each one runs with the smallest load that still exercises its path (2 browsers, a second a
point, a few frames), into a directory of its own, and the saved results are checked: every goal
row has a figure with a number in it and a verdict, and the timelapse and MQTT rows have their
measurements. The figures themselves mean nothing at this size; `make bench` is for those.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "build" / "bench-smoke"

RUNS = [
    ["goals.py", "--out", str(OUT), "--browsers", "2", "--seconds", "1", "--drain", "1",
     "--write-seconds", "3", "--idle-seconds", "0.5", "--printer-seconds", "2",
     "--printer-browsers", "2"],
    ["timelapse_bench.py", "--out", str(OUT), "--frames", "20"],
    ["mqtt_bench.py", "--out", str(OUT), "--scanners", "2", "--beacons", "5", "--seconds", "3",
     "--idle-seconds", "1"],
]
GOAL_ROWS = 12  # goals.py's rows: REST, 5 relay, writes, 3 printer, 2 start-up, RSS
NUMBER = re.compile(r"\d")


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def problems() -> list[str]:
    found: list[str] = []
    goals_files = sorted(OUT.glob("goals-*.json"))
    if not goals_files:
        return [f"no goals-*.json in {OUT}"]
    goals = json.loads(goals_files[-1].read_text())["goals"]
    if len(goals) != GOAL_ROWS:
        found.append(f"goals.py saved {len(goals)} rows, not {GOAL_ROWS}: "
                     f"{[g['name'] for g in goals]}")
    for goal in goals:
        for part in ("figure", "anchor"):
            if not NUMBER.search(goal[part]) or "nan" in goal[part].lower():
                found.append(f"{goal['name']!r}: no {part} ({goal[part]!r})")
        if goal["held"] not in (True, False, None):
            found.append(f"{goal['name']!r}: no verdict ({goal['held']!r})")
    timelapse = json.loads((OUT / "timelapse.json").read_text())
    for key in ("renderWallS", "ffmpegCpuS", "videoBytes"):
        if not finite(timelapse.get(key)) or timelapse[key] <= 0:
            found.append(f"timelapse: {key} is {timelapse.get(key)!r}")
    mqtt_files = sorted(OUT.glob("mqtt-*.json"))
    mqtt = json.loads(mqtt_files[-1].read_text()) if mqtt_files else {}
    for key in ("cpu_pct", "rss_mb", "latency_ms_p50"):
        if not finite(mqtt.get(key)):
            found.append(f"mqtt: {key} is {mqtt.get(key)!r}")
    return found


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    for run in RUNS:
        print(f"\n--- bench smoke: {' '.join(run)}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / run[0]), *run[1:]], cwd=REPO, check=False)
        if done.returncode != 0:
            print(f"bench smoke: {run[0]} failed (exit {done.returncode}); run `make bench` to see "
                  "it at full size", file=sys.stderr)
            return 1
    found = problems()
    for problem in found:
        print(f"bench smoke: {problem}", file=sys.stderr)
    if not found:
        print(f"\nbench smoke: every row ran and gave a number ({OUT})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
