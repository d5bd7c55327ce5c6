"""The stand-in printer's camera: the A1's port-6000 protocol over TLS, sending real JPEGs.

Frames are drawn with Pillow (a progress bar and the layer), so a newcomer running
`make run PRINTER=standin` sees the print move. Tests can make the next frame oversized or
truncated; the benchmark hands in its own frames (``frame``, called just before each is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import struct
from collections.abc import Callable
from typing import Final

from appliance_sim.printer.certs import CertFiles

AUTH_SIZE: Final = 80
AUTH_HEAD: Final = struct.pack("<IIII", 0x40, 0x3000, 0, 0)


def render_jpeg(text: str, progress: float, size: tuple[int, int] = (640, 360)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (28, 32, 40))
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle((40, height - 60, width - 40, height - 40), outline=(200, 200, 200))
    draw.rectangle((40, height - 60, 40 + int((width - 80) * max(0.0, min(1.0, progress))),
                    height - 40), fill=(80, 180, 90))
    draw.text((40, 40), "STAND-IN PRINTER CAMERA", fill=(240, 240, 240))
    draw.text((40, 70), text, fill=(240, 240, 240))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=70)
    return out.getvalue()


class StandinCamera:
    def __init__(self, certs: CertFiles, access_code: str, *, interval_s: float = 1.0,
                 scene: Callable[[], tuple[str, float]] = lambda: ("idle", 0.0),
                 port: int = 0) -> None:
        self._certs = certs
        self.access_code = access_code
        self.interval_s = interval_s
        self._scene = scene
        self.frame: Callable[[], bytes] = self._render  # the next frame's JPEG
        self.port = port
        self.oversize_next = False  # announce a frame of this many bytes, once
        self.oversize_bytes = 0
        self.truncate_next = False
        self.connections = 0
        self.refused = 0
        self.frames_sent = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self._certs.cert, self._certs.key)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    def _render(self) -> bytes:
        text, progress = self._scene()
        return render_jpeg(text, progress)

    def _expected(self) -> bytes:
        return AUTH_HEAD + b"bblp".ljust(32, b"\0") + self.access_code.encode().ljust(32, b"\0")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        if task:
            self._handlers.add(task)
        try:
            async with asyncio.timeout(10):
                packet = await reader.readexactly(AUTH_SIZE)
            if packet != self._expected():
                self.refused += 1
                return  # as the printer does: the connection is closed
            while True:
                jpeg = self.frame()
                if self.oversize_next:
                    self.oversize_next = False
                    writer.write(struct.pack("<IIII", self.oversize_bytes, 0, 0, 0))
                    await writer.drain()
                    await asyncio.sleep(self.interval_s)
                    continue
                if self.truncate_next:
                    self.truncate_next = False
                    writer.write(struct.pack("<IIII", len(jpeg), 0, 0, 0) + jpeg[: len(jpeg) // 2])
                    await writer.drain()
                    return
                writer.write(struct.pack("<IIII", len(jpeg), 0, 0, 0) + jpeg)
                await writer.drain()
                self.frames_sent += 1
                await asyncio.sleep(self.interval_s)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # stop(): asyncio's stream callback would log a cancelled handler as an error.
            return
        finally:
            self._writers.discard(writer)
            if task:
                self._handlers.discard(task)
            writer.close()
