"""Shared test helpers: a fake clock, factories, an injectable radio, a real server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from appliance.errors import RadioError
from appliance.presence import protocol
from appliance.presence.beacon_serial import READ_POLL_S, BeaconConsole
from appliance.presence.model import Advertisement, LinkInfo
from appliance.settings import Settings

T = TypeVar("T")

ADDR_A = "C0:FF:EE:00:00:01"
ADDR_B = "C0:FF:EE:00:00:02"


class FakeClock:
    """Monotonic and wall time that move only when a test says so; its sleepers wake when
    ``advance`` passes their deadline."""

    def __init__(self) -> None:
        self._mono = 10_000.0
        self._wall = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> datetime:
        return self._wall

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        sleeper = (self._mono + seconds, asyncio.get_running_loop().create_future())
        self._sleepers.append(sleeper)
        try:
            await sleeper[1]
        finally:
            self._sleepers.remove(sleeper)

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)
        for deadline, future in self._sleepers:
            if deadline <= self._mono and not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now (woken ones that have not run yet do not)."""
        return sum(not future.done() for _deadline, future in self._sleepers)

    def restart(self) -> FakeClock:
        """The clock a restarted process sees: same wall time, a different monotonic origin."""
        other = FakeClock()
        other._wall = self._wall
        other._mono = 3.0
        return other

    def set_wall(self, seconds: float) -> None:
        """The wall clock alone moves (NTP correcting a Pi without an RTC); monotonic does not."""
        self._wall += timedelta(seconds=seconds)


def make_advertisement(
    address: str = ADDR_A, *, rssi: int = -60, beacon_id: int = 1, name: str | None = None
) -> Advertisement:
    return Advertisement(address=address, rssi=rssi, beacon_id=beacon_id, counter=0,
                         uptime_min=1, name=name)


def make_settings(data_dir: Path, **changes: Any) -> Settings:
    return replace(Settings(data_dir=data_dir), **changes)


class InjectableRadio:
    """A radio stand-in for service tests: advertisements go in through ``inject``.

    It is the boundary only (what bleak would deliver); everything behind it is real.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Advertisement | None] = asyncio.Queue()
        self.links: dict[str, Callable[[str], None]] = {}
        self.refuse: set[str] = set()
        self.connects: list[str] = []
        self.completed: list[str] = []  # connects that succeeded
        self.held: dict[str, asyncio.Event] = {}  # connects to these wait until the event is set
        self.activity = 0
        self.interrupt = False  # set: bluetoothd "restarted"
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False
        self.queue.put_nowait(None)

    def interrupted(self) -> bool:
        interrupted, self.interrupt = self.interrupt, False
        return interrupted

    def inject(self, adv: Advertisement) -> None:
        self.activity += 1
        self.queue.put_nowait(adv)

    async def advertisements(self) -> AsyncIterator[Advertisement]:
        while (adv := await self.queue.get()) is not None:
            yield adv

    async def connect(self, address: str, on_lost: Callable[[str], None]) -> LinkInfo:
        self.connects.append(address)
        if address in self.held:
            await self.held[address].wait()
        if address in self.refuse:
            msg = f"{address} refused"
            raise RadioError(msg)
        self.links[address] = on_lost
        self.completed.append(address)
        return LinkInfo(address=address, beacon_id=1, firmware="0.1.0")

    async def disconnect(self, address: str) -> None:
        self.links.pop(address, None)

    def leave(self, address: str) -> None:
        """The beacon walks out of range: its link drops and connecting fails."""
        self.refuse.add(address)
        self.links.pop(address)(address)

    async def recover(self, step: int) -> str:
        return f"step {step}"


# Between two looks at a condition in this process: often enough that a test notices at once.
POLL_S: Final = 0.02


async def wait_for(
    predicate: Callable[[], T | Awaitable[T | None] | None], *, within: float = 5.0,
    what: str = "condition", interval: float = POLL_S,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Wait until ``predicate`` (sync or async) gives something true, looking every ``interval``
    seconds; that result, or an AssertionError after ``within`` seconds.

    An exception in ``retry_on`` (a server that does not answer yet) counts as "not yet"; the
    last one is in the message. The one wait-until of the tests (the HIL suite's too);
    ``wait_for_blocking`` is the same for code without an event loop.
    """
    last: Exception | None = None
    try:
        async with asyncio.timeout(within) as scope:
            while True:
                try:
                    result = predicate()
                    if inspect.isawaitable(result):
                        result = await result
                except retry_on as exc:
                    last, result = exc, None
                if result:
                    return result  # type: ignore[return-value]
                await asyncio.sleep(interval)
    except TimeoutError:
        if not scope.expired():
            raise  # the predicate's own
        raise AssertionError(_timed_out(within, what, last)) from None


def wait_for_blocking(
    probe: Callable[[], T | None], *, within: float, what: str, interval: float,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """``wait_for`` for blocking probes where no event loop runs (labgrid's strategy, the image
    tests): a probe is not interrupted, so the deadline is checked between looks."""
    deadline = time.monotonic() + within
    last: Exception | None = None
    while True:
        try:
            if result := probe():
                return result
        except retry_on as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(within, what, last))
        time.sleep(interval)


def _timed_out(within: float, what: str, last: Exception | None) -> str:
    seen = f" (last error: {last})" if last is not None else ""
    return f"timed out after {within:g} s waiting for {what}{seen}"


def free_port() -> int:
    """A loopback TCP port free at this moment, for a server in another process that must be
    told its port (nginx, `appliance serve`). In-process servers keep their bound socket
    instead (running_server), so nothing can take the port in between."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def running_server(app: Any, port: int = 0, *,
                         unix_socket: Path | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app with hypercorn on a loopback port (chosen by the kernel unless given),
    or on ``unix_socket`` (for nginx in front; the URL yielded is then the socket's)."""
    sock = socket.socket(socket.AF_UNIX if unix_socket else socket.AF_INET, socket.SOCK_STREAM)
    if unix_socket:
        sock.bind(str(unix_socket))
        base, transport = "http://localhost", httpx.AsyncHTTPTransport(uds=str(unix_socket))
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        base, transport = f"http://127.0.0.1:{port}", httpx.AsyncHTTPTransport()
    sock.listen(64)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.graceful_timeout = 1
    shutdown = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=shutdown.wait))
    try:
        async with httpx.AsyncClient(transport=transport) as probe:

            async def ready() -> bool:
                if task.done():
                    task.result()  # raise the server's start-up error here
                try:
                    return (await probe.get(f"{base}/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, within=20, what="the server to answer /health")
        yield base
    finally:
        shutdown.set()
        await asyncio.wait_for(task, 60)
        with contextlib.suppress(OSError):  # hypercorn closes the inherited descriptor itself
            sock.close()


PASSWORD = "correct horse battery"


async def add_user(data_dir: Path, name: str = "alice", password: str = PASSWORD) -> None:
    """Create a user in the real database file, as `appliance user add` does."""
    from appliance.auth import accounts
    from appliance.store.db import Database

    db = await Database.open(data_dir / "appliance.db")
    try:
        await accounts.add_user(db, name, password, now=datetime.now(UTC))
    finally:
        await db.close()


async def add_token(data_dir: Path, name: str = "camera") -> str:
    from appliance.auth import accounts
    from appliance.store.db import Database

    db = await Database.open(data_dir / "appliance.db")
    try:
        _record, token = await accounts.add_token(db, name, now=datetime.now(UTC))
    finally:
        await db.close()
    return token


def make_png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real, decodable PNG (stdlib only), so a browser can show it."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


async def close_code(ws: Any) -> int | None:
    """The code the server closes a WebSocket (a websockets client) with, after any messages
    still on their way."""
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def make_jpeg_like(size: int, seed: int = 0) -> bytes:
    """JPEG-shaped bytes of a given size (SOI/APP0 marker, filler, EOI): the relay checks only
    the magic bytes, so this stands in for camera frames where nothing decodes them."""
    import random

    body = random.Random(seed).randbytes(max(0, size - 6))
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


class SerialConsole:
    """A beacon's serial port opened by path, the way the HIL rig opens a Nano's: pyserial and the
    appliance's blocking client (in a thread, off the event loop). ``command()`` returns the
    ``ok ...`` reply; an ``err ...`` reply raises BeaconRefusedError, silence BeaconSilentError."""

    def __init__(self, path: str, deadline_s: float = 5.0) -> None:
        import serial

        self.port = serial.Serial(path, protocol.SERIAL_BAUD, timeout=READ_POLL_S)
        self.client = BeaconConsole(self.port, name=path, timeout_s=deadline_s)

    async def command(self, line: str) -> str:
        return await asyncio.to_thread(self.client.command, line)

    def close(self) -> None:
        self.port.close()


class AdvertisementLog:
    """Our beacons' advertisements as a listener heard them, in order; tests wait on it.

    Fed by ``add`` (a bumble host's callback) or by ``listening_to`` a Radio's stream.
    """

    def __init__(self, deadline_s: float = 5.0) -> None:
        self.ads: list[Advertisement] = []
        self.deadline_s = deadline_s
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @classmethod
    def listening_to(cls, ads: AsyncIterator[Advertisement]) -> AdvertisementLog:
        log = cls()
        log.task = asyncio.create_task(log._consume(ads))
        return log

    async def _consume(self, ads: AsyncIterator[Advertisement]) -> None:
        async for adv in ads:
            self.add(adv)
        self._changed.set()

    @property
    def ended(self) -> bool:
        return self.task is not None and self.task.done()

    def add(self, adv: Advertisement) -> None:
        self.ads.append(adv)
        self._changed.set()

    def mark(self) -> int:
        return len(self.ads)

    def since(self, mark: int, address: str) -> list[Advertisement]:
        return [adv for adv in self.ads[mark:] if adv.address == address]

    async def wait(self, predicate: Callable[[], bool], deadline_s: float | None = None) -> None:
        """Until ``predicate()`` holds, checked after every advertisement."""
        async with asyncio.timeout(deadline_s or self.deadline_s):
            while not predicate():
                assert not self.ended, "advertisements ended while waiting"
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, address: str, count: int = 1, mark: int = 0) -> None:
        await self.wait(lambda: len(self.since(mark, address)) >= count)

    async def assert_silent(self, address: str, others: Sequence[str]) -> None:
        """``address`` sends nothing while every other beacon advertises three times."""
        settle = self.mark()  # first let whatever was in flight land: one round of the others
        await self.wait(lambda: all(self.since(settle, other) for other in others))
        start = self.mark()
        await self.wait(lambda: all(len(self.since(start, other)) >= 3 for other in others))
        assert self.since(start, address) == []


class Browser:
    """A browser's Socket.IO client that records the events it receives, in order."""

    EVENTS = ("image2v", "temphum2v", "status2v", "devices2v", "presence2v", "printer2v")

    def __init__(self) -> None:
        import socketio

        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        for event in self.EVENTS:
            self.client.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Callable[[Any], Awaitable[None]]:
        async def record(data: Any) -> None:
            self.events.append((event, data))
        return record

    def of(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]


def lost_recorder() -> tuple[list[str], Callable[[str], None], asyncio.Event]:
    """An on_lost callback for Radio.connect that records calls and sets an event."""
    calls: list[str] = []
    event = asyncio.Event()

    def on_lost(address: str) -> None:
        calls.append(address)
        event.set()

    return calls, on_lost, event


@contextlib.contextmanager
def small_partition(path: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` MiB at ``path``: a full SD card in miniature."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.fail("the full-partition test mounts a tmpfs: run it as root (make test does)",
                    pytrace=False)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {path}: {mounted.stderr.strip()}; the test needs "
                    "root and mount(8) (in a container: CAP_SYS_ADMIN)", pytrace=False)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
