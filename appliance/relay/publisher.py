"""`appliance publish`: a real publisher for cameras, sensors and tests.

Sends frames (binary), readings and status to the relay over Socket.IO with a publisher token,
waits for each acknowledgement, and reconnects with backoff when the appliance goes away.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import socketio

from appliance.errors import ApplianceError

_LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png")
# Reconnect backoff: 1 s doubling to 30 s, with ±25 % jitter so many cameras do not reconnect
# in lockstep after the appliance restarts.
BACKOFF_FIRST_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 10.0
ACK_TIMEOUT_S: Final = 30.0  # a 2 MB frame over a slow Wi-Fi link and an SD-card write


class PublishError(ApplianceError):
    pass


@dataclass(frozen=True, slots=True)
class PublishPlan:
    url: str
    token: str
    images: Sequence[Path] = ()
    directory: Path | None = None
    interval_s: float = 10.0
    temphum: tuple[float, float] | None = None
    status: str | None = None
    max_attempts: int | None = None  # None: keep reconnecting forever (the --dir daemon)
    rounds: int | None = None  # --dir: stop after this many rounds (tests); None = forever
    # The longest wait between reconnects (--max-backoff): 30 s suits a camera beside a Pi that
    # reboots; a test or a publisher on the same machine can ask for less.
    backoff_max_s: float = BACKOFF_MAX_S


def parse_temphum(text: str) -> tuple[float, float]:
    try:
        temperature, humidity = (float(part) for part in text.split(","))
    except ValueError:
        msg = f"--temphum wants TEMPERATURE,HUMIDITY like 21.5,40 (got {text!r})"
        raise PublishError(msg) from None
    return temperature, humidity


def images_in(directory: Path) -> list[Path]:
    if not directory.is_dir():
        msg = f"{directory} is not a directory"
        raise PublishError(msg)
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class Publisher:
    def __init__(self, plan: PublishPlan, out: Callable[[str], None]) -> None:
        self._plan = plan
        self._out = out
        first_s = min(BACKOFF_FIRST_S, plan.backoff_max_s)
        self._client = socketio.AsyncClient(
            reconnection=True, reconnection_delay=first_s,
            reconnection_delay_max=plan.backoff_max_s, randomization_factor=0.25,
        )
        self._refusal: Any = None
        self._client.on("connect_error", self._on_connect_error)

    def _on_connect_error(self, data: Any) -> None:
        self._refusal = data

    async def _connect(self) -> None:
        delay, attempt = min(BACKOFF_FIRST_S, self._plan.backoff_max_s), 0
        while True:
            attempt += 1
            try:
                await self._client.connect(self._plan.url, auth={"token": self._plan.token},
                                           transports=["websocket"], wait_timeout=CONNECT_TIMEOUT_S)
                self._out(f"connected to {self._plan.url}")
                return
            except socketio.exceptions.ConnectionError as exc:
                reason = self._refusal or (exc.args[0] if exc.args else exc)
                self._refusal = None
                data = reason.get("data") if isinstance(reason, dict) else None
                if isinstance(data, dict) and data.get("error") == "bad_token":
                    msg = "the appliance refused the token; create one with `appliance token add`"
                    raise PublishError(msg) from None
                if self._plan.max_attempts is not None and attempt >= self._plan.max_attempts:
                    msg = f"cannot connect to {self._plan.url} after {attempt} attempts: {reason}"
                    raise PublishError(msg) from None
                wait = delay * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not crypto
                self._out(f"cannot connect ({reason}); retrying in {wait:.1f} s")
                await asyncio.sleep(wait)
                delay = min(delay * 2, self._plan.backoff_max_s)

    async def _send(self, event: str, payload: Any, what: str) -> bool:
        """Send one item and wait for its acknowledgement; False if it was not delivered."""
        try:
            ack = await self._client.call(event, payload, timeout=ACK_TIMEOUT_S)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError) as exc:
            self._out(f"not sent {what}: {exc or 'no answer'}; will retry")
            return False
        if not isinstance(ack, dict) or not ack.get("ok"):
            message = ack.get("message") if isinstance(ack, dict) else ack
            self._out(f"rejected {what}: {message}")
            return True  # delivered, and refused for a reason sending again will not fix
        self._out(f"sent {what}")
        return True

    async def _round(self, images: Sequence[Path]) -> bool:
        ok = True
        for path in images:
            data = path.read_bytes()
            ok &= await self._send("image", data, f"{path.name} ({len(data) // 1024} KB)")
        if self._plan.temphum:
            temperature, humidity = self._plan.temphum
            ok &= await self._send("temphum", {"temperature": temperature, "humidity": humidity},
                                   f"temphum {temperature},{humidity}")
        if self._plan.status:
            ok &= await self._send("status", {"status": self._plan.status},
                                   f"status {self._plan.status!r}")
        return ok

    async def run(self) -> int:
        await self._connect()
        try:
            if self._plan.directory is None:
                return 0 if await self._round(self._plan.images) else 1
            done = 0
            while self._plan.rounds is None or done < self._plan.rounds:
                paths = images_in(self._plan.directory)
                if not paths:
                    self._out(f"no .jpg or .png in {self._plan.directory} yet")
                    await asyncio.sleep(self._plan.interval_s)
                for path in paths:
                    await self._round([path])
                    await asyncio.sleep(self._plan.interval_s)
                done += 1
            return 0
        finally:
            await self._client.disconnect()
