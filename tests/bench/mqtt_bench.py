"""Issue 16's figure: 10 scanners x 50 beacons at 1 sighting/s each, through mosquitto.

The main appliance runs as `appliance serve` (its own radio hears nothing) on the embedded
broker's files; ten scanner clients log in with credentials issued as `appliance scanner add`
issues them and each sends a batch a second with all 50 beacons (500 sightings/s in all). A
logged-in browser (a real Socket.IO client) listens for presence2v. Measured over ``--seconds``:

* the app's CPU (% of one core, from /proc/<pid>/stat) and RSS at the end;
* the latency from a scanner's publish of a sighting to the presence2v it causes in the browser,
  p50/p95: twice a second one batch also carries a beacon never seen before, whose first
  sighting makes a presence2v (a new beacon is a change; a known one staying put is none);
* the anchor: the same app, same browser, no sightings (its idle CPU).

Printed and saved as build/bench/mqtt-<UTC time>.{txt,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relay_bench as rb

from appliance.auth import scanners as scanner_auth
from appliance.mqtt import broker, sightings
from appliance.settings import Settings
from appliance.store.db import Database
from appliance_sim.printer.broker import StandinBroker

SITE = "bench"
PROBES_PER_S = 2


def _settings(data_dir: Path, port: int) -> Settings:
    return Settings(data_dir=data_dir, mqtt_embedded=True, mqtt_embedded_port=port, site=SITE)


async def _issue(settings: Settings, count: int) -> dict[str, str]:
    db = await Database.open(settings.db_path)
    try:
        passwords = {f"room-{i}": await scanner_auth.add_scanner(
            db, f"room-{i}", area=None, now=datetime.now(UTC)) for i in range(count)}
        broker.write_files(settings, await scanner_auth.all_scanners(db))
    finally:
        await db.close()
    return passwords


def _address(n: int) -> str:
    return ":".join(f"{b:02X}" for b in (0xF1, 0, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF, 1))


async def _browser(base: str, cookie: str, sent: dict[str, int], latencies: list[float]) -> None:
    ws = await rb.open_socketio(base, headers={"Cookie": cookie, "Origin": base}, auth=None,
                                deflate=False)
    try:
        async for message in ws:
            now = time.perf_counter_ns()
            if message == "2":
                await ws.send("3")
            elif isinstance(message, str) and message.startswith('42["presence2v"'):
                payload = json.loads(message[2:])[1]
                at = sent.pop(payload.get("id", ""), None)
                if at is not None:
                    latencies.append((now - at) / 1e6)
    finally:
        await ws.close()


async def _scanner(port: int, name: str, password: str, beacons: int, index: int,
                   probes: list[str], sent: dict[str, int], stop: asyncio.Event) -> int:
    batches = 0
    topic = sightings.sightings_topic(SITE, name)
    async with aiomqtt.Client("127.0.0.1", port, username=name, password=password) as client:
        while not stop.is_set():
            started = time.perf_counter()
            now = datetime.now(UTC)
            batch = [sightings.Sighting(b, _address(b), -50 - (index * 3 + b) % 40, now)
                     for b in range(1, beacons + 1)]
            probe = None
            if probes and index < PROBES_PER_S:  # the first scanners carry the probes
                probe = probes.pop()
                batch.append(sightings.Sighting(9999, probe, -70, now))
            payload = sightings.encode(batch)
            if probe:
                sent[probe] = time.perf_counter_ns()
            await client.publish(topic, payload, qos=0)
            batches += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (time.perf_counter() - started)))
    return batches


async def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = work / "data"
    port = rb.free_port()
    settings = _settings(data, port)
    rb.prepare_ours(work)  # the user `bench`
    passwords = await _issue(settings, args.scanners)
    where = broker.directory(settings)
    mosquitto = StandinBroker(work, None, {}, port, password_file=where / broker.PASSWORD_FILE,
                              extra=f"acl_file {where / broker.ACL_FILE}\n"
                                    f"pid_file {where / broker.MOSQUITTO_PID}\n")
    await mosquitto.start()
    app_port = rb.free_port()
    base = f"http://127.0.0.1:{app_port}"
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data), "APPLIANCE_CONFIG": str(work / "none.toml"),
           "APPLIANCE_RADIO": "virtual", "APPLIANCE_VIRTUAL_BEACONS": "0",
           "APPLIANCE_LOG_LEVEL": "WARNING", "APPLIANCE_MQTT_EMBEDDED": "true",
           "APPLIANCE_MQTT_EMBEDDED_PORT": str(port), "APPLIANCE_SITE": SITE}
    try:
        async with rb.spawned([sys.executable, "-m", "appliance", "serve", "--port", str(app_port)],
                              env=env, health=f"{base}/health") as (pid, _ready):
            async with httpx.AsyncClient() as client:
                response = await client.post(f"{base}/api/session",
                                             json={"username": "bench", "password": rb.PASSWORD})
                cookie = f"appliance_session={response.cookies['appliance_session']}"
                async with asyncio.timeout(30):
                    while not await _status(client, base, cookie):  # noqa: ASYNC110 - another process
                        await asyncio.sleep(0.1)
                sent: dict[str, int] = {}
                latencies: list[float] = []
                browser = asyncio.create_task(_browser(base, cookie, sent, latencies))
                cpu0, t0 = rb.proc_cpu_s(pid), time.perf_counter()
                await asyncio.sleep(args.idle_seconds)
                idle_pct = 100 * (rb.proc_cpu_s(pid) - cpu0) / (time.perf_counter() - t0)
                probes = [_address(0x100000 + n) for n in range(int(args.seconds * PROBES_PER_S) + 4)]
                stop = asyncio.Event()
                scanners = [asyncio.create_task(_scanner(
                    port, name, password, args.beacons, i, probes, sent, stop))
                    for i, (name, password) in enumerate(passwords.items())]
                await asyncio.sleep(2.0)  # warm-up: every beacon known, every scanner connected
                latencies.clear()
                cpu1, t1 = rb.proc_cpu_s(pid), time.perf_counter()
                await asyncio.sleep(args.seconds)
                busy_pct = 100 * (rb.proc_cpu_s(pid) - cpu1) / (time.perf_counter() - t1)
                rss = rb.proc_status_mb(pid, "VmRSS")
                stop.set()
                batches = sum(await asyncio.gather(*scanners))
                status = (await client.get(f"{base}/status", headers={"Cookie": cookie})).json()
                browser.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await browser
    finally:
        await mosquitto.stop()
    return {"scanners": args.scanners, "beacons": args.beacons, "seconds": args.seconds,
            "cpu_pct": busy_pct, "idle_cpu_pct": idle_pct, "rss_mb": rss,
            "latency_ms_p50": rb.percentile(latencies, 50) if latencies else None,
            "latency_ms_p95": rb.percentile(latencies, 95) if latencies else None,
            "probes_seen": len(latencies), "batches_sent": batches, "mqtt": status["mqtt"]}


async def _status(client: httpx.AsyncClient, base: str, cookie: str) -> bool:
    body = (await client.get(f"{base}/status", headers={"Cookie": cookie})).json()
    return bool(body["mqtt"]["connected"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=rb.REPO / "build" / "bench")
    parser.add_argument("--scanners", type=int, default=10)
    parser.add_argument("--beacons", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    with rb.workdir() as work:
        result = asyncio.run(_run(args, work))
    p50, p95 = result["latency_ms_p50"], result["latency_ms_p95"]
    text = (f"MQTT: {args.scanners} scanners x {args.beacons} beacons at 1 sighting/s, "
            f"{args.seconds:g} s, load {os.getloadavg()[0]:.1f}\n"
            f"  main app CPU {result['cpu_pct']:.1f} % of a core (idle anchor "
            f"{result['idle_cpu_pct']:.1f} %), RSS {result['rss_mb']:.0f} MB\n"
            f"  sighting -> presence2v in a browser: p50 {p50 or float('nan'):.1f} ms, "
            f"p95 {p95 or float('nan'):.1f} ms ({result['probes_seen']} probes)\n"
            f"  batches sent {result['batches_sent']}, handled {result['mqtt']['batches']}, "
            f"dropped {result['mqtt']['dropped']}")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"mqtt-{stamp}.json").write_text(json.dumps(
        {"started": started.isoformat(), "machine": rb.machine_info(), **result}, indent=2,
        default=str) + "\n")
    (args.out / f"mqtt-{stamp}.txt").write_text(text + "\n")
    print(f"saved {args.out / f'mqtt-{stamp}.txt'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
