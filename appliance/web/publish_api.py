"""Publishing over REST for simple clients: the same models and relay as Socket.IO."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import ValidationError
from quart import Blueprint, Response, request
from quart_schema import RequestSchemaValidationError, validate_request, validate_response

from appliance import schema
from appliance.relay.frames import RelayInputError, frame_from_bytes
from appliance.web.context import services
from appliance.web.errors import json_error
from appliance.web.guard import current_account, current_publisher, token_allowed
from appliance.web.openapi import binary_body, document_errors

blueprint = Blueprint("publish", __name__)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _who() -> str:
    publisher, user = current_publisher(), current_account()
    return publisher.name if publisher else user.username if user else "?"


def _counts_rejections(func: F) -> F:
    """Bad bodies count in /status's relay.rejected, as bad Socket.IO events do."""

    @wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await func(*args, **kwargs)
        except RequestSchemaValidationError as exc:
            inner = exc.validation_error
            reason = schema.describe(inner) if isinstance(inner, ValidationError) else str(inner)
            services().relay.rejected(reason, _who())
            raise

    return wrapper  # type: ignore[return-value]


@blueprint.post("/api/image")
@token_allowed
@binary_body("image/jpeg", "image/png")
@document_errors(400, 401, 413, 415)
@validate_response(schema.ImagePublished, 201)
async def post_image() -> Response | tuple[schema.ImagePublished, int]:
    """Publish one frame: the JPEG or PNG bytes as the body (any Content-Type)."""
    relay = services().relay
    try:
        # Uncached raw bytes (cache, as_text, parse_form_data: quart's typed overload wants all three).
        frame = frame_from_bytes(await request.get_data(False, False, False),
                                 services().settings.image_max_bytes)
    except RelayInputError as exc:
        relay.rejected(str(exc), _who())
        return json_error(exc.status, exc.code, str(exc))
    event = await relay.image(frame)
    return schema.ImagePublished(mime=frame.mime, timestamp=event.at), 201


@blueprint.post("/api/temphum")
@token_allowed
@_counts_rejections
@validate_request(schema.TempHumIn)
@document_errors(400, 401, 422)
@validate_response(schema.TempHumPublished, 201)
async def post_temphum(data: schema.TempHumIn) -> tuple[schema.TempHumPublished, int]:
    """Publish a reading: {"temperature": °C, "humidity": %}."""
    event = await services().relay.temphum(data.temperature, data.humidity)
    return schema.TempHumPublished(
        temperature=event.temperature, humidity=event.humidity, timestamp=event.at), 201


@blueprint.post("/api/status")
@token_allowed
@_counts_rejections
@validate_request(schema.StatusIn)
@document_errors(400, 401, 422)
@validate_response(schema.StatusPublished, 201)
async def post_status(data: schema.StatusIn) -> tuple[schema.StatusPublished, int]:
    """Publish the printer's status: {"status": "text"}."""
    event = await services().relay.status(data.status)
    return schema.StatusPublished(status=event.status, timestamp=event.at), 201
