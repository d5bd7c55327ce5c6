"""The presence REST API, with the reference server's paths and JSON fields."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request

from appliance import __version__, system_status
from appliance.presence.model import PresenceState
from appliance.presence.payload import device_payload
from appliance.web.context import services
from appliance.web.guard import public, token_allowed
from appliance.web.models import DeviceRequest, PairRequest

blueprint = Blueprint("presence", __name__)


@blueprint.get("/health")
@public
async def health() -> dict[str, Any]:
    """Liveness; the one API route that needs no login."""
    return {"status": "ok", "service": "appliance", "version": __version__}


@blueprint.get("/devices")
@token_allowed
async def devices() -> dict[str, Any]:
    """Beacons in range or paired, paired first."""
    presence = services().presence
    return {"discovered": [device_payload(v, presence.wall) for v in presence.devices()]}


@blueprint.get("/status")
@token_allowed
async def status() -> dict[str, Any]:
    """Bluetooth and pairing counters (the reference fields) and the adapter's health."""
    ctx = services()
    presence = ctx.presence
    views = presence.devices()
    paired = [v for v in views if v.pairing is not None]
    health = presence.health
    return {
        "bluetooth": {
            "scanning": health.scanning,
            "discoveredCount": len(views),
            "connectedCount": sum(v.linked for v in views),
            "radio": presence.radio_name,
            "adapter": health.state,
            "recoveries": health.recoveries,
            "lastError": health.last_error,
            "lastRecovery": health.last_recovery,
        },
        "pairing": {
            "totalPaired": len(paired),
            "requiresTap": sum(v.state is PresenceState.REQUIRES_TAP for v in paired),
            "activeRecent": sum(v.state is not PresenceState.REQUIRES_TAP for v in paired),
        },
        "relay": {
            "browsers": ctx.browsers(),
            "publishers": ctx.publishers(),
            "framesIn": ctx.relay.stats.frames_in,
            "framesDropped": ctx.relay.stats.frames_dropped,
            "rejected": ctx.relay.stats.rejected,
        },
        "tunnel": system_status.tunnel(ctx.settings),
        "setup": system_status.setup(ctx.settings),
        "printer": ctx.printer.status() if ctx.printer else {"configured": False},
    }


@blueprint.post("/pair")
@validate_request(PairRequest)
async def pair(data: PairRequest) -> dict[str, Any]:
    """Pair a beacon that has been seen with a user; the appliance connects to it when present."""
    presence = services().presence
    view = await presence.pair(data.deviceId, data.userId, data.userName)
    return {
        "success": True, "message": "Device paired successfully", "deviceId": data.deviceId,
        "userId": data.userId, "device": device_payload(view, presence.wall),
    }


@blueprint.post("/reconnect")
@validate_request(DeviceRequest)
async def reconnect(data: DeviceRequest) -> dict[str, Any]:
    """The Reconnect tap: needed once a beacon was away longer than the reconnect window."""
    presence = services().presence
    view = await presence.reconnect(data.deviceId)
    assert view.pairing is not None  # noqa: S101 - reconnect only succeeds for paired beacons
    return {
        "success": True, "message": "Device reconnected", "deviceId": data.deviceId,
        "userId": view.pairing.user_id, "device": device_payload(view, presence.wall),
    }


@blueprint.post("/unpair")
@validate_request(DeviceRequest)
async def unpair(data: DeviceRequest) -> dict[str, Any]:
    await services().presence.unpair(data.deviceId)
    return {"success": True, "message": "Device unpaired", "deviceId": data.deviceId}
