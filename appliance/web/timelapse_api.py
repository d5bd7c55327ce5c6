"""Timelapse REST API: sensor history and the publishers' delays (reference paths and fields)."""

from __future__ import annotations

from datetime import date

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from appliance import schema
from appliance.web.context import services
from appliance.web.guard import token_allowed
from appliance.web.openapi import document_errors

blueprint = Blueprint("timelapse", __name__)


@blueprint.get("/api/temphum")
@validate_querystring(schema.TempHumQuery)
@document_errors(401, 422)
@validate_response(schema.TempHumReadings)
async def temphum(query_args: schema.TempHumQuery) -> schema.TempHumReadings:
    """Every temperature/humidity reading of one UTC day (``?date=YYYY-MM-DD``), oldest first."""
    ctx = services()
    day = date.fromisoformat(query_args.date) if query_args.date else ctx.clock.wall().date()
    return schema.TempHumReadings([
        schema.TempHumOut(temperature=r.temperature, humidity=r.humidity, timestamp=r.at)
        for r in await ctx.relay.readings_on(day)])


@blueprint.get("/api/timelapse_config")
@token_allowed
@document_errors(401)
@validate_response(schema.TimelapseConfig)
async def get_timelapse_config() -> schema.TimelapseConfig:
    """Seconds between frames, readings and status updates, for the publishers."""
    delays = await services().relay.delays()
    return schema.TimelapseConfig.model_validate(delays, from_attributes=True)


@blueprint.put("/api/timelapse_config")
@validate_request(schema.TimelapseConfig)
@document_errors(400, 401, 422)
@validate_response(schema.TimelapseConfig)
async def put_timelapse_config(data: schema.TimelapseConfig) -> schema.TimelapseConfig:
    await services().relay.set_delays(data.image_delay, data.temphum_delay, data.status_delay)
    return data
