"""GET /api/scanners: the satellite scanners, where they stand, when each last reported."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_response

from appliance import schema
from appliance.presence.tracker import LOCAL_SCANNER
from appliance.web.context import services
from appliance.web.openapi import document_errors

blueprint = Blueprint("scanners", __name__)


@blueprint.get("/api/scanners")
@document_errors(401)
@validate_response(schema.Scanners)
async def list_scanners() -> schema.Scanners:
    """The appliance's own radio (``local``), then the scanners issued with `appliance scanner
    add`, online or not; ``beaconCount``: the beacons in the area of each."""
    ctx = services()
    mqtt = ctx.mqtt
    await mqtt.hub.refresh()
    views = ctx.presence.devices()
    local = schema.ScannerInfo(
        id=LOCAL_SCANNER, area=ctx.settings.area, online=ctx.presence.health.scanning,
        lastSeen=max((ctx.presence.wall(v.last_seen) for v in views if v.scanner == LOCAL_SCANNER),
                     default=None),
        beaconCount=sum(v.scanner == LOCAL_SCANNER for v in views), batches=0)
    return schema.Scanners(configured=mqtt.configured, scanners=[local, *(
        schema.ScannerInfo.of(seen, ctx.presence.wall)
        for seen in sorted(mqtt.hub.scanners.values(), key=lambda s: s.id))])
