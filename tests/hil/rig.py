"""What the HIL scenarios see of a rig, the same on both: the appliance over SSH and through nginx,
its power, and the beacons' USB serial consoles.

labgrid describes the rig (rigs/*.yaml); the ``rig`` fixture (conftest.py) takes its drivers and
its strategy: SSHDriver for commands (through ApplianceStrategy.sh), a PowerProtocol driver
(TwinMachineDriver on the virtual rig; a USB hub port or a switched plug on the lab rig) for power
cuts, and the beacons' serial ports (the radio's ptys on the virtual rig; the Nano's
USBSerialPort on the lab rig).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import httpx
import serial
import socketio
from helpers import wait_for

from appliance.presence import protocol
from appliance.presence.beacon_serial import READ_POLL_S, BeaconConsole, BeaconSerialError

T = TypeVar("T")

SSH_TIMEOUT_S: Final = 120.0
# The virtual rig's beacons are beacon-sim under sanitizers on a loaded host: more than the
# client's default.
SERIAL_REPLY_S: Final = 5.0
# Between two looks at the rig: each look is an HTTP request through nginx or an SSH command.
RIG_POLL_S: Final = 0.5
# What a look at a rig that is not up yet may meet.
NOT_YET: Final = (httpx.HTTPError, OSError, subprocess.SubprocessError)


class RigError(AssertionError):
    """The rig did not do what a scenario needs; the message says what and what was seen."""


async def until(probe: Callable[[], Awaitable[T | None]], within: float, what: str,
                interval: float = RIG_POLL_S) -> T:
    """tests/helpers.py's wait_for at the rig's pace: an error of a rig that is not up yet (the
    web side, SSH) counts as "not yet"."""
    return await wait_for(probe, within=within, what=what, interval=interval, retry_on=NOT_YET)


@dataclass
class BeaconSerial:
    """A beacon's USB serial console: the sketch's line protocol (adv on|off, version, status),
    spoken by the appliance's client (appliance/presence/beacon_serial.py)."""

    port: str

    def command(self, line: str) -> str:
        """Send one command; its ``ok ...`` reply line.

        RigError on an ``err ...`` reply (with the firmware's reason) or on silence.
        """
        with serial.Serial(self.port, protocol.SERIAL_BAUD, timeout=READ_POLL_S) as link:
            try:
                return BeaconConsole(link, name=self.port, timeout_s=SERIAL_REPLY_S).command(line)
            except BeaconSerialError as exc:
                raise RigError(str(exc)) from exc


@dataclass
class Rig:
    features: set[str]
    ssh: Any  # labgrid SSHDriver
    power: Any  # labgrid PowerProtocol
    target: Any
    http_url: str
    admin_user: str
    admin_password: str
    beacons: list[BeaconSerial]
    strategy: Any  # ApplianceStrategy (labgrid_rigs.py): walks the rig off → booted → ready
    measurements: dict[str, Any] = field(default_factory=dict)

    # --- commands on the appliance ---

    def sh(self, command: str, *, check: bool = True, sudo: bool = False,
           timeout: float = SSH_TIMEOUT_S) -> str:
        """Run a shell command on the appliance (as root with sudo=True); its stdout.

        Through the strategy, i.e. labgrid's SSHDriver.run (its CommandProtocol): the driver
        knows the user, the port and its master connection.
        """
        code, stdout, stderr = self.strategy.sh(command, sudo=sudo, timeout=timeout)
        if check and code != 0:
            msg = f"{command!r} on the appliance: status {code}\n{stdout}{stderr}"
            raise RigError(msg)
        return str(stdout)

    def supervisor_status(self) -> dict[str, str]:
        return dict(self.strategy.supervisor_status())

    def unit_failed(self) -> list[str]:
        out = self.sh("systemctl list-units --state=failed --plain --no-legend", check=False)
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    # --- the web side, through nginx ---

    @contextlib.asynccontextmanager
    async def web(self) -> AsyncIterator[httpx.AsyncClient]:
        """A logged-in HTTP client (the dashboard's session cookie) through nginx."""
        async with httpx.AsyncClient(base_url=self.http_url, timeout=20) as client:
            response = await client.post("/api/session", json={"username": self.admin_user,
                                                                "password": self.admin_password})
            if response.status_code != 200:
                msg = f"login through nginx: {response.status_code} {response.text}"
                raise RigError(msg)
            yield client

    @contextlib.asynccontextmanager
    async def browser(self, client: httpx.AsyncClient) -> AsyncIterator[Browser]:
        """A Socket.IO browser session over WebSocket through nginx, with the client's cookie."""
        browser = Browser()
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        await browser.sio.connect(self.http_url, headers={"Cookie": cookie, "Origin": self.http_url},
                                  transports=["websocket"], wait_timeout=30)
        try:
            yield browser
        finally:
            await browser.sio.disconnect()


class Browser:
    """A Socket.IO client that records every event it receives, in order, with the time it came."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[float, str, Any]] = []
        self.sio.on("*", self._record)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events.append((time.monotonic(), event, data))

    def of(self, event: str, since: float = 0.0) -> list[Any]:
        return [data for at, name, data in self.events if name == event and at >= since]

    async def wait_event(self, event: str, match: Callable[[Any], bool], within: float,
                         since: float = 0.0) -> tuple[float, Any]:
        """The first `event` after `since` whose data `match`es: (monotonic time it came, data)."""
        async def probe() -> tuple[float, Any] | None:
            for at, name, data in self.events:
                if name == event and at >= since and match(data):
                    return at, data
            return None
        return await until(probe, within, f"Socket.IO {event} event", interval=0.05)
