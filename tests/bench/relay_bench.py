"""Relay benchmark: frames per second and publish→receive latency, ours against the reference design.

One publisher sends 150 KiB JPEG-shaped frames as fast as acks allow to 1, 10 and 50 browsers,
through two relays started in the same run, each in its own process on a loopback port:

* ours: ``appliance serve`` (real login cookie and Origin for browsers, a publisher token); frames
  go in as a binary attachment of ``image`` with an ack and come out as ``image2v`` binary
  attachments, through the per-browser latest-frame-wins mailbox;
* baseline: tests/bench/baseline_relay.py, the reference's base64-in-JSON broadcast.

Both are measured with and without WebSocket ``permessage-deflate``: real browsers (Chrome,
Firefox, Safari) always offer it and hypercorn accepts it, so with real browsers the server
compresses every frame once per browser; ``--modes`` picks which to run.

Clients speak Engine.IO 4 / Socket.IO 5 directly over ``websockets`` (a few lines per packet type),
so the load generator does the least work per frame a client can: it reads the frame's sequence
number from its first 24 bytes (base64: 32 characters) and never decodes the rest. The publisher
and all browsers run in this process on one asyncio loop, pinned to one CPU; the relay under test
is pinned to another (on 2 CPUs: one each), so the relay never gets more than one core (it is a
single asyncio process either way) and the clients never starve it. The CPU each side used is
reported, so a client-bound result would show.

Run: ``python tests/bench/relay_bench.py --out build/bench`` (``make bench``); ``--help`` for knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import resource
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BASELINE = HERE / "baseline_relay.py"

FRAME_BYTES = 150 * 1024
# The frame's first 24 bytes: JPEG SOI + APP0 marker, an 8-byte run nonce, an 8-byte sequence number,
# 4 bytes of padding. 24 is a multiple of 3, so its base64 is exactly the message's first 32 characters
# and base64(head) + base64(rest) == base64(head + rest): the body is encoded once per run.
HEAD = struct.Struct(">4s8sQ4x")
JPEG_APP0 = b"\xff\xd8\xff\xe0"
HEAD_B64 = HEAD.size * 4 // 3
BODIES = 4  # distinct random bodies, cycled, so nothing downstream sees the same bytes twice in a row
PASSWORD = "bench horse battery staple"
WS_PATH = "/socket.io/?EIO=4&transport=websocket"

STARTUP_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 30.0
ACK_TIMEOUT_S = 30.0
WARMUP_FRAMES = 5
WARMUP_TIMEOUT_S = 30.0
CONNECT_BATCH = 10  # browsers connecting at once
IDLE_PROBE_S = 2.0  # how long the machine's background load is sampled before the run
BUSY_WARN_PCT = 15.0
# The issue's goal: at least 3x the baseline's per-browser frames per second at 50 browsers.
GOAL_BROWSERS = 50
GOAL_RATIO = 3.0


# -- frames --------------------------------------------------------------------------------------
class Frames:
    """JPEG-shaped 150 KiB frames carrying (nonce, seq) in their first bytes; the relays check only
    the magic bytes. Binary for ours, base64 text for the baseline, both built cheaply per frame."""

    def __init__(self, size: int) -> None:
        rng = random.Random(1234)
        rest = size - HEAD.size
        self._bodies = [rng.randbytes(rest - 2) + b"\xff\xd9" for _ in range(BODIES)]
        self._bodies_b64 = [base64.b64encode(body).decode("ascii") for body in self._bodies]

    def binary(self, nonce: bytes, seq: int) -> bytes:
        return HEAD.pack(JPEG_APP0, nonce, seq) + self._bodies[seq % BODIES]

    def base64(self, nonce: bytes, seq: int) -> str:
        head = base64.b64encode(HEAD.pack(JPEG_APP0, nonce, seq)).decode("ascii")
        return head + self._bodies_b64[seq % BODIES]


def parse_head(head: bytes) -> tuple[bytes, int] | None:
    if len(head) < HEAD.size:
        return None
    magic, nonce, seq = HEAD.unpack_from(head)
    return (nonce, seq) if magic == JPEG_APP0 else None


# -- Socket.IO over a bare WebSocket -------------------------------------------------------------
async def open_socketio(url: str, *, headers: dict[str, str], auth: dict[str, str] | None,
                        deflate: bool) -> ClientConnection:
    """Engine.IO open, Socket.IO connect to "/"; raises when refused."""
    ws = await ws_connect(url.replace("http", "ws", 1) + WS_PATH, additional_headers=headers,
                          compression="deflate" if deflate else None, max_size=None,
                          ping_interval=None, open_timeout=CONNECT_TIMEOUT_S)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            opened = await ws.recv()
            if not isinstance(opened, str) or not opened.startswith("0"):
                msg = f"expected an Engine.IO open packet, got {opened!r:.80}"
                raise RuntimeError(msg)
            await ws.send("40" + (json.dumps(auth) if auth else ""))
            while True:
                reply = await ws.recv()
                if isinstance(reply, str) and reply.startswith("40"):
                    return ws
                if isinstance(reply, str) and reply.startswith("44"):
                    msg = f"Socket.IO connection refused: {reply[2:]}"
                    raise RuntimeError(msg)
    except BaseException:
        await ws.close()
        raise


@dataclass
class Browser:
    """One browser: records (seq, receive time) of every frame of the current run."""

    ws: ClientConnection
    binary: bool  # ours: image2v with a binary attachment; baseline: base64 inside JSON text
    wire: bool = False  # ours over /frames: one binary message a frame (a header, the image)
    nonce: bytes = b""
    received: list[tuple[int, int]] = field(default_factory=list)
    last_seq: int = -1
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    def _frame(self, head: bytes, now: int) -> None:
        parsed = parse_head(head)
        if parsed and parsed[0] == self.nonce:
            self.received.append((parsed[1], now))
            self.last_seq = parsed[1]

    async def _run(self) -> None:
        attachment = False
        async for message in self.ws:
            now = time.perf_counter_ns()
            if self.wire and isinstance(message, bytes):
                start = 2 + ((message[0] << 8) | message[1])  # past the header
                self._frame(message[start:start + HEAD.size], now)
            elif isinstance(message, bytes):
                if attachment:
                    self._frame(message[:HEAD.size], now)
                attachment = False
            elif message == "2":  # Engine.IO ping
                await self.ws.send("3")
            elif self.binary:
                attachment = message.startswith('451-["image2v"')
            elif message.startswith('42["image2v"'):
                # '42["image2v",{"image":"<base64>"}]': decode only the first 32 characters.
                key = message.find('"image":', 12)
                start = message.find('"', key + 8) + 1 if key > 0 else 0
                if start > 0:
                    with contextlib.suppress(ValueError):
                        self._frame(base64.b64decode(message[start:start + HEAD_B64]), now)

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


class Publisher:
    """Sends ``image`` with an ack id and waits for the ack; answers Engine.IO pings."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self._lock = asyncio.Lock()  # a placeholder and its attachment must go out back to back
        self._acks: dict[int, asyncio.Future[str]] = {}
        self._next_id = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for message in self.ws:
            if message == "2":
                async with self._lock:
                    await self.ws.send("3")
            elif isinstance(message, str) and message.startswith("43"):
                digits = message[2:message.index("[")]
                future = self._acks.pop(int(digits), None)
                if future and not future.done():
                    future.set_result(message[2 + len(digits):])

    async def send(self, frame: bytes | str) -> tuple[int, asyncio.Future[str]]:
        """Send one frame; returns (send time, the future of the relay's ack body)."""
        ack_id, self._next_id = self._next_id, self._next_id + 1
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        async with self._lock:
            sent = time.perf_counter_ns()
            if isinstance(frame, bytes):
                await self.ws.send(f'451-{ack_id}["image",{{"_placeholder":true,"num":0}}]')
                await self.ws.send(frame)
            else:
                await self.ws.send(f'42{ack_id}["image",{{"image":"{frame}"}}]')
        return sent, future

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


# -- the relays under test -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_fields() -> list[int]:
    """/proc/stat's first line: user nice system idle iowait irq softirq steal ..., in ticks."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields + [0] * (8 - len(fields))


def machine_busy_s() -> float:
    """CPU seconds all CPUs ran anything here since boot: not idle, not stolen (from /proc/stat;
    guest time is already in user)."""
    fields = _cpu_fields()
    return (sum(fields[:8]) - fields[3] - fields[4] - fields[7]) / os.sysconf("SC_CLK_TCK")


def machine_steal_s() -> float:
    """CPU seconds since boot that the hypervisor gave to others while this machine wanted them
    (steal): a shared host's load, which slows every figure without showing in any process."""
    return _cpu_fields()[7] / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _tail(log: Path | None, lines: int = 20) -> str:
    """The end of a server's log, for the error that says it did not start."""
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; the end of {log}:\n" + "\n".join(tail)


@contextlib.asynccontextmanager
async def spawned(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO,
                  health: str, uds: str | None = None, cpus: set[int] | None = None,
                  log: Path | None = None) -> AsyncIterator[tuple[int, float]]:
    """A server process, ready: (pid, seconds from spawn to its ``health`` URL answering 200).
    Its output goes to ``log`` when given (the reference's eventlet is chatty), else to ours."""
    spawned_at = time.perf_counter()
    sink = log.open("ab") if log else None
    proc = await asyncio.create_subprocess_exec(*argv, env=env or dict(os.environ), cwd=cwd,
                                                stdout=sink or subprocess.DEVNULL, stderr=sink)
    try:
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)
        transport = httpx.AsyncHTTPTransport(uds=uds) if uds else None
        async with httpx.AsyncClient(transport=transport) as client:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if proc.returncode is not None:
                    msg = f"{argv[:3]} exited with status {proc.returncode} at start-up"
                    raise RuntimeError(msg + _tail(log))
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(health)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    msg = f"{argv[:3]} did not answer {health} within {STARTUP_TIMEOUT_S} s"
                    raise RuntimeError(msg + _tail(log))
                await asyncio.sleep(0.02)
        yield proc.pid, time.perf_counter() - spawned_at
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if sink:
            sink.close()


@dataclass
class Relay:
    name: str  # "ours" or "baseline"
    data_dir: Path
    token: str
    server_cpus: set[int] | None
    profile_dir: Path | None = None  # run the relay under cProfile, one .pstats per measurement
    python: str = sys.executable
    wire: bool = False  # ours: browsers on /frames instead of Socket.IO's image2v

    @property
    def binary(self) -> bool:
        return self.name == "ours"

    def cpu_s(self, pid: int) -> float:
        """The relay's CPU seconds so far (goals.py adds its workers' children)."""
        return proc_cpu_s(pid)

    def side_cpu_s(self) -> float:
        """CPU seconds of processes in front of the relay (goals.py: nginx); none here."""
        return 0.0

    def env(self) -> dict[str, str]:
        return {**os.environ, "APPLIANCE_DATA_DIR": str(self.data_dir / "data"),
                "APPLIANCE_CONFIG": str(self.data_dir / "none.toml"),
                "APPLIANCE_VIRTUAL_BEACONS": "0", "APPLIANCE_LOG_LEVEL": "WARNING"}

    def command(self, port: int, label: str) -> list[str]:
        python = [self.python]
        if self.profile_dir:
            python += ["-m", "cProfile", "-o", str(self.profile_dir / f"{self.name}-{label}.pstats")]
        if self.name == "ours":
            return [*python, "-m", "appliance", "serve", "--port", str(port)]
        return [*python, str(BASELINE), "--port", str(port)]

    @contextlib.asynccontextmanager
    async def running(self, label: str) -> AsyncIterator[tuple[str, int]]:
        """A fresh server process for one measurement: (base URL, pid)."""
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        async with spawned(self.command(port, label), env=self.env(), health=f"{base}/health",
                           cpus=self.server_cpus) as (pid, _ready):
            yield base, pid

    async def browser_auth(self, base: str) -> dict[str, str]:
        """Headers a logged-in browser sends (ours); the baseline has no login."""
        if self.name != "ours":
            return {}
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{base}/api/session",
                                         json={"username": "bench", "password": PASSWORD})
            response.raise_for_status()
            return {"Cookie": f"appliance_session={response.cookies['appliance_session']}",
                    "Origin": base}

    async def server_stats(self, base: str, headers: dict[str, str]) -> dict[str, Any]:
        if self.name != "ours":
            return {}
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"{base}/status", headers={"Cookie": headers["Cookie"]})).json()
            relay: dict[str, Any] = body.get("relay", {})
            return relay


def prepare_ours(data_dir: Path) -> str:
    """A user and a publisher token in a fresh data dir, through the real CLI; returns the token."""
    (data_dir / "none.toml").touch()
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir / "data"),
           "APPLIANCE_CONFIG": str(data_dir / "none.toml"), "APPLIANCE_LOG_LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "appliance"]
    subprocess.run([*cli, "user", "add", "bench", "--password-stdin"], input=PASSWORD + "\n",
                   text=True, env=env, check=True, capture_output=True, cwd=REPO, timeout=60)
    return subprocess.run([*cli, "token", "add", "bench-camera"], text=True, env=env, check=True,
                          capture_output=True, cwd=REPO, timeout=60).stdout.strip()


# -- one measurement -----------------------------------------------------------------------------
@dataclass
class Limits:
    frames: int
    seconds: float
    drain_s: float
    rate: float  # frames/s the publisher aims at; 0 = as fast as acks allow
    window: int  # frames sent and not yet acked, at most


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def open_wire(base: str, *, headers: dict[str, str], deflate: bool) -> ClientConnection:
    """A dashboard's /frames socket (ours)."""
    return await ws_connect(base.replace("http", "ws", 1) + "/frames", additional_headers=headers,
                            compression="deflate" if deflate else None, max_size=None,
                            ping_interval=None, open_timeout=CONNECT_TIMEOUT_S)


async def connect_browsers(base: str, count: int, headers: dict[str, str], binary: bool,
                           deflate: bool, *, wire: bool = False) -> list[Browser]:
    browsers: list[Browser] = []
    try:
        for start in range(0, count, CONNECT_BATCH):
            batch = await asyncio.gather(*(
                open_wire(base, headers=headers, deflate=deflate) if wire else
                open_socketio(base, headers=headers, auth=None, deflate=deflate)
                for _ in range(start, min(count, start + CONNECT_BATCH))))
            browsers.extend(Browser(ws, binary, wire) for ws in batch)
    except BaseException:
        for browser in browsers:
            await browser.close()
        raise
    for browser in browsers:
        browser.start()
    return browsers


async def settle(ack: asyncio.Future[str]) -> None:
    async with asyncio.timeout(ACK_TIMEOUT_S):
        body = await ack
    if '"ok":false' in body:
        msg = f"the relay refused a frame: {body}"
        raise RuntimeError(msg)


async def publish_run(publisher: Publisher, browsers: list[Browser], frames: Frames, *,
                      limits: Limits) -> tuple[bytes, dict[int, int], int]:
    """Publish up to ``limits.frames`` frames within ``limits.seconds``, at most ``limits.window``
    of them unacked; returns (nonce, send times by sequence number, time the last ack came)."""
    nonce = secrets.token_bytes(8)
    for browser in browsers:
        browser.nonce = nonce
    sent: dict[int, int] = {}
    pending: deque[asyncio.Future[str]] = deque()
    start = time.perf_counter_ns()
    deadline = start + int(limits.seconds * 1e9)
    seq = 0
    while seq < limits.frames and time.perf_counter_ns() < deadline:
        if limits.rate > 0:
            due = start + int(seq / limits.rate * 1e9)
            await asyncio.sleep(max(0.0, (due - time.perf_counter_ns()) / 1e9))
        frame = frames.binary(nonce, seq) if publisher.binary else frames.base64(nonce, seq)
        sent[seq], ack = await publisher.send(frame)
        pending.append(ack)
        if len(pending) >= limits.window:
            await settle(pending.popleft())
        seq += 1
    while pending:
        await settle(pending.popleft())
    return nonce, sent, time.perf_counter_ns()


async def wait_until(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def measure(relay: Relay, browsers_n: int, deflate: bool, limits: Limits,
                  frames: Frames) -> dict[str, Any]:
    label = f"deflate-{'on' if deflate else 'off'}-{browsers_n}"
    async with relay.running(label) as (base, pid):
        headers = await relay.browser_auth(base)
        auth = {"token": relay.token} if relay.name == "ours" else None
        browsers = await connect_browsers(base, browsers_n, headers, relay.binary, deflate,
                                          wire=relay.wire)
        # The publisher is a camera client (python-socketio over aiohttp), which offers no deflate.
        publisher = Publisher(await open_socketio(base, headers={}, auth=auth,
                                                  deflate=False), relay.binary)
        try:
            # Warm-up: connections, caches and allocators, then every browser has the last frame.
            warmup = Limits(WARMUP_FRAMES, WARMUP_TIMEOUT_S, 0, 0, 1)
            _nonce, warm, _end = await publish_run(publisher, browsers, frames, limits=warmup)
            if not await wait_until(lambda: all(b.last_seq == len(warm) - 1 for b in browsers),
                                    WARMUP_TIMEOUT_S):
                msg = f"{relay.name}: warm-up frames did not reach every browser"
                raise RuntimeError(msg)
            stats_before = await relay.server_stats(base, headers)
            for browser in browsers:
                browser.received.clear()
                browser.last_seq = -1

            cpu_server0, cpu_client0, busy0 = relay.cpu_s(pid), self_cpu_s(), machine_busy_s()
            steal0 = machine_steal_s()
            cpu_side0 = relay.side_cpu_s()
            _nonce, sent, publish_end = await publish_run(publisher, browsers, frames, limits=limits)
            final = len(sent) - 1
            complete = await wait_until(lambda: all(b.last_seq == final for b in browsers),
                                        limits.drain_s)
            end = time.perf_counter_ns()
            cpu_server, cpu_client = relay.cpu_s(pid) - cpu_server0, self_cpu_s() - cpu_client0
            cpu_side = relay.side_cpu_s() - cpu_side0
            cpu_other = max(0.0, machine_busy_s() - busy0 - cpu_server - cpu_client - cpu_side)
            steal = machine_steal_s() - steal0
            peak_rss = proc_status_mb(pid, "VmHWM")
            stats_after = await relay.server_stats(base, headers)
            # A browser whose reader ended before we closed it was disconnected by the relay.
            disconnected = sum(1 for b in browsers if b.task and b.task.done())
        finally:
            await publisher.close()
            for browser in browsers:
                await browser.close()

    first_sent = sent[0]
    window_s = (end - first_sent) / 1e9
    latencies = [(t - sent[seq]) / 1e6 for b in browsers for seq, t in b.received if seq in sent]
    per_browser_fps = []
    for b in browsers:
        last = b.received[-1][1] if b.received else end
        # A browser that never got the final frame was still receiving at the drain deadline.
        stop = last if b.last_seq == final else end
        per_browser_fps.append(len(b.received) / max(1e-9, (stop - first_sent) / 1e9))
    delivered = sum(len(b.received) for b in browsers)
    reordered = sum(1 for b in browsers for (s1, _), (s2, _) in zip(b.received, b.received[1:],
                                                                   strict=False) if s2 <= s1)
    result: dict[str, Any] = {
        "relay": relay.name, "wire": relay.wire, "browsers": browsers_n, "deflate": deflate,
        "published": len(sent),
        "publish_s": (publish_end - first_sent) / 1e9,
        "accepted_fps": len(sent) / max(1e-9, (publish_end - first_sent) / 1e9),
        "window_s": window_s,
        "all_got_last_frame": complete,
        "delivered": delivered,
        "not_delivered": len(sent) * browsers_n - delivered,
        "reordered": reordered,
        "browsers_disconnected": disconnected,
        "fps_per_browser_mean": statistics.fmean(per_browser_fps),
        "fps_per_browser_min": min(per_browser_fps),
        "deliveries_per_s": delivered / max(1e-9, window_s),
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "max": max(latencies, default=float("nan")),
                       "mean": statistics.fmean(latencies) if latencies else float("nan")},
        "server_cpu_pct": 100 * cpu_server / window_s,
        "client_cpu_pct": 100 * cpu_client / window_s,
        "side_cpu_pct": 100 * cpu_side / window_s,  # nginx in front, when there is one
        "other_cpu_pct": 100 * cpu_other / window_s,  # everything else, kernel work included
        "steal_cpu_pct": 100 * steal / window_s,  # taken by the host for other machines
        "server_peak_rss_mb": peak_rss,
    }
    if stats_after:
        result["server_frames_in"] = stats_after.get("framesIn", 0) - stats_before.get("framesIn", 0)
        result["server_frames_dropped"] = (stats_after.get("framesDropped", 0)
                                           - stats_before.get("framesDropped", 0))
    return result


# -- report --------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("python-socketio", "python-engineio", "hypercorn", "wsproto", "websockets",
                    "quart", "aiosqlite"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "appliance"],
                                capture_output=True, text=True, check=False).stdout.strip())
    return {"nproc": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": model,
            "python": platform.python_version(), "platform": platform.platform(),
            "packages": versions, "git_commit": commit, "appliance_dirty": dirty,
            # Other work on the machine skews the numbers: compare the load with the CPU count.
            "loadavg_at_start": os.getloadavg()}


def table(results: list[dict[str, Any]]) -> str:
    head = (f"{'ws deflate':<10} {'browsers':>8} {'relay':<8} {'accepted':>9} {'fps/browser':>11} "
            f"{'min':>6} {'deliv/s':>8} {'delivered':>9} {'not deliv':>9} {'p50 ms':>8} "
            f"{'p95 ms':>8} {'srv CPU':>7} {'cli CPU':>7} {'other':>6} {'steal':>6} {'srv RSS':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{'on' if r['deflate'] else 'off':<10} {r['browsers']:>8} {r['relay']:<8} "
            f"{r['accepted_fps']:>9.1f} {r['fps_per_browser_mean']:>11.1f} "
            f"{r['fps_per_browser_min']:>6.1f} {r['deliveries_per_s']:>8.0f} {r['delivered']:>9} "
            f"{r['not_delivered']:>9} {r['latency_ms']['p50']:>8.1f} {r['latency_ms']['p95']:>8.1f} "
            f"{r['server_cpu_pct']:>6.0f}% {r['client_cpu_pct']:>6.0f}% {r['other_cpu_pct']:>5.0f}% "
            f"{r['steal_cpu_pct']:>5.0f}% {r['server_peak_rss_mb']:>5.0f}MB")
    lines.append("")
    lines.append("ours/baseline, per-browser delivered fps (accepted fps); p50 latency ours vs baseline")
    for deflate in (False, True):
        for n in sorted({r["browsers"] for r in results}):
            pair = {r["relay"]: r for r in results if r["browsers"] == n and r["deflate"] == deflate}
            if len(pair) != 2:
                continue
            ours, base = pair["ours"], pair["baseline"]
            lines.append(
                f"  deflate {'on ' if deflate else 'off'} {n:>3} browsers: "
                f"{ours['fps_per_browser_mean'] / base['fps_per_browser_mean']:5.2f}x "
                f"({ours['accepted_fps'] / base['accepted_fps']:.2f}x); "
                f"p50 {ours['latency_ms']['p50']:.0f} ms vs {base['latency_ms']['p50']:.0f} ms")
            if n == GOAL_BROWSERS:
                ratio = ours["fps_per_browser_mean"] / base["fps_per_browser_mean"]
                lines.append(f"    goal >= {GOAL_RATIO:g}x at {n} browsers: "
                             f"{'met' if ratio >= GOAL_RATIO else 'NOT met'}")
    return "\n".join(lines)


DEFINITIONS = """\
accepted    frames the relay acked per second of publishing (publish side; ack-paced publisher)
fps/browser frames one browser received / (its last receive - first publish), mean over browsers;
            min = the slowest browser. This is the fps a viewer sees; the 3x goal is about it.
deliv/s     all browsers' received frames / (last receive - first publish)
not deliv   published x browsers - delivered. Ours: dropped on purpose (latest frame wins, a browser
            always gets the newest frame); baseline: still queued in the server at the drain deadline
p50/p95     publish (before the send) -> receive (message complete at the browser), all deliveries
srv/cli CPU CPU time / wall time of the relay process and of this process (publisher + browsers);
            each is pinned to its own CPU when there are 2 or more, so ~100% means saturated
other       CPU used by everything else on the machine meanwhile (100% = one CPU). It includes
            kernel work done for the benchmark (loopback networking, writeback of ours' SQLite
            writes: up to ~20% at high fps); much more means other work competed with the run
steal       CPU time the host gave to other machines while this one wanted it (/proc/stat's steal;
            100% = one CPU). Not in 'other': it is work that never ran here, and it slows all of it
srv RSS     the relay process's peak resident memory (VmHWM); a fresh process per row"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench",
                        help="directory for the JSON and the table (default build/bench)")
    parser.add_argument("--browsers", default="1,10,50", help="browser counts (default 1,10,50)")
    parser.add_argument("--relays", default="ours,baseline", help="ours,baseline (default both)")
    parser.add_argument("--modes", default="off,on",
                        help="WebSocket permessage-deflate offered by browsers: off,on (default both)")
    parser.add_argument("--frames", type=int, default=300, help="frames per measurement (300)")
    parser.add_argument("--seconds", type=float, default=8.0, help="publishing time cap (8 s)")
    parser.add_argument("--drain", type=float, default=6.0,
                        help="time after publishing for frames to arrive (6 s)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="publisher frames/s (default 0: as fast as acks allow)")
    parser.add_argument("--window", type=int, default=1,
                        help="frames the publisher may have unacked (default 1: wait for each ack)")
    parser.add_argument("--frame-bytes", type=int, default=FRAME_BYTES, help="frame size (150 KiB)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin relay and clients to CPUs")
    parser.add_argument("--profile", action="store_true",
                        help="run each relay under cProfile (slower!); .pstats files in --out")
    return parser.parse_args(argv)


def cpu_split(no_pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(relay CPUs, client CPUs): the first usable CPU for the relay, the rest for the clients."""
    usable = sorted(os.sched_getaffinity(0))
    if no_pin or len(usable) < 2:
        return None, None
    return {usable[0]}, set(usable[1:])


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def run(args: argparse.Namespace, data_dir: Path, token: str,
              server_cpus: set[int] | None) -> list[dict[str, Any]]:
    frames = Frames(args.frame_bytes)
    limits = Limits(args.frames, args.seconds, args.drain, args.rate, args.window)
    profile_dir = args.out if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    relays = [Relay(name, data_dir, token, server_cpus, profile_dir)
              for name in args.relays.split(",")]
    results = []
    for mode in args.modes.split(","):
        for n in (int(x) for x in args.browsers.split(",")):
            for relay in relays:  # ours and the baseline back to back, so each pair is comparable
                print(f"  {relay.name:<8} deflate {mode:<3} {n:>3} browsers ...", end="", flush=True)
                result = await measure(relay, n, mode == "on", limits, frames)
                print(f" {result['fps_per_browser_mean']:6.1f} fps/browser, "
                      f"p50 {result['latency_ms']['p50']:.0f} ms", flush=True)
                if result["browsers_disconnected"] or result["reordered"]:
                    print(f"  WARNING: {result['browsers_disconnected']} browsers disconnected, "
                          f"{result['reordered']} frames out of order", flush=True)
                results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()  # before pinning, so cpus_usable is what the run was given
    server_cpus, client_cpus = cpu_split(args.no_pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    busy, steal = machine_busy_s(), machine_steal_s()
    time.sleep(IDLE_PROBE_S)
    info["busy_before_pct"] = 100 * (machine_busy_s() - busy) / IDLE_PROBE_S
    info["steal_before_pct"] = 100 * (machine_steal_s() - steal) / IDLE_PROBE_S
    if info["busy_before_pct"] > BUSY_WARN_PCT:
        print(f"WARNING: the machine was {info['busy_before_pct']:.0f}% busy (of one CPU) before the "
              "run; other work will lower the numbers (see the 'other' column)", flush=True)
    started = datetime.now(UTC)
    print(f"relay benchmark: {args.frame_bytes // 1024} KiB frames, up to {args.frames} frames or "
          f"{args.seconds:g} s per row; relay on CPU {sorted(server_cpus or [])}, clients on "
          f"{sorted(client_cpus or [])}; Python {info['python']}, {info['nproc']} CPUs, load "
          f"{info['loadavg_at_start'][0]:.1f}", flush=True)
    with workdir() as data_dir:
        token = prepare_ours(data_dir) if "ours" in args.relays else ""
        results = asyncio.run(run(args, data_dir, token, server_cpus))
    text = table(results)
    print()
    print(text)
    print()
    print(DEFINITIONS)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    report = {"started": started.isoformat(), "loadavg_at_end": os.getloadavg(),
              "seconds": (datetime.now(UTC) - started).total_seconds(),
              "machine": info, "settings": {**vars(args), "out": str(args.out),
                                            "relay_cpus": sorted(server_cpus or []),
                                            "client_cpus": sorted(client_cpus or []),
                                            "warmup_frames": WARMUP_FRAMES},
              "definitions": DEFINITIONS, "results": results}
    (args.out / f"relay-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"relay-{stamp}.txt").write_text(
        f"{started.isoformat()}  {json.dumps(info)}\n\n{text}\n\n{DEFINITIONS}\n")
    print(f"\nsaved {args.out / f'relay-{stamp}.json'} and .txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
