"""The virtual rig radio's control socket: its wire format and an asyncio client for the HIL tests.

One JSON object per line each way. A request names an ``op`` and its arguments; the answer is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "what went wrong and what to do"}``.
A beacon is given by id (``3``) or address (``"F0:00:00:00:00:03"``).

| op | arguments | result |
|---|---|---|
| ``status`` | | ``{"guest": {attached, scanning, le_event_mask, links}, "beacons": [beacon]}`` |
| ``beacons`` | | ``[beacon]``: ``{address, beacon_id, name, kind, present, rssi, drop_fraction, serial}`` |
| ``add`` | ``beacon_id``, optional ``kind`` (python/sketch), ``rssi``, ``name`` | beacon |
| ``remove`` | ``beacon`` | null |
| ``present`` | ``beacon``, ``present`` (false: stops advertising, drops links) | beacon |
| ``rssi`` | ``beacon``, ``rssi`` (dBm, the mean; reports jitter around it) | beacon |
| ``distance`` | ``beacon``, ``meters`` (sets the mean RSSI by log-distance path loss) | beacon |
| ``drop`` | ``beacon``, ``fraction`` (0..1 of its advertisements lost) | beacon |

``serial`` is a sketch beacon's USB serial port (a pty; ``adv off``, ``adv on``, ``version``, ...)
and null for a Python beacon. From a shell: ``python -m tests.hil.radio_client CONTROL_SOCKET OP
['{"beacon": 1}']``, or any JSON-lines client (``socat - UNIX-CONNECT:CONTROL_SOCKET``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Final

# Every op is answered within a few loop iterations, except starting a sketch beacon (a process
# and its setup(), ~0.2 s; seconds on a busy machine with sanitizers) and closing one.
CALL_TIMEOUT_S: Final = 15.0
# JSON lines can be long (a status with many beacons); asyncio's default limit is 64 KiB.
LINE_LIMIT: Final = 1 << 20

BeaconRef = int | str
"""A beacon's id (``3``) or address (``"F0:00:00:00:00:03"``)."""


class Op(enum.StrEnum):
    STATUS = "status"
    BEACONS = "beacons"
    ADD = "add"
    REMOVE = "remove"
    PRESENT = "present"
    RSSI = "rssi"
    DISTANCE = "distance"
    DROP = "drop"


class RadioControlError(Exception):
    """The radio refused or failed a request; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class RadioBeacon:
    """A simulated beacon as the radio reports it."""

    address: str
    beacon_id: int
    name: str
    kind: str  # "python" or "sketch"
    present: bool
    rssi: float  # the mean; each report jitters around it
    drop_fraction: float
    serial: str | None  # a sketch beacon's serial port (pty)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RadioBeacon:
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, slots=True)
class GuestStatus:
    """The guest's side of the radio: its controller as its host left it."""

    attached: bool  # a host is connected to the HCI socket
    scanning: bool
    le_event_mask: int
    links: tuple[str, ...]  # peer addresses of open LE connections


class RadioClient:
    """A connection to the radio's control socket; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> RadioClient:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
        return cls(reader, writer)

    async def close(self) -> None:
        self._writer.close()
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await self._writer.wait_closed()

    async def __aenter__(self) -> RadioClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def call(self, op: Op, **arguments: Any) -> Any:
        """Send one request; its result, or RadioControlError with the radio's message."""
        request = json.dumps({"op": str(op), **arguments}).encode() + b"\n"
        async with self._lock, asyncio.timeout(CALL_TIMEOUT_S):
            self._writer.write(request)
            await self._writer.drain()
            line = await self._reader.readline()
        if not line:
            msg = "the radio closed the control connection; see its log (stderr)"
            raise RadioControlError(msg)
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RadioControlError(answer.get("error", f"no error message in {answer!r}"))
        return answer.get("result")

    async def guest(self) -> GuestStatus:
        guest = (await self.call(Op.STATUS))["guest"]
        return GuestStatus(guest["attached"], guest["scanning"], guest["le_event_mask"],
                           tuple(guest["links"]))

    async def beacons(self) -> list[RadioBeacon]:
        return [RadioBeacon.from_json(beacon) for beacon in await self.call(Op.BEACONS)]

    async def beacon(self, beacon: BeaconRef) -> RadioBeacon:
        for found in await self.beacons():
            if (found.beacon_id == beacon if isinstance(beacon, int)
                    else found.address == beacon.upper()):
                return found
        msg = f"the radio has no beacon {beacon}"
        raise RadioControlError(msg)

    async def add_beacon(
        self, beacon_id: int, *, kind: str | None = None, rssi: float | None = None,
        name: str | None = None,
    ) -> RadioBeacon:
        arguments = {"kind": kind, "rssi": rssi, "name": name}
        given = {key: value for key, value in arguments.items() if value is not None}
        return RadioBeacon.from_json(await self.call(Op.ADD, beacon_id=beacon_id, **given))

    async def remove_beacon(self, beacon: BeaconRef) -> None:
        await self.call(Op.REMOVE, beacon=beacon)

    async def set_present(self, beacon: BeaconRef, present: bool) -> RadioBeacon:
        return RadioBeacon.from_json(await self.call(Op.PRESENT, beacon=beacon, present=present))

    async def set_rssi(self, beacon: BeaconRef, rssi: float) -> RadioBeacon:
        return RadioBeacon.from_json(await self.call(Op.RSSI, beacon=beacon, rssi=rssi))

    async def set_distance(self, beacon: BeaconRef, meters: float) -> RadioBeacon:
        return RadioBeacon.from_json(await self.call(Op.DISTANCE, beacon=beacon, meters=meters))

    async def drop_fraction(self, beacon: BeaconRef, fraction: float) -> RadioBeacon:
        return RadioBeacon.from_json(await self.call(Op.DROP, beacon=beacon, fraction=fraction))

    async def serial_path(self, beacon: BeaconRef) -> str:
        """A sketch beacon's serial port; RadioControlError for a Python beacon."""
        found = await self.beacon(beacon)
        if found.serial is None:
            msg = f"beacon {beacon} is a {found.kind} beacon; only sketch beacons have a serial port"
            raise RadioControlError(msg)
        return found.serial


async def _main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        sys.stderr.write(f"usage: python -m tests.hil.radio_client CONTROL_SOCKET "
                         f"{{{','.join(Op)}}} ['{{JSON arguments}}']\n")
        return 2
    arguments = json.loads(argv[2]) if len(argv) == 3 else {}
    async with await RadioClient.open(argv[0]) as client:
        try:
            result = await client.call(Op(argv[1]), **arguments)
        except RadioControlError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
