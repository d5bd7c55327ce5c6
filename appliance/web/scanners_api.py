"""GET /api/scanners: the satellite scanners, where they stand, when each last reported."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_response

from appliance import schema
from appliance.web.context import services
from appliance.web.openapi import document_errors

blueprint = Blueprint("scanners", __name__)


@blueprint.get("/api/scanners")
@document_errors(401)
@validate_response(schema.Scanners)
async def list_scanners() -> schema.Scanners:
    """Scanners issued with `appliance scanner add`, online or not, and the beacons each hears."""
    ctx = services()
    mqtt = ctx.mqtt
    await mqtt.hub.refresh()
    return schema.Scanners(configured=mqtt.configured, scanners=[
        schema.ScannerInfo.of(seen, ctx.presence.wall)
        for seen in sorted(mqtt.hub.scanners.values(), key=lambda s: s.id)])
