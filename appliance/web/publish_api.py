"""Publishing over REST for simple clients: the same validation and relay as Socket.IO."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from appliance.relay import validate
from appliance.web.context import services
from appliance.web.errors import json_error
from appliance.web.guard import current_account, current_publisher, token_allowed

blueprint = Blueprint("publish", __name__)


def _who() -> str:
    publisher, user = current_publisher(), current_account()
    return publisher.name if publisher else user.username if user else "?"


async def _accept(kind: str, payload: Any) -> Any:
    relay = services().relay
    try:
        if kind == "image":
            frame = validate.frame_from_bytes(payload, services().settings.image_max_bytes)
            result = await relay.image(frame)
            return {"ok": True, "mime": result["mime"], "timestamp": result["timestamp"]}, 201
        result = await (relay.temphum(payload) if kind == "temphum" else relay.status(payload))
        return {"ok": True, **result}, 201
    except validate.RelayInputError as exc:
        relay.rejected(exc, _who())
        return json_error(exc.status, exc.code, str(exc))


@blueprint.post("/api/image")
@token_allowed
async def post_image() -> Any:
    """Publish one frame: the JPEG or PNG bytes as the body (any Content-Type)."""
    return await _accept("image", await request.get_data(cache=False))


@blueprint.post("/api/temphum")
@token_allowed
async def post_temphum() -> Any:
    """Publish a reading: {"temperature": °C, "humidity": %}."""
    return await _accept("temphum", await request.get_json(silent=True))


@blueprint.post("/api/status")
@token_allowed
async def post_status() -> Any:
    """Publish the printer's status: {"status": "text"}."""
    return await _accept("status", await request.get_json(silent=True))
