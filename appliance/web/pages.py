"""Server-rendered pages: the start page and the API documentation."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, render_template
from quart_schema import hide

from appliance import __version__, system_status
from appliance.auth.policy import MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, NAME_PATTERN
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
                                 notices=system_status.notices(ctx.settings, bluetooth_error, ctx.db))


@blueprint.get("/settings")
@hide
async def settings() -> str:
    # The forms check the same rules as the API, so a browser can say what is wrong at once.
    return await render_template(
        "settings.html", user=current_account(),
        name_pattern=NAME_PATTERN.removeprefix("^").removesuffix("$"),
        min_password=MIN_PASSWORD_LEN, max_password=MAX_PASSWORD_LEN)


@blueprint.get("/timelapses")
@hide
async def timelapses() -> str:
    ctx = services()
    return await render_template("timelapses.html", user=current_account(),
                                 printer=ctx.printer.configured,
                                 interval=ctx.settings.timelapse_interval_s)


@blueprint.get("/docs")
@hide
async def docs() -> str:
    """Browsable API docs rendered from the OpenAPI document (no CDN: the Pi may be offline)."""
    spec: dict[str, Any] = current_app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return await render_template("docs.html", spec=spec, user=current_account())
