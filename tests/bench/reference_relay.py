"""The reference design's relay, as the reference servers describe it: Flask-SocketIO on eventlet
under gunicorn, frames as base64 text inside JSON, re-broadcast to every browser.

A publisher emits ``image`` with ``{image: <base64 JPEG>}``; the handler re-emits the same dict as
``image2v`` to everyone else (``emit('image2v', data, broadcast=True, include_self=False)``: the
reference echoed to the publisher too, left out here so the anchor is not handicapped). No
authentication, no validation, no storage: the design and nothing worse. The handler returns
nothing, so a client that asks for an ack gets an empty one once the broadcast is queued.

Runs only in its own venv (tests/bench/requirements-reference.txt pins it), never the appliance's:
``build/bench/reference-venv/bin/gunicorn -k eventlet -w 1 -b unix:PATH --chdir tests/bench
reference_relay:app``. ``GET /health`` answers 200 when ready.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_socketio import SocketIO, emit

# A 2 MiB frame (the appliance's image_max_bytes) as base64, plus the JSON around it.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet", cors_allowed_origins="*",
                    max_http_buffer_size=MAX_MESSAGE_BYTES)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@socketio.on("image")
def image(data: Any) -> None:
    emit("image2v", data, broadcast=True, include_self=False)
