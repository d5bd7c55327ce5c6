"""Server-rendered pages: the start page and the API documentation."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, render_template
from quart_schema import hide

from appliance import __version__, system_status
from appliance.web.context import services
from appliance.web.guard import current_account

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
@hide
async def index() -> str:
    ctx = services()
    health = ctx.presence.health
    bluetooth_error = None if health.scanning else health.last_error
    return await render_template("index.html", user=current_account(), version=__version__,
                                 notices=system_status.notices(ctx.settings, bluetooth_error))


@blueprint.get("/settings")
@hide
async def settings() -> str:
    return await render_template("settings.html", user=current_account())


@blueprint.get("/docs")
@hide
async def docs() -> str:
    """Browsable API docs rendered from the OpenAPI document (no CDN: the Pi may be offline)."""
    spec: dict[str, Any] = current_app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return await render_template("docs.html", spec=spec, user=current_account())
