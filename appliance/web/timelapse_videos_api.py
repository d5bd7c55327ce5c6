"""Timelapse videos: /api/timelapses (appliance/timelapse/ records and renders them)."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, request, send_file
from quart_schema import validate_request, validate_response
from werkzeug.datastructures import ContentRange
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from appliance import schema as api_schema
from appliance.timelapse import schema
from appliance.timelapse.service import TimelapseService
from appliance.web.context import services
from appliance.web.openapi import binary_answer, document_errors

blueprint = Blueprint("timelapse_videos", __name__)


def _timelapses() -> TimelapseService:
    return services().timelapses


@blueprint.get("/api/timelapses")
@document_errors(401)
@validate_response(schema.Timelapses)
async def list_timelapses() -> schema.Timelapses:
    """Every recording, newest first; the same entries ``timelapse2v`` sends on every change."""
    return schema.Timelapses([schema.Timelapse.of(v) for v in await _timelapses().all()])


@blueprint.post("/api/timelapses")
@validate_request(schema.TimelapseStart)
@document_errors(400, 401, 409, 422)
@validate_response(schema.Timelapse, 201)
async def start_timelapse(data: schema.TimelapseStart) -> tuple[schema.Timelapse, int]:
    """Start recording by hand (with a printer linked, its prints start and end their own)."""
    view = await _timelapses().begin(data.job, data.mode)
    return schema.Timelapse.of(view), 201


@blueprint.post("/api/timelapses/<int:recording_id>/stop")
@document_errors(401, 404, 409)
@validate_response(schema.Timelapse)
async def stop_timelapse(recording_id: int) -> schema.Timelapse:
    """End a recording; its video is rendered next (``state`` becomes rendering, then ready)."""
    return schema.Timelapse.of(await _timelapses().end(recording_id))


@blueprint.delete("/api/timelapses/<int:recording_id>")
@document_errors(401, 404, 409)
@validate_response(api_schema.Done)
async def delete_timelapse(recording_id: int) -> api_schema.Done:
    """Delete a ready or failed recording: its video, poster, frames and entry."""
    await _timelapses().delete(recording_id)
    return api_schema.Done(message=f"timelapse {recording_id} deleted")


@blueprint.get("/api/timelapses/<int:recording_id>/video")
@binary_answer("video/mp4")
@document_errors(401, 404, 409, 416)
async def timelapse_video(recording_id: int) -> Response:
    """The MP4 (H.264); a Range request gets 206 and the bytes asked for, so players can seek."""
    path = await _timelapses().file(recording_id, "video")
    size = path.stat().st_size
    body = current_app.response_class.file_body_class(path)
    response = current_app.response_class(body, mimetype="video/mp4")
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Content-Disposition"] = f'inline; filename="timelapse-{recording_id}.mp4"'
    response.content_length = size
    # Ranges by hand: quart's own handling fails on suffix ranges (bytes=-500) and on ranges
    # past the end, with a 500. A Range header that does not parse is ignored (RFC 9110).
    asked = request.range
    if asked is not None:
        span = asked.range_for_length(size)
        if span is None:
            raise RequestedRangeNotSatisfiable(
                length=size, description=f"the video has {size} bytes; ask for one range in them")
        start, stop = span
        await body.make_conditional(start, stop)
        response.status_code = 206
        response.content_range = ContentRange("bytes", start, stop, size)
        response.content_length = stop - start
    return response


@blueprint.get("/api/timelapses/<int:recording_id>/poster")
@binary_answer("image/jpeg")
@document_errors(401, 404, 409)
async def timelapse_poster(recording_id: int) -> Response:
    """A JPEG of the last frame, for the list."""
    path = await _timelapses().file(recording_id, "poster")
    return await send_file(path, mimetype="image/jpeg")
