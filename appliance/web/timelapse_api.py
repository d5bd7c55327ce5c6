"""Timelapse REST API: sensor history and the publishers' delays (reference paths and fields)."""

from __future__ import annotations

from datetime import date
from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from appliance.store import readings, timelapse
from appliance.store.db import to_db_time
from appliance.web.context import services
from appliance.web.guard import token_allowed
from appliance.web.models import TempHumQuery, TimelapseConfigBody

blueprint = Blueprint("timelapse", __name__)


@blueprint.get("/api/temphum")
@validate_querystring(TempHumQuery)
async def temphum(query_args: TempHumQuery) -> list[dict[str, Any]]:
    """Every temperature/humidity reading of one UTC day (``?date=YYYY-MM-DD``), oldest first."""
    ctx = services()
    day = date.fromisoformat(query_args.date) if query_args.date else ctx.clock.wall().date()
    return [
        {"timestamp": to_db_time(r.timestamp), "temperature": r.temperature, "humidity": r.humidity}
        for r in await readings.temphum_on(ctx.db, day)
    ]


@blueprint.get("/api/timelapse_config")
@token_allowed
async def get_timelapse_config() -> dict[str, int]:
    """Seconds between frames, readings and status updates, for the publishers."""
    config = await timelapse.get(services().db)
    return {
        "image_delay": config.image_delay,
        "temphum_delay": config.temphum_delay,
        "status_delay": config.status_delay,
    }


@blueprint.put("/api/timelapse_config")
@validate_request(TimelapseConfigBody)
async def put_timelapse_config(data: TimelapseConfigBody) -> dict[str, int]:
    config = timelapse.TimelapseConfig(data.image_delay, data.temphum_delay, data.status_delay)
    await timelapse.put(services().db, config)
    return data.model_dump()
