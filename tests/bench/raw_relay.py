"""The raw WebSocket anchor: the least a relay can do, on the `websockets` library alone.

A publisher connects to ``/publish`` and sends each frame as one binary message; the relay answers
each with the text ``ok`` once it has offered the frame to every browser. Browsers connect to
``/view`` and get every frame as one binary message, latest frame wins per browser (one slot each,
like the appliance's relay). No Socket.IO, no auth, no storage: a floor to compare the appliance's
CPU per frame with. ``GET /health`` answers 200 when ready.

Run: ``python tests/bench/raw_relay.py --port 8002`` (or ``--unix-socket PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from http import HTTPStatus

from websockets.asyncio.server import Request, Response, ServerConnection, serve, unix_serve
from websockets.exceptions import ConnectionClosed


class Viewer:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.waiting: bytes | None = None
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            frame, self.waiting = self.waiting, None
            if frame is not None:
                await self.ws.send(frame)


VIEWERS: set[Viewer] = set()


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request else ""
    try:
        if path == "/publish":
            async for frame in ws:
                for viewer in VIEWERS:
                    viewer.waiting = frame if isinstance(frame, bytes) else frame.encode()
                    viewer.wake.set()
                await ws.send("ok")
        else:
            viewer = Viewer(ws)
            VIEWERS.add(viewer)
            try:
                await viewer.run()
            finally:
                VIEWERS.discard(viewer)
    except ConnectionClosed:
        pass


def health(_ws: ServerConnection, request: Request) -> Response | None:
    if request.path == "/health":
        return _ws.respond(HTTPStatus.OK, '{"status":"ok"}\n')
    return None


async def main_async(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    options = {"process_request": health, "max_size": None, "compression": None,
               "ping_interval": None}
    server = (unix_serve(handler, args.unix_socket, **options) if args.unix_socket
              else serve(handler, args.host, args.port, **options))
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unix-socket", default="")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
