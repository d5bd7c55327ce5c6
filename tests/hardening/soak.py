"""make soak: the appliance under a working day's load for a while, through nginx.

`appliance serve` on a socket behind the project's nginx site (tests/nginx_site.py), 100 browsers
(Socket.IO over WebSocket with a login cookie), 2 publishers at 2 frames/s each, and 20 logins a
minute of which a quarter use a wrong password (each from its own CF-Connecting-IP address, as
through the tunnel), for ``--minutes`` (10). Printed at the end, and saved in build/soak/: errors
(a dropped browser, a refused or unacked frame, a login answered other than expected, an ERROR or
traceback in the server's log), the server's RSS at 1 minute and at the end, and the p50/p95 of
frame latency (publisher's send to a browser's receipt)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the nginx site
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "bench"))
import relay_bench as rb  # the server process, frames, Socket.IO browsers and publishers
from nginx_site import nginx_running

WARMUP_S = 60.0  # RSS is compared from here on: caches and pools are full by then
LOGINS_PER_MIN = 20
FAILING_SHARE = 4  # every 4th login uses a wrong password


@dataclass
class Tally:
    errors: list[str] = field(default_factory=list)
    logins: dict[str, int] = field(default_factory=dict)
    frames_sent: int = 0

    def error(self, text: str) -> None:
        if len(self.errors) < 100:
            self.errors.append(text)


async def publish(publisher: rb.Publisher, frames: rb.Frames, nonce: bytes, parity: int,
                  fps: float, until: float, sent: dict[int, int], tally: Tally) -> None:
    """Frames with sequence numbers of one parity (the two publishers share the browsers' nonce)."""
    for n in itertools.count():
        due = time.monotonic() + 1 / fps
        if due > until:
            return
        seq = 2 * n + parity
        sent[seq], ack = await publisher.send(frames.binary(nonce, seq))
        tally.frames_sent += 1
        try:
            await rb.settle(ack)
        except (TimeoutError, RuntimeError) as exc:
            tally.error(f"publisher {parity}: frame {seq}: {exc or 'no ack'}")
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def logins(base: str, until: float, tally: Tally) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for n in itertools.count():
            due = time.monotonic() + 60 / LOGINS_PER_MIN
            if due > until:
                return
            failing = n % FAILING_SHARE == 0
            # Good logins from addresses that never failed, bad ones from others: the soft
            # per-user limit lets the owner in while guesses are refused (README, Security).
            address = f"{'203.0.113' if failing else '198.51.100'}.{n % 250 + 1}"
            answer = await client.post(
                f"{base}/api/session", headers={"CF-Connecting-IP": address},
                json={"username": "bench", "password": "wrong" if failing else rb.PASSWORD})
            key = f"{'bad' if failing else 'good'} {answer.status_code}"
            tally.logins[key] = tally.logins.get(key, 0) + 1
            if answer.status_code != (401 if failing else 200) and not (
                    failing and answer.status_code == 429):
                tally.error(f"login {key}: {answer.text[:200]}")
            await asyncio.sleep(max(0.0, due - time.monotonic()))


async def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    tokens = [rb.prepare_ours(work)]
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(work / "data"),
           "APPLIANCE_CONFIG": str(work / "none.toml"), "APPLIANCE_RADIO": "virtual",
           "APPLIANCE_VIRTUAL_BEACONS": "3", "APPLIANCE_LOG_LEVEL": "INFO"}
    second = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "appliance", "token", "add", "second-camera"],
        env=env, text=True, check=True, capture_output=True, cwd=rb.REPO, timeout=60)
    tokens.append(second.stdout.strip())
    app_socket, log = work / "app.sock", work / "server.log"
    tally = Tally()
    async with rb.spawned([sys.executable, "-m", "appliance", "serve", "--unix-socket",
                           str(app_socket)], env=env, health="http://localhost/health",
                          uds=str(app_socket), log=log) as (pid, _ready), \
            nginx_running(work / "nginx", rb.free_port(), app_socket) as base:
        async with httpx.AsyncClient() as client:
            login = await client.post(f"{base}/api/session",
                                      json={"username": "bench", "password": rb.PASSWORD})
            login.raise_for_status()
            headers = {"Cookie": f"appliance_session={client.cookies['appliance_session']}",
                       "Origin": base}
        browsers = await rb.connect_browsers(base, args.browsers, headers, True, False)
        publishers = [rb.Publisher(await rb.open_socketio(
            base, headers={}, auth={"token": token}, deflate=False), binary=True)
            for token in tokens]
        nonce = os.urandom(8)
        for browser in browsers:
            browser.nonce = nonce
        frames = rb.Frames(args.frame_kb * 1024)
        started = time.monotonic()
        until = started + args.minutes * 60
        sent: dict[int, int] = {}
        work_tasks = [asyncio.create_task(publish(p, frames, nonce, i, args.fps, until, sent,
                                                  tally)) for i, p in enumerate(publishers)]
        work_tasks.append(asyncio.create_task(logins(base, until, tally)))
        await asyncio.sleep(WARMUP_S)
        rss_start = rb.proc_status_mb(pid, "VmRSS")
        while not all(t.done() for t in work_tasks):
            await asyncio.wait(work_tasks, timeout=60)
            print(f"  {(time.monotonic() - started) / 60:4.1f} min: {tally.frames_sent} frames "
                  f"sent, RSS {rb.proc_status_mb(pid, 'VmRSS'):.1f} MB, "
                  f"{len(tally.errors)} errors", flush=True)
        for task in work_tasks:
            with contextlib.suppress(Exception):
                task.result()
        await asyncio.sleep(2)  # the last frames reach the browsers
        rss_end = rb.proc_status_mb(pid, "VmRSS")
        latencies = [(got - sent[seq]) / 1e6 for browser in browsers
                     for seq, got in browser.received if seq in sent]
        dropped = sum(1 for b in browsers if b.task is None or b.task.done())
        if dropped:
            tally.error(f"{dropped} of {len(browsers)} browsers lost their connection")
        for closing in [*browsers, *publishers]:
            await closing.close()
    tally.errors += [f"server log: {line}" for line in log.read_text(errors="replace")
                     .splitlines() if "Traceback" in line or " ERROR " in line][:20]
    return {"minutes": args.minutes, "browsers": args.browsers, "publishers": len(publishers),
            "fps_per_publisher": args.fps, "frame_kb": args.frame_kb,
            "frames_sent": tally.frames_sent, "frames_received": len(latencies),
            "latency_p50_ms": round(rb.percentile(latencies, 0.50), 1),
            "latency_p95_ms": round(rb.percentile(latencies, 0.95), 1),
            "rss_mb_at_1_min": round(rss_start, 1), "rss_mb_at_end": round(rss_end, 1),
            "rss_growth_pct": round((rss_end / rss_start - 1) * 100, 1),
            "logins": tally.logins, "errors": tally.errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--browsers", type=int, default=100)
    parser.add_argument("--fps", type=float, default=2.0, help="frames/s per publisher (2 of them)")
    parser.add_argument("--frame-kb", type=int, default=150)
    parser.add_argument("--out", type=Path, default=rb.REPO / "build" / "soak")
    args = parser.parse_args(argv)
    if args.minutes * 60 <= WARMUP_S:
        parser.error(f"--minutes must be more than {WARMUP_S / 60:.0f} (the warm-up)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="appliance-soak-") as work:
        result = asyncio.run(run(args, Path(work)))
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    errors = result["errors"]
    assert isinstance(errors, list)
    print(f"soak: {len(errors)} errors, RSS {result['rss_mb_at_1_min']} -> "
          f"{result['rss_mb_at_end']} MB ({result['rss_growth_pct']} %), frame latency p50/p95 "
          f"{result['latency_p50_ms']}/{result['latency_p95_ms']} ms; saved in {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
