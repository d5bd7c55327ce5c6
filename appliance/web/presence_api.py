"""The presence REST API, with the reference server's paths and JSON fields."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request, validate_response

from appliance import __version__, schema, system_status
from appliance.presence.model import PresenceState
from appliance.timelapse.schema import TimelapseStatus
from appliance.web.context import services
from appliance.web.guard import public, token_allowed
from appliance.web.openapi import document_errors

blueprint = Blueprint("presence", __name__)


@blueprint.get("/health")
@public
@validate_response(schema.Health)
async def health() -> schema.Health:
    """Liveness; the one API route that needs no login."""
    return schema.Health(service="appliance", version=__version__)


@blueprint.get("/devices")
@token_allowed
@document_errors(401)
@validate_response(schema.Devices)
async def devices() -> schema.Devices:
    """Beacons in range or paired, paired first."""
    presence = services().presence
    return schema.Devices.of(presence.devices(), presence.wall)


class Status(schema.Status):
    # Recording, rendering, the space the videos use and whether low space paused recording.
    timelapse: TimelapseStatus
    # The broker link and the scanners' batches, with what was dropped and why.
    mqtt: schema.MqttStatus


@blueprint.get("/status")
@token_allowed
@document_errors(401)
@validate_response(Status)
async def status() -> Status:
    """Bluetooth and pairing counters (the reference fields) and the adapter's health."""
    ctx = services()
    presence = ctx.presence
    views = presence.devices()
    paired = [v for v in views if v.pairing is not None]
    health = presence.health
    return Status(
        bluetooth=schema.BluetoothStatus(
            scanning=health.scanning, discoveredCount=len(views),
            connectedCount=sum(v.linked for v in views), radio=presence.radio_name,
            adapter=health.state, recoveries=health.recoveries, lastError=health.last_error,
            lastRecovery=health.last_recovery,
        ),
        pairing=schema.PairingStatus(
            totalPaired=len(paired),
            requiresTap=sum(v.state is PresenceState.REQUIRES_TAP for v in paired),
            activeRecent=sum(v.state is not PresenceState.REQUIRES_TAP for v in paired),
        ),
        relay=schema.RelayStatus(
            browsers=ctx.browsers(), publishers=ctx.publishers(),
            framesIn=ctx.relay.stats.frames_in, framesDropped=ctx.relay.stats.frames_dropped,
            framesStored=ctx.relay.stats.frames_stored, storeErrors=ctx.relay.stats.store_errors,
            rejected=ctx.relay.stats.rejected,
        ),
        tunnel=schema.TunnelStatus.model_validate(system_status.tunnel(ctx.settings)),
        setup=schema.SetupStatus.model_validate(system_status.setup(ctx.settings)),
        storage=schema.StorageStatus.model_validate(system_status.storage(ctx.settings, ctx.db)),
        printer=ctx.printer.status(),
        timelapse=TimelapseStatus.model_validate(ctx.timelapses.status()),
        mqtt=schema.MqttStatus.model_validate(ctx.mqtt.status()),
    )


@blueprint.post("/pair")
@validate_request(schema.PairRequest)
@document_errors(400, 401, 404, 409, 422)
@validate_response(schema.Paired)
async def pair(data: schema.PairRequest) -> schema.Paired:
    """Pair a beacon that has been seen with a user; the appliance connects to it when present."""
    presence = services().presence
    view = await presence.pair(data.deviceId, data.userId, data.userName)
    return schema.Paired(message="Device paired successfully", deviceId=data.deviceId,
                         userId=data.userId, device=schema.Device.of(view, presence.wall))


@blueprint.post("/reconnect")
@validate_request(schema.DeviceRequest)
@document_errors(400, 401, 404, 422)
@validate_response(schema.Paired)
async def reconnect(data: schema.DeviceRequest) -> schema.Paired:
    """The Reconnect tap: needed once a beacon was away longer than the reconnect window."""
    presence = services().presence
    view = await presence.reconnect(data.deviceId)
    assert view.pairing is not None  # noqa: S101 - reconnect only succeeds for paired beacons
    return schema.Paired(message="Device reconnected", deviceId=data.deviceId,
                         userId=view.pairing.user_id, device=schema.Device.of(view, presence.wall))


@blueprint.post("/unpair")
@validate_request(schema.DeviceRequest)
@document_errors(400, 401, 404, 422)
@validate_response(schema.Unpaired)
async def unpair(data: schema.DeviceRequest) -> schema.Unpaired:
    await services().presence.unpair(data.deviceId)
    return schema.Unpaired(message="Device unpaired", deviceId=data.deviceId)
