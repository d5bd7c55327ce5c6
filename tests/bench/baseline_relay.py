"""The baseline for the relay benchmark: the reference relay's design, nothing else.

The reference (/work/shared/reference/timelapse-relay-server.md) is Flask-SocketIO on eventlet: a
publisher emits ``image`` with ``{image: <base64 JPEG>}`` and the handler re-emits the same dict as
``image2v`` to every connected browser (``emit('image2v', data, broadcast=True)``). eventlet and
Flask-SocketIO are not in this project, so this is the same design translated to the stack the
appliance runs on (python-socketio's ``AsyncServer`` as ASGI on hypercorn), which keeps the web
server, the WebSocket implementation and the Socket.IO library identical on both sides of the
comparison: what differs is only the relay's design.

Written to be fast, not crippled: no authentication, no validation, no storage (the reference
stored every frame in SQLite; ours does too, the baseline does not), one JSON encoding per frame
shared by all browsers (python-socketio encodes a broadcast once), and the publisher is left out of
the broadcast (the reference's ``broadcast=True`` would echo every frame back to it too). What it
keeps from the reference: base64 text inside JSON both ways, and a broadcast into every browser's
unbounded queue (no latest-frame-wins), so a browser that falls behind makes the server buffer.

The ``image`` handler returns nothing, as the reference's does; a client that asks for an ack gets
an empty one once the broadcast has been queued, which is what the benchmark's publisher waits for.

Run: ``python tests/bench/baseline_relay.py --port 8001`` (``GET /health`` answers 200 when ready).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config

# Big enough for a 2 MiB frame as base64 (the appliance's image_max_bytes) plus the JSON around it.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def create_app() -> Any:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*",
                               max_http_buffer_size=MAX_MESSAGE_BYTES,
                               logger=False, engineio_logger=False)

    @sio.on("image")
    async def image(sid: str, data: Any) -> None:
        # The reference: emit('image2v', data, broadcast=True), minus the echo to the publisher.
        await sio.emit("image2v", data, skip_sid=sid)

    async def other(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``GET /health`` for the benchmark's readiness probe; 404 otherwise; lifespan accepted."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        ok = scope["path"] == "/health"
        await send({"type": "http.response.start", "status": 200 if ok else 404,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}' if ok else b"{}"})

    return socketio.ASGIApp(sio, other_asgi_app=other, socketio_path="socket.io")


async def main_async(host: str, port: int) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"  # no "Running on ..." line in the benchmark's output
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(create_app(), config, shutdown_trigger=stop.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main_async(args.host, args.port))


if __name__ == "__main__":
    main()
