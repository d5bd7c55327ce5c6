"""``/frames``: the dashboard's frames as plain binary WebSocket messages, beside Socket.IO.

Socket.IO's ``image2v`` stays for existing clients; it costs two WebSocket messages per frame
(the event with a placeholder, then the attachment) through python-socketio and python-engineio
for every browser. Here a frame is one message, built once for every browser:

    2 bytes   n, big-endian: the length of the header
    n bytes   the header, JSON: {"mime": "image/jpeg", "timestamp": "2026-12-03T10:00:00.000Z"}
    the rest  the image, as the publisher sent it

Who may connect: a browser with its login cookie from an allowed origin, as for Socket.IO
(``RelayChannels`` decides); anyone else gets 403 before the handshake. A session that ends
closes its sockets with 1008 (policy violation) at the next recheck, the moment it ends in this
process. Each browser has a one-slot mailbox: a browser still taking the previous frame gets
only the newest one when it is ready (latest frame wins). What a browser sends is read and
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    Scope,
    WebsocketAcceptEvent,
    WebsocketCloseEvent,
    WebsocketSendEvent,
)

from appliance.relay.service import FrameEvent
from appliance.schema.time import api_time

_LOGGER = logging.getLogger(__name__)

PATH: Final = "/frames"
HEADER_LENGTH: Final = struct.Struct(">H")
CLOSE_GOING_AWAY: Final = 1001  # shutting down: the dashboard reconnects to the next process
CLOSE_POLICY: Final = 1008  # the session ended


T = TypeVar("T")


class Latest(Generic[T]):
    """A one-slot mailbox, a browser's frames: a newer item replaces one not yet taken (latest
    frame wins), and ``replaced`` counts each that never went out."""

    def __init__(self, replaced: Callable[[], None]) -> None:
        self._replaced = replaced
        self._item: T | None = None
        self._wake = asyncio.Event()

    def offer(self, item: T) -> None:
        if self._item is not None:
            self._replaced()
        self._item = item
        self._wake.set()

    async def take(self) -> T:
        while self._item is None:
            self._wake.clear()
            await self._wake.wait()
        item, self._item = self._item, None
        return item


def _close(code: int) -> WebsocketCloseEvent:
    return WebsocketCloseEvent(type="websocket.close", code=code, reason=None)


def message(event: FrameEvent) -> bytes:
    """One frame as it goes out."""
    header = json.dumps({"mime": event.frame.mime, "timestamp": api_time(event.at)}).encode()
    return HEADER_LENGTH.pack(len(header)) + header + event.frame.data


class Viewer:
    """One open ``/frames`` socket: at most one frame in flight, one waiting."""

    def __init__(self, send: ASGISendCallable, auth_id: str, name: str,
                 dropped: Callable[[], None]) -> None:
        self.auth_id = auth_id
        self.name = name
        self._send = send
        self.frames: Latest[bytes] = Latest(dropped)
        self._closed = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            frame = await self.frames.take()
            # hypercorn returns once the socket has taken it (it awaits the writer's drain).
            await self._send(WebsocketSendEvent(type="websocket.send", bytes=frame, text=None))

    async def close(self, code: int) -> None:
        """End the socket: the sender first, so no frame follows the close."""
        if self._closed:
            return
        self._closed = True
        self.task.cancel()
        await asyncio.wait([self.task])
        with contextlib.suppress(Exception):  # the browser may be gone already
            await self._send(_close(code))


# Who may watch: the login's (auth id, user name), or None to refuse.
Admit = Callable[[Scope], Awaitable[tuple[str, str] | None]]


class FrameWire:
    """The ``/frames`` endpoint (an ASGI app for that path) and its open sockets."""

    def __init__(self, admit: Admit, latest: Callable[[], FrameEvent | None],
                 dropped: Callable[[], None]) -> None:
        self._admit = admit
        self._latest = latest
        self._dropped = dropped
        self.viewers: set[Viewer] = set()
        self._current: tuple[FrameEvent, bytes] | None = None

    def encoded(self, event: FrameEvent) -> bytes:
        if self._current is None or self._current[0] is not event:
            self._current = (event, message(event))
        return self._current[1]

    def offer(self, event: FrameEvent) -> None:
        if self.viewers:
            frame = self.encoded(event)
            for viewer in self.viewers:
                viewer.frames.offer(frame)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        first: Any = await receive()
        if first.get("type") != "websocket.connect":
            return
        who = await self._admit(scope)
        if who is None:
            await send(_close(CLOSE_POLICY))  # before the handshake: hypercorn answers 403
            return
        await send(WebsocketAcceptEvent(type="websocket.accept", subprotocol=None, headers=()))
        viewer = Viewer(send, *who, dropped=self._dropped)
        self.viewers.add(viewer)
        latest = self._latest()
        if latest is not None:
            viewer.frames.offer(self.encoded(latest))
        try:
            while True:
                incoming: Any = await receive()
                if incoming.get("type") == "websocket.disconnect":
                    break
        finally:
            self.viewers.discard(viewer)
            viewer.task.cancel()
            await asyncio.wait([viewer.task])

    async def close_all(self, code: int) -> None:
        for viewer in list(self.viewers):
            await viewer.close(code)


class WithFrames:
    """ASGI: WebSocket requests for ``/frames`` to the wire, everything else to ``app``."""

    def __init__(self, app: Callable[..., Awaitable[None]], wire: FrameWire) -> None:
        self.app = app
        self.wire = wire

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        if scope["type"] == "websocket" and scope["path"] == PATH:
            await self.wire(scope, receive, send)
        else:
            await self.app(scope, receive, send)
