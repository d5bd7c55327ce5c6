"""The JSON shapes of the timelapse API and of ``timelapse2v`` (camelCase, like the rest)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, StringConstraints

from appliance.schema import ApiTime
from appliance.schema.common import one_line, one_line_schema
from appliance.timelapse.service import TimelapseView

Job = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                AfterValidator(one_line), one_line_schema(200)]


class TimelapseStart(BaseModel):
    """POST /api/timelapses: start a recording by hand."""

    model_config = ConfigDict(extra="forbid")
    job: Job | None = Field(default=None, description="what is printed; shown on the page")
    mode: Literal["layer", "interval"] | None = Field(
        default=None, description="layer (needs a printer) or interval; default timelapse_mode")


class Timelapse(BaseModel):
    """One recording: an entry of GET /api/timelapses and the body of ``timelapse2v``."""

    id: int
    job: str | None
    startedAt: ApiTime
    endedAt: ApiTime | None
    state: Literal["recording", "rendering", "ready", "failed"]
    frames: int = Field(description="frames recorded (the video holds the last one ~1 s more)")
    durationS: float | None = Field(description="the video's length, once ready")
    sizeBytes: int = Field(description="bytes on disk: video, poster and any frames kept")
    mode: Literal["layer", "interval"]
    trigger: Literal["printer", "manual"]
    progress: float | None = Field(description="rendering: 0 to 1")
    paused: str | None = Field(description="recording but taking no frames: why (low space)")
    error: str | None = Field(description="failed: why")

    @classmethod
    def of(cls, view: TimelapseView) -> Timelapse:
        r = view.recording
        return cls(id=r.id, job=r.job, startedAt=r.started_at, endedAt=r.ended_at,
                   state=r.state.value, frames=r.frames, durationS=r.duration_s,
                   sizeBytes=r.size_bytes, mode=r.mode,  # type: ignore[arg-type]
                   trigger=r.trigger, progress=view.progress,  # type: ignore[arg-type]
                   paused=view.paused, error=r.error)


class Timelapses(RootModel[list[Timelapse]]):
    """GET /api/timelapses: every recording, newest first."""


class TimelapseRemoved(BaseModel):
    """``timelapse2v`` after DELETE (or the space budget) removed a recording."""

    id: int
    removed: Literal[True] = True


class TimelapseStatus(BaseModel):
    """The ``timelapse`` section of /status."""

    mode: str
    recording: int | None
    frames: int | None
    paused: str | None
    rendering: int | None
    renderProgress: float | None
    queued: int
    usedBytes: int
    maxBytes: int
    freeBytes: int
    minFreeBytes: int
    lowSpace: bool
    deletedForSpace: int
    framesDropped: int
    writeErrors: int


def event(what: TimelapseView | int) -> dict[str, Any]:
    """The ``timelapse2v`` body for a change of the service (a view, or the id it removed)."""
    model = TimelapseRemoved(id=what) if isinstance(what, int) else Timelapse.of(what)
    return model.model_dump()
