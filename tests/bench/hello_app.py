"""The REST anchor: a hypercorn hello-world, the fastest a route on this server stack can be.

An ASGI app with no framework that answers every GET with a small JSON body; `make bench` serves it
with the same hypercorn settings as `appliance serve` and compares `GET /devices` with it. With
``--quart``, the same answer from a one-route Quart app: the framework's own cost, for the record.
Run: ``python tests/bench/hello_app.py --port 8003 [--quart]``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

BODY = b'{"discovered":[]}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def quart_app() -> Any:
    from quart import Quart

    app = Quart(__name__)

    @app.get("/")
    async def hello() -> dict[str, list[str]]:
        return {"discovered": []}

    return app


async def main_async(port: int, *, quart: bool) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(quart_app() if quart else app, config, shutdown_trigger=stop.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--quart", action="store_true", help="a one-route Quart app instead")
    args = parser.parse_args()
    asyncio.run(main_async(args.port, quart=args.quart))


if __name__ == "__main__":
    main()
