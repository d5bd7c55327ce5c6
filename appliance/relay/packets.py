"""Socket.IO packets from anyone: decoded without tracebacks, answered where they can be.

python-socketio raises ``ValueError`` for a packet it cannot decode (bad JSON, an integer of more
than 100 digits, a bad attachment count), and python-engineio logs each with a full traceback:
one hostile client could fill the log (and journald's rate limit, shared by every program).
Here a bad event that asks for an ack gets one (``BAD_PACKET``, a ``bad_json`` error), integers
too long for an ``int`` read as floats (so ``temperature: 10**400`` is refused as out of range
like any other number), and what still cannot be handled is one short warning, at most one per
``LOG_EVERY_S``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from types import TracebackType
from typing import Any, Final

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from socketio import packet as sio_packet

_LOGGER = logging.getLogger(__name__)

# The event a packet becomes when its data cannot be decoded; its handler answers the ack.
BAD_PACKET: Final = "\x00bad_packet"
# engineio's own limit: parsing a longer decimal int costs time quadratic in its length.
INT_DIGITS_MAX: Final = 100
# Bad packets are logged at most this often (with a count of those not logged).
LOG_EVERY_S: Final = 10.0
_LIBRARY_PARTS: Final = ("/socketio/", "/engineio/", "/json/")


def _parse_int(text: str) -> int | float:
    return int(text) if len(text) <= INT_DIGITS_MAX else float(text)


class _Json:
    """What python-socketio calls ``json``: the standard module with the integer rule above."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        return json.loads(text, parse_int=_parse_int, **kwargs)


class TolerantPacket(sio_packet.Packet):  # type: ignore[misc]  # python-socketio is untyped
    """A Socket.IO packet whose undecodable event data becomes the ``BAD_PACKET`` event."""

    json = _Json

    def decode(self, encoded_packet: str | bytes) -> int:
        try:
            return int(super().decode(encoded_packet) or 0)
        except ValueError:
            kind: object = getattr(self, "packet_type", None)  # set by decode, untyped
            if kind not in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
                raise
            self.packet_type, self.data = sio_packet.EVENT, [BAD_PACKET]
            return 0


class QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """The logger python-socketio and python-engineio get: a failure inside them (bad input from
    a client) is one warning line without traceback, rate-limited; anything else, such as a bug
    in the app's own handlers, keeps its traceback. Below WARNING nothing is logged, as with
    the libraries' own loggers at their defaults."""

    def __init__(self) -> None:
        super().__init__(_LOGGER, {})
        self._last = -LOG_EVERY_S
        self._unlogged = 0

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.WARNING:  # their INFO lines are one per event and connection
            super().log(level, msg, *args, **kwargs)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if not self.error_is_the_clients(exc_info):
            super().exception(msg, *args, exc_info=exc_info, **kwargs)
            return
        now = time.monotonic()
        if now - self._last < LOG_EVERY_S:
            self._unlogged += 1
            return
        _error_type, error, _tb = _exc_triple(exc_info)
        _LOGGER.warning("A Socket.IO client sent what could not be handled (%s: %s); %d more "
                        "since the last such line", type(error).__name__, str(error)[:120],
                        self._unlogged)
        self._last, self._unlogged = now, 0

    @staticmethod
    def error_is_the_clients(exc_info: Any) -> bool:
        _error_type, error, tb = _exc_triple(exc_info)
        if error is None or tb is None:
            return False
        while tb.tb_next is not None:
            tb = tb.tb_next
        return any(part in tb.tb_frame.f_code.co_filename for part in _LIBRARY_PARTS)


def _exc_triple(exc_info: Any) -> tuple[type[BaseException] | None, BaseException | None,
                                        TracebackType | None]:
    if isinstance(exc_info, BaseException):
        return type(exc_info), exc_info, exc_info.__traceback__
    return sys.exc_info()


class QuietProtocolErrors:
    """ASGI middleware for the Socket.IO transport: python-engineio decodes a WebSocket's
    messages outside any handler, so a message that is no Engine.IO packet at all (empty text,
    a first character that is no packet type) raises through to hypercorn, which logs a
    traceback. Here such a connection is closed with 1002 (protocol error) and the quiet log's
    one line."""

    def __init__(self, app: ASGIFramework, log: QuietLogger) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        try:
            await self.app(scope, receive, send)
        except ValueError as exc:
            if scope["type"] != "websocket" or not self.log.error_is_the_clients(exc):
                raise
            self.log.exception("bad WebSocket message", exc_info=exc)
            with contextlib.suppress(Exception):  # the client may be gone already
                await send({"type": "websocket.close", "code": 1002, "reason": ""})
