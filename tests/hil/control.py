"""The radio's control socket: JSON lines that add, remove and move beacons (format: radio_client.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from bumble import core

from appliance.errors import RadioError
from appliance_sim.air import BeaconAir, VirtualBeaconState

from .guest_controller import GuestController
from .radio_client import LINE_LIMIT, Op

_LOGGER = logging.getLogger(__name__)

# Closing the control connections ends their readers at once; more means the loop is stuck.
CLOSE_TIMEOUT_S: Final = 2.0

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlServer:
    """Answers control requests about ``air`` and ``controller`` on the unix socket ``path``."""

    def __init__(self, air: BeaconAir, controller: GuestController, path: Path) -> None:
        self.path = path
        self._air = air
        self._controller = controller
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._handlers: dict[Op, Handler] = {
            Op.STATUS: self._status, Op.BEACONS: self._beacons, Op.ADD: self._add,
            Op.REMOVE: self._remove, Op.PRESENT: self._present, Op.RSSI: self._rssi,
            Op.DISTANCE: self._distance, Op.DROP: self._drop,
        }

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=LINE_LIMIT)
        _LOGGER.info("Control socket at %s", self.path)

    async def close(self) -> None:
        if (server := self._server) is not None:
            self._server = None
            server.close()
            for writer in self._clients.values():
                writer.close()
            if self._clients:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await asyncio.gather(*self._clients, return_exceptions=True)
            await server.wait_closed()
            self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_unix_server runs each handler as a task
        self._clients[task] = writer
        try:
            while line := await reader.readline():
                answer = await self._answer(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError) as exc:  # ValueError: a line beyond LINE_LIMIT
            _LOGGER.info("Control connection ended: %r", exc)
        finally:
            del self._clients[task]
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                msg = "a request is a JSON object"
                raise TypeError(msg)
            op = Op(request.pop("op", None))
        except (ValueError, TypeError) as exc:
            return {"ok": False, "error": f"bad request {line[:200]!r} ({exc}); ops: {', '.join(Op)}"}
        try:
            result = await self._handlers[op](request)
        except KeyError as exc:
            return {"ok": False, "error": f"{op} needs the argument {exc}"}
        except (ValueError, TypeError, RadioError) as exc:
            return {"ok": False, "error": str(exc)}
        except (core.BaseBumbleError, TimeoutError) as exc:
            _LOGGER.exception("Control request %s failed", op)
            return {"ok": False, "error": f"{op} failed ({exc!r}); see the radio's log"}
        _LOGGER.info("Control: %s %s", op, request)
        return {"ok": True, "result": result}

    def _view(self, state: VirtualBeaconState) -> dict[str, Any]:
        return {
            "address": state.address, "beacon_id": state.beacon_id, "name": state.name,
            "kind": state.kind, "present": state.present, "rssi": state.rssi,
            "drop_fraction": state.drop_fraction, "serial": self._air.serial_path(state.address),
        }

    async def _status(self, _request: dict[str, Any]) -> Any:
        guest = self._controller.state
        return {
            "guest": {"attached": guest.attached, "scanning": guest.scanning,
                      "le_event_mask": guest.le_event_mask, "links": list(guest.links)},
            "beacons": await self._beacons({}),
        }

    async def _beacons(self, _request: dict[str, Any]) -> Any:
        return [self._view(state) for state in self._air.beacons.values()]

    async def _add(self, request: dict[str, Any]) -> Any:
        optional = {key: request[key] for key in ("kind", "rssi", "name") if key in request}
        return self._view(await self._air.add(_integer(request["beacon_id"]), **optional))

    async def _remove(self, request: dict[str, Any]) -> Any:
        await self._air.remove(_beacon(request))

    async def _present(self, request: dict[str, Any]) -> Any:
        present = request["present"]
        if not isinstance(present, bool):
            msg = f"present is true or false, not {present!r}"
            raise TypeError(msg)
        return self._view(await self._air.set_present(_beacon(request), present))

    async def _rssi(self, request: dict[str, Any]) -> Any:
        return self._view(self._air.set_rssi(_beacon(request), _number(request["rssi"])))

    async def _distance(self, request: dict[str, Any]) -> Any:
        return self._view(self._air.set_distance(_beacon(request), _number(request["meters"])))

    async def _drop(self, request: dict[str, Any]) -> Any:
        return self._view(self._air.drop_fraction(_beacon(request), _number(request["fraction"])))


def _beacon(request: dict[str, Any]) -> int | str:
    beacon = request["beacon"]
    if isinstance(beacon, bool) or not isinstance(beacon, int | str):
        msg = f"a beacon is an id or an address, not {beacon!r}"
        raise TypeError(msg)
    return beacon


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"expected an integer, not {value!r}"
        raise TypeError(msg)
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"expected a number, not {value!r}"
        raise TypeError(msg)
    return float(value)
