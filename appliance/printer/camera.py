"""The A1/A1 mini/P1 camera: JPEG frames over TLS on port 6000.

The client sends one 80-byte packet (u32 0x40, 0x3000, 0, 0, little-endian; ``bblp`` and the
access code, each NUL-padded to 32 bytes); the printer then sends frames, each a 16-byte header
whose first u32 (little-endian) is the JPEG's length, then the JPEG. A wrong access code gets the
connection closed before any frame.

Frames stay bytes: nothing here decodes a JPEG. A frame larger than ``max_bytes`` is refused
before it is read into memory; the stream has no frame markers to resynchronise on, so the link
resynchronises by reconnecting (the printer starts every connection at a header). The X1's RTSPS
camera is a different protocol and is not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn

from appliance.clock import Clock
from appliance.printer.backoff import Backoff, run_with_backoff
from appliance.printer.errors import AccessCodeRefused, PrinterError, describe_os_error
from appliance.printer.health import LinkHealth
from appliance.printer.trust import PrinterTrust

_LOGGER = logging.getLogger(__name__)

HEADER: Final = struct.Struct("<IIII")
AUTH_HEAD: Final = struct.pack("<IIII", 0x40, 0x3000, 0, 0)
USERNAME: Final = b"bblp"
FIELD: Final = 32
CONNECT_TIMEOUT_S: Final = 10.0
# The printer sends a frame every 1-2 s; a silent stream for this long is a dead one.
FRAME_TIMEOUT_S: Final = 20.0
JPEG_SOI: Final = b"\xff\xd8"
CAMERA_NAME: Final = "printer's camera"

def auth_packet(access_code: str) -> bytes:
    code = access_code.encode()
    if len(code) > FIELD:
        msg = f"the access code is longer than {FIELD} bytes"
        raise PrinterError(msg, code="bad_access_code")
    return AUTH_HEAD + USERNAME.ljust(FIELD, b"\0") + code.ljust(FIELD, b"\0")


class StreamError(PrinterError):
    """The stream broke its framing (oversized, truncated, not a JPEG): reconnect."""


class CameraLink:
    def __init__(self, host: str, port: int, access_code: Callable[[], str], trust: PrinterTrust,
                 on_frame: Callable[[bytes], Awaitable[None]], clock: Clock, *, max_bytes: int,
                 backoff: Backoff | None = None, on_change: Callable[[], None] = lambda: None) -> None:
        self._host, self._port = host, port
        self._access_code = access_code
        self._trust = trust
        self._on_frame = on_frame
        self._clock = clock
        self._max_bytes = max_bytes
        self._backoff = backoff or Backoff()
        self._on_change = on_change
        self.health = LinkHealth()
        self.frames = 0
        self.oversized = 0
        self.truncated = 0

    async def run(self) -> NoReturn:
        await run_with_backoff(
            self._session, name="Printer camera", clock=self._clock, backoff=self._backoff,
            health=self.health, describe=self._describe, on_change=self._on_change,
            closed=f"{self._host}:{self._port} closed the camera stream")

    def _describe(self, exc: Exception) -> str:
        if self._trust.problem:
            return self._trust.problem
        if isinstance(exc, PrinterError):
            return str(exc)
        return describe_os_error(exc, self._host, self._port)

    async def _session(self) -> None:
        packet = auth_packet(self._access_code())
        ctx = self._trust.context()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(self._host, self._port, ssl=ctx)
        try:
            tls = writer.get_extra_info("ssl_object")
            # Before the access code goes out: the certificate must be the trusted one.
            self._trust.check(tls.getpeercert(binary_form=True) if tls else None,
                              tls.getpeercert() if tls else None)
            writer.write(packet)
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await writer.drain()
            await self._frames(reader)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await writer.wait_closed()

    async def _frames(self, reader: asyncio.StreamReader) -> None:
        seen = 0
        while True:
            try:
                async with asyncio.timeout(FRAME_TIMEOUT_S):
                    header = await reader.readexactly(HEADER.size)
            except asyncio.IncompleteReadError as exc:
                if seen == 0 and not exc.partial:
                    raise AccessCodeRefused(CAMERA_NAME) from None
                if exc.partial:
                    self.truncated += 1
                msg = f"{self._host}:{self._port} closed the camera stream"
                raise StreamError(msg, code="camera_closed") from None
            except TimeoutError:
                msg = f"the camera at {self._host}:{self._port} sent no frame for {FRAME_TIMEOUT_S:g} s"
                raise PrinterError(msg, code="camera_silent") from None
            length = HEADER.unpack(header)[0]
            if length > self._max_bytes or length == 0:
                self.oversized += 1
                msg = (f"the camera announced a {length}-byte frame (limit {self._max_bytes}, "
                       "image_max_bytes); reconnecting to resynchronise")
                raise StreamError(msg, code="frame_too_large")
            try:
                async with asyncio.timeout(FRAME_TIMEOUT_S):
                    jpeg = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, TimeoutError):
                self.truncated += 1
                msg = f"a camera frame ended early (expected {length} bytes); reconnecting"
                raise StreamError(msg, code="frame_truncated") from None
            if not jpeg.startswith(JPEG_SOI):
                self.truncated += 1
                msg = "the camera stream lost its framing (no JPEG where one was due); reconnecting"
                raise StreamError(msg, code="frame_not_jpeg")
            if seen == 0:
                self.health.up(self._clock.monotonic())
                self._on_change()
                _LOGGER.info("Printer camera streaming from %s:%s", self._host, self._port)
            seen += 1
            self.frames += 1
            await self._on_frame(jpeg)
