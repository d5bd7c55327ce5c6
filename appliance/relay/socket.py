"""Socket.IO: publishers in (image, temphum, status), browsers out (image2v, temphum2v, status2v,
devices2v on connect and presence2v on every change).

Who may connect: a publisher with a token (``auth={"token": ...}``) or a browser with its login
cookie from an allowed origin. Frames go to each browser through a one-slot mailbox: a browser
that has not drained its previous frame gets only the newest one (latest frame wins), so a slow
phone never makes the server buffer frames. A frame is encoded once (its Engine.IO packets) for
every browser it reaches: at 50 browsers, encoding per browser was the relay's largest cost.

The dashboard takes its frames from ``/frames`` (``relay.wire``: one binary message a frame) and
tells its Socket.IO connection so with ``frames`` ``{"image2v": false}``; other browsers keep
getting ``image2v``. Both kinds of socket are admitted and re-checked here, by the same rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import socketio
from engineio import packet as eio_packet
from pydantic import BaseModel, TypeAdapter, ValidationError

from appliance import schema
from appliance.auth.accounts import User, check_token, token_alive, user_for_session
from appliance.auth.tokens import token_hash
from appliance.errors import StorageFullError
from appliance.presence.model import BeaconView
from appliance.relay.frames import RelayInputError, frame_from_event
from appliance.relay.packets import BAD_PACKET, QuietLogger, TolerantPacket
from appliance.relay.service import FrameEvent, Reading, RelayEvent, RelayService, StatusEvent
from appliance.relay.wire import CLOSE_GOING_AWAY, CLOSE_POLICY, FrameWire, Latest
from appliance.services import Services
from appliance.settings import Settings

_LOGGER = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

BROWSERS: Final = "browsers"
PUBLISHERS: Final = "publishers"
# Events from publishers (the reference's names).
IMAGE_IN: Final = "image"
TEMPHUM_IN: Final = "temphum"
STATUS_IN: Final = "status"
# From browsers: {"image2v": false} when frames come over /frames instead (the dashboard).
FRAMES_IN: Final = "frames"
# Events to browsers.
IMAGE_OUT: Final = "image2v"
TEMPHUM_OUT: Final = "temphum2v"
STATUS_OUT: Final = "status2v"
DEVICES_OUT: Final = "devices2v"  # on connect: the same body as GET /devices
PRESENCE_OUT: Final = "presence2v"  # on change: one GET /devices entry, or {id, removed: true}
PRINTER_OUT: Final = "printer2v"  # on connect and on change: the GET /api/printer body
# The largest WebSocket message the transport takes (python-engineio's max_http_buffer_size and
# hypercorn's websocket_max_message_size, one number): 16 MiB, hypercorn's own default, or twice
# the image limit when that is larger. Anything up to it reaches validation, so an oversized frame
# (even as base64, 4/3 larger) gets a `too_large` ack and the connection stays. A message beyond it
# is not read: hypercorn closes the WebSocket with code 1009 (message too big), the one standard
# way to say why, as hypercorn has buffered it whole by then and engineio would drop it silently.
TRANSPORT_MIN_BYTES: Final = 16 * 1024 * 1024


def transport_max_bytes(settings: Settings) -> int:
    return max(TRANSPORT_MIN_BYTES, settings.image_max_bytes * 2 + 64 * 1024)
# Small events (readings, status, presence) waiting to go out; the oldest go first when full.
OUTBOX_SIZE: Final = 1000
# Open connections are re-checked the moment a session ends in this process (logout, a password
# change or a user deleted on the web), within sessions.WATCH_S of any other commit (the CLI's
# `user passwd`, `user del`, `token revoke`), and this often whatever happens (a session's maximum
# age). Sessions come from memory (SessionCache); tokens are one indexed lookup each.
RECHECK_S: Final = 2.0
# An Engine.IO session that has not joined as a browser or publisher (never sent the Socket.IO
# connect, or was refused) is closed after this long: each holds a descriptor and memory, and
# anyone can open them without a login.
JOIN_TIMEOUT_S: Final = 10.0


def _ack(*, error: str | None = None, message: str | None = None) -> dict[str, Any]:
    return schema.Ack(ok=error is None, error=error, message=message).model_dump(exclude_none=True)


class _Refused(Exception):
    """A publisher's event that fails validation: the ack says why, the connection stays."""

    code = "invalid"


def _checked(adapter: TypeAdapter[M], data: Any) -> M:
    """An event's data checked by its model: the same rules and messages as the REST route."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        if schema.not_an_object(exc):
            msg = "send an object with " + ", ".join(adapter.json_schema()["properties"])
            raise _Refused(msg) from None
        raise _Refused(schema.describe(exc)) from None


def _payload(model: BaseModel) -> dict[str, Any]:
    """A model as Socket.IO sends it: timestamps as API strings, frame bytes as an attachment."""
    return model.model_dump()


# A frame as it goes out: its Engine.IO packets (the event, then the image as an attachment).
Encoded = list[eio_packet.Packet]


class _BrowserChannel:
    """Frames to one browser: at most one in flight, one waiting; newer frames replace waiting."""

    def __init__(self, relay: RelayChannels, sid: str, eio_sid: str) -> None:
        self._relay = relay
        self.sid = sid
        self._eio_sid = eio_sid
        self.frames: Latest[Encoded] = Latest(relay.frame_dropped)
        self.wants_frames = True  # image2v; False once the browser takes them from /frames
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            frame = await self.frames.take()
            for part in frame:
                await self._relay.sio.eio.send_packet(self._eio_sid, part)
            queue = self._relay.outgoing_queue(self.sid)
            if queue is not None:
                await queue.join()  # the transport has taken this frame: the next may go


class RelayChannels:
    """The Socket.IO server and the per-browser channels."""

    def __init__(self, settings: Settings, services: Callable[[], Services],
                 session_of: Callable[[str], str | None]) -> None:
        self._settings = settings
        self._services = services
        self._session_of = session_of  # a Cookie header -> the auth id of its login, or None
        self.quiet_log = quiet = QuietLogger()
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=self._origin_allowed,
            max_http_buffer_size=transport_max_bytes(settings),
            serializer=TolerantPacket, logger=quiet, engineio_logger=quiet,
        )
        self._channels: dict[str, _BrowserChannel] = {}
        self._unjoined: dict[str, float] = {}  # Engine.IO sid -> when first seen not joined
        self._unsubscribe: list[Callable[[], None]] = []
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(OUTBOX_SIZE)
        self._sender_task: asyncio.Task[None] | None = None
        self._recheck_tasks: list[asyncio.Task[None]] = []
        self._recheck_due = asyncio.Event()
        self._idle = timedelta(seconds=settings.session_idle_timeout_s)
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on(IMAGE_IN, self._image)
        self.sio.on(TEMPHUM_IN, self._temphum)
        self.sio.on(STATUS_IN, self._status)
        self.sio.on(FRAMES_IN, self._frames)
        self.sio.on(BAD_PACKET, self._bad_packet)
        self.wire = FrameWire(self._admit_wire, lambda: self.service.latest.image,
                              dropped=self.frame_dropped)

    def frame_dropped(self) -> None:
        self.service.stats.frames_dropped += 1

    @property
    def service(self) -> RelayService:
        return self._services().relay

    @property
    def browser_count(self) -> int:
        return len(self._channels)

    def start(self) -> None:
        ctx = self._services()
        self._unsubscribe = [ctx.relay.subscribe(self._on_relay),
                             ctx.presence.subscribe(self._on_presence)]
        # Always: a printer linked later from the Settings page reaches open dashboards too.
        self._unsubscribe.append(ctx.printer.subscribe(
            lambda payload: self._broadcast(PRINTER_OUT, payload)))
        self._unsubscribe.append(ctx.sessions.subscribe(self._recheck_due.set))
        self._sender_task = asyncio.create_task(self._sender())
        self._recheck_tasks = [asyncio.create_task(self._recheck_forever()),
                               asyncio.create_task(self._recheck_every()),
                               asyncio.create_task(ctx.sessions.watch(ctx.clock))]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        tasks = [c.task for c in self._channels.values()]
        tasks += [viewer.task for viewer in self.wire.viewers]
        tasks += self._recheck_tasks + ([self._sender_task] if self._sender_task else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._channels.clear()

    def outgoing_queue(self, sid: str) -> asyncio.Queue[Any] | None:
        """The engine.io queue of one client (python-engineio's AsyncSocket.queue)."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        socket = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
        queue: asyncio.Queue[Any] | None = getattr(socket, "queue", None)
        return queue

    # -- who may connect -----------------------------------------------------------------------
    def _origin_allowed(self, origin: str | None, environ: dict[str, Any]) -> bool:
        return self._origin_ok(origin, environ.get("asgi.scope", {}).get("scheme"),
                               environ.get("HTTP_HOST", ""))

    def _origin_ok(self, origin: str | None, scheme: str | None, host: str) -> bool:
        if origin is None:
            return True  # not a browser (browsers always send Origin on WebSocket and CORS)
        own = f"{'https' if scheme in ('https', 'wss') else 'http'}://{host}"
        allowed = origin == own or origin in self._settings.public_origins
        if not allowed:
            _LOGGER.warning("Refused a WebSocket from origin %s", urlsplit(origin).netloc)
        return allowed

    async def _session_user(self, auth_id: str | None) -> User | None:
        """The user of a live session; asking counts as use (an open dashboard is one)."""
        ctx = self._services()
        return await user_for_session(ctx.db, auth_id, now=ctx.clock.wall(), idle=self._idle,
                                      cache=ctx.sessions)

    async def _browser(self, cookie_header: str) -> tuple[str, str] | None:
        """(auth id, user name) of the live session in a Cookie header, else None."""
        auth_id = self._session_of(cookie_header)
        user = await self._session_user(auth_id)
        return (auth_id, user.username) if user is not None and auth_id else None

    async def _admit_wire(self, scope: Any) -> tuple[str, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not self._origin_ok(headers.get("origin"), scope.get("scheme"),
                               headers.get("host", "")):
            return None
        return await self._browser(headers.get("cookie", ""))

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        ctx = self._services()
        token = auth.get("token") if isinstance(auth, dict) else None
        if isinstance(token, str) and token:
            record = await check_token(ctx.db, token, now=ctx.clock.wall())
            if record is None:
                msg = "that publisher token is not valid"
                raise socketio.exceptions.ConnectionRefusedError(msg, {"error": "bad_token"})
            await self.sio.save_session(sid, {"role": "publisher", "name": record.name,
                                              "token_hash": token_hash(token)})
            await self.sio.enter_room(sid, PUBLISHERS)
            return
        browser = await self._browser(environ.get("HTTP_COOKIE", ""))
        if browser is None:
            msg = "log in first, or send auth={token: ...}"
            raise socketio.exceptions.ConnectionRefusedError(msg, {"error": "unauthorized"})
        auth_id, name = browser
        await self.sio.save_session(sid, {"role": "browser", "name": name, "auth_id": auth_id})
        await self.sio.enter_room(sid, BROWSERS)
        self._channels[sid] = _BrowserChannel(self, sid, self.sio.manager.eio_sid_from_sid(sid, "/"))
        # Runs after this handler returns, when the client has its CONNECT packet.
        self.sio.start_background_task(self._greet, sid)

    async def _greet(self, sid: str) -> None:
        ctx = self._services()
        latest = ctx.relay.latest
        devices = schema.Devices.of(ctx.presence.devices(), ctx.presence.wall)
        await self.sio.emit(DEVICES_OUT, _payload(devices), to=sid)
        for event in (latest.temphum, latest.status):
            if event is not None:
                await self.sio.emit(*_outgoing(event), to=sid)
        if ctx.printer.configured:
            await self.sio.emit(PRINTER_OUT, ctx.printer.payload(), to=sid)
        channel = self._channels.get(sid)
        if latest.image and channel:
            channel.frames.offer(self._encoded(*_outgoing(latest.image)))

    async def _disconnect(self, sid: str, *_reason: Any) -> None:
        channel = self._channels.pop(sid, None)
        if channel:
            channel.task.cancel()
            # asyncio.wait, not `suppress(CancelledError): await task`: that would also swallow
            # a cancel of this handler itself, and hypercorn's shutdown would wait on it forever.
            await asyncio.wait([channel.task])

    async def _recheck_every(self) -> None:
        clock = self._services().clock
        while True:
            await clock.sleep(RECHECK_S)
            self._recheck_due.set()

    async def _recheck_forever(self) -> None:
        while True:
            await self._recheck_due.wait()
            self._recheck_due.clear()
            try:
                await self.recheck()
            except Exception:
                _LOGGER.exception("Re-checking open connections failed; trying again")

    async def drop_transports(self) -> None:
        """Shutdown: end every WebSocket at the transport, as a process exit would.

        Clients see the link drop and reconnect to the next process (a Socket.IO disconnect would
        tell them not to). Without this, hypercorn cancels the connections after its graceful
        timeout, and python-engineio's receive loop swallows a cancel that lands in an event
        handler (a bare ``except``), so a publisher that keeps sending kept the process alive.
        A ``None`` in an engine.io socket's queue is how engine.io itself ends its writer, which
        then closes the WebSocket.
        """
        for socket in list(self.sio.eio.sockets.values()):
            socket.queue.put_nowait(None)
        await self.wire.close_all(CLOSE_GOING_AWAY)

    async def _close_unjoined(self) -> None:
        now = self._services().clock.monotonic()
        joined = {eio_sid for room in (BROWSERS, PUBLISHERS)
                  for _sid, eio_sid in self.sio.manager.get_participants("/", room)}
        open_now = set(self.sio.eio.sockets)
        self._unjoined = {eio_sid: since for eio_sid, since in self._unjoined.items()
                          if eio_sid in open_now and eio_sid not in joined}
        for eio_sid in open_now - joined:
            since = self._unjoined.setdefault(eio_sid, now)
            if now - since >= JOIN_TIMEOUT_S:
                _LOGGER.info("Closing an Engine.IO session that did not join in %.0f s",
                             JOIN_TIMEOUT_S)
                del self._unjoined[eio_sid]
                await self.sio.eio.disconnect(eio_sid)

    async def recheck(self) -> None:
        """Close every connection whose session or token has ended, and those never joined."""
        ctx = self._services()
        await self._close_unjoined()
        for room in (BROWSERS, PUBLISHERS):
            for sid, _eio_sid in list(self.sio.manager.get_participants("/", room)):
                session = await self.sio.get_session(sid)
                if session.get("role") == "publisher":
                    alive = await token_alive(ctx.db, str(session.get("token_hash")))
                else:
                    alive = await self._session_user(session.get("auth_id")) is not None
                if not alive:
                    _LOGGER.info("Closing the Socket.IO connection of %s: its %s has ended",
                                 session.get("name"),
                                 "token" if session.get("role") == "publisher" else "session")
                    await self.sio.disconnect(sid)
        for viewer in list(self.wire.viewers):
            if await self._session_user(viewer.auth_id) is None:
                _LOGGER.info("Closing the /frames socket of %s: its session has ended", viewer.name)
                await viewer.close(CLOSE_POLICY)

    # -- publishers in -------------------------------------------------------------------------
    async def _publisher(self, sid: str) -> str | None:
        session = await self.sio.get_session(sid)
        return str(session["name"]) if session.get("role") == "publisher" else None

    async def _handle(self, sid: str, work: Callable[[], Awaitable[object]]) -> dict[str, Any]:
        name = await self._publisher(sid)
        if name is None:
            return _ack(error="forbidden", message="only publishers may send this")
        try:
            await work()
        except (RelayInputError, _Refused) as exc:
            self.service.rejected(str(exc), name)
            return _ack(error=exc.code, message=str(exc))
        except StorageFullError as exc:  # relayed live, not stored
            return _ack(error="storage_full", message=str(exc))
        return _ack()

    async def _image(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._handle(sid, lambda: self.service.image(
            frame_from_event(data, self._settings.image_max_bytes)))

    async def _temphum(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def work() -> None:
            reading = _checked(schema.TEMPHUM_EVENT, data)
            await self.service.temphum(reading.temperature, reading.humidity)

        return await self._handle(sid, work)

    async def _status(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def work() -> None:
            await self.service.status(_checked(schema.STATUS_EVENT, data).status)

        return await self._handle(sid, work)

    async def _frames(self, sid: str, data: Any = None) -> dict[str, Any]:
        channel = self._channels.get(sid)
        if channel is None:
            return _ack(error="forbidden", message="only browsers choose how frames come")
        wanted = data.get("image2v") if isinstance(data, dict) else None
        if not isinstance(wanted, bool):
            return _ack(error="invalid", message='send {"image2v": true} or {"image2v": false}')
        channel.wants_frames = wanted
        return _ack()

    async def _bad_packet(self, _sid: str, *_data: Any) -> dict[str, Any]:
        return _ack(error="bad_json", message="the event's data is not valid JSON")

    # -- browsers out --------------------------------------------------------------------------
    def _on_relay(self, event: RelayEvent) -> None:
        if isinstance(event, FrameEvent):
            self.wire.offer(event)
            wanting = [c for c in self._channels.values() if c.wants_frames]
            if wanting:
                encoded = self._encoded(*_outgoing(event))
                for channel in wanting:
                    channel.frames.offer(encoded)
            return
        self._broadcast(*_outgoing(event))

    def _encoded(self, event: str, payload: dict[str, Any]) -> Encoded:
        """An event's Engine.IO packets, as python-socketio's emit builds them for a room."""
        parts = self.sio.packet_class(socketio.packet.EVENT, namespace="/",
                                      data=[event, payload]).encode()
        return [eio_packet.Packet(eio_packet.MESSAGE, part)
                for part in (parts if isinstance(parts, list) else [parts])]

    def _on_presence(self, address: str, view: BeaconView | None) -> None:
        ctx = self._services()
        payload = (schema.DeviceRemoved(id=address) if view is None
                   else schema.Device.of(view, ctx.presence.wall))
        self._broadcast(PRESENCE_OUT, _payload(payload))

    def _broadcast(self, event: str, payload: dict[str, Any]) -> None:
        """Small events to every browser, in the order they happened."""
        if self._outbox.full():
            self._outbox.get_nowait()
        self._outbox.put_nowait((event, payload))

    async def _sender(self) -> None:
        while True:
            event, payload = await self._outbox.get()
            await self.sio.emit(event, payload, room=BROWSERS)

    @property
    def publisher_count(self) -> int:
        return sum(1 for _ in self.sio.manager.get_participants("/", PUBLISHERS))


def _outgoing(event: RelayEvent) -> tuple[str, dict[str, Any]]:
    """The browser event of a relay event: its name and its JSON (the reference's fields)."""
    if isinstance(event, FrameEvent):
        return IMAGE_OUT, _payload(schema.ImageOut(
            image=event.frame.data, mime=event.frame.mime, timestamp=event.at))
    if isinstance(event, Reading):
        return TEMPHUM_OUT, _payload(schema.TempHumOut(
            temperature=event.temperature, humidity=event.humidity, timestamp=event.at))
    assert isinstance(event, StatusEvent)  # noqa: S101 - RelayEvent has three members
    return STATUS_OUT, _payload(schema.StatusOut(status=event.status, timestamp=event.at))
