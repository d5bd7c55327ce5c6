"""H4 HCI between a controller and one host on a unix stream socket: what QEMU's serial chardev carries.

The radio listens; QEMU connects as a client (``-chardev socket,id=bt,path=PATH,reconnect-ms=1000``)
and the guest attaches the other end of that serial port with ``btattach -B /dev/ttyS1 -P h4``.
Listening here lets the radio start first and outlive guest reboots and power cuts: each new
connection is a fresh host (with a fresh H4 parser), and a closed one resets the controller. A
new connection while one is open replaces it (QEMU restarted before the old socket's end was
noticed): the old one is closed and the controller reset first, so the newest host always wins.
bumble's own unix server transport shares one parser between connections and never tells the
controller that its host went away, so it is not used.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Final

from bumble import core
from bumble.transport.common import PacketParser

from .guest_controller import GuestController

_LOGGER = logging.getLogger(__name__)

READ_SIZE: Final = 4096
# A host that stops reading (a paused VM) must not grow the radio without bound: beyond this
# many unread bytes (~30 s of three beacons' reports) events are dropped, as a UART loses them.
WRITE_BUFFER_LIMIT: Final = 1 << 20
# Closing the host's connection ends its reader at once; more means the loop is stuck.
CLOSE_TIMEOUT_S: Final = 2.0


class _HostSink:
    """The controller's events and data, written to the host's connection in H4 framing."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._dropping = False

    def on_packet(self, packet: bytes) -> None:
        transport = self._writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            if not self._dropping:
                _LOGGER.warning("The HCI host is not reading; dropping controller events")
            self._dropping = True
            return
        self._dropping = False
        self._writer.write(packet)  # bumble's packets start with the H4 packet type


class _ControllerSink:
    """Feeds whole H4 packets to the controller; a packet it cannot parse is logged, not fatal."""

    def __init__(self, controller: GuestController) -> None:
        self._controller = controller

    def on_packet(self, packet: bytes) -> None:
        try:
            self._controller.on_packet(packet)
        except (core.BaseBumbleError, ValueError, KeyError, IndexError) as exc:
            _LOGGER.warning("Ignoring an HCI packet the controller cannot handle (%r): %s",
                            exc, packet.hex())


class HciSocketServer:
    """Serves ``controller`` to one host at a time on the unix socket ``path``."""

    def __init__(self, controller: GuestController, path: Path) -> None:
        self.path = path
        self._controller = controller
        self._server: asyncio.Server | None = None
        self._host: asyncio.StreamWriter | None = None
        self._host_task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._takeover = asyncio.Lock()  # two new hosts at once: each replaces the one before

    @property
    def attached(self) -> bool:
        return self._host is not None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        _LOGGER.info("HCI (H4) socket at %s", self.path)

    async def close(self) -> None:
        if (server := self._server) is not None:
            self._server = None
            server.close()
            if (host := self._host) is not None:
                host.close()
            if self._handlers:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()
            self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_unix_server runs each handler as a task
        self._handlers.add(task)
        try:
            async with self._takeover:
                if (old_host := self._host) is not None and (old_task := self._host_task) is not None:
                    _LOGGER.warning("A new HCI host replaces the attached one (restarted VM?)")
                    old_host.close()
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await asyncio.gather(old_task, return_exceptions=True)  # detached, reset
                self._host, self._host_task = writer, task
            await self._attach(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = PacketParser(_ControllerSink(self._controller))
        self._controller.host = _HostSink(writer)
        _LOGGER.info("HCI host attached")
        try:
            while data := await reader.read(READ_SIZE):
                parser.feed_data(data)
        except core.InvalidPacketError as exc:
            # H4 cannot resynchronise: a real UART controller would need a reset too.
            _LOGGER.error("HCI host sent %s; closing its connection, re-attach to continue", exc)
        except ConnectionError as exc:
            _LOGGER.info("HCI host connection failed: %r", exc)
        finally:
            self._host = self._host_task = None
            self._controller.host_lost()
            writer.close()
            _LOGGER.info("HCI host detached; the controller is reset")
