"""What publishers send (REST and Socket.IO alike) and what browsers receive from the relay."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    Strict,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)

from appliance.schema.common import Answer, one_line, one_line_schema
from appliance.schema.time import ApiTime

DAY_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A DHT22/SHT3x reads -40..80 °C (SHT up to 125); anything outside is a broken sensor or a bug.
# Strict: "21" or true is a publisher bug, not a reading.
Temperature = Annotated[float, Strict(), Field(ge=-40.0, le=125.0, allow_inf_nan=False,
                                               description="°C")]
Humidity = Annotated[float, Strict(), Field(ge=0.0, le=100.0, allow_inf_nan=False,
                                            description="% relative humidity")]
STATUS_MAX_LEN: Final = 200
StatusText = Annotated[str, Strict(), StringConstraints(
    strip_whitespace=True, min_length=1, max_length=STATUS_MAX_LEN), AfterValidator(one_line),
    one_line_schema(STATUS_MAX_LEN)]


def _check_day(text: str) -> str:
    if not DAY_RE.match(text):
        msg = f"{text!r} is not a date like 2026-11-22"
        raise ValueError(msg)
    try:
        date.fromisoformat(text)
    except ValueError:
        msg = f"{text!r} is not a real calendar date"
        raise ValueError(msg) from None
    return text


class RelayStatus(BaseModel):
    browsers: int
    publishers: int
    framesIn: int
    framesDropped: int
    framesStored: int  # kept on the SD card: at most one per image_delay
    storeErrors: int
    rejected: int


class TimelapseConfig(BaseModel):
    """Delays in seconds between frames, sensor readings and status updates."""

    model_config = ConfigDict(extra="forbid")

    image_delay: int = Field(ge=1, le=86400)
    temphum_delay: int = Field(ge=1, le=86400)
    status_delay: int = Field(ge=1, le=86400)


class TempHumQuery(BaseModel):
    """The UTC day to list; today when omitted."""

    date: Annotated[str, AfterValidator(_check_day),
                    WithJsonSchema({"type": "string", "format": "date",
                                    "pattern": DAY_RE.pattern})] | None = None


class TempHumIn(BaseModel):
    """A reading from a publisher: the `temphum` event and POST /api/temphum."""

    temperature: Temperature
    humidity: Humidity


class StatusIn(BaseModel):
    """The printer's status from a publisher: the `status` event and POST /api/status."""

    status: StatusText


class TempHumOut(Answer):
    """temphum2v, and one row of GET /api/temphum."""

    temperature: float
    humidity: float
    timestamp: ApiTime


class StatusOut(Answer):
    """status2v."""

    status: str
    timestamp: ApiTime


class ImageOut(BaseModel):
    """image2v: the reference's {image}, with the bytes as a binary attachment instead of base64."""

    image: bytes
    mime: str
    timestamp: ApiTime


class ImagePublished(Answer):
    ok: Literal[True] = True
    mime: str
    timestamp: ApiTime


class TempHumPublished(TempHumOut):
    ok: Literal[True] = True


class StatusPublished(StatusOut):
    ok: Literal[True] = True


class TempHumReadings(RootModel[list[TempHumOut]]):
    """GET /api/temphum: one day's readings, oldest first."""


# What Socket.IO publishers send, checked by the same models as REST.
TEMPHUM_EVENT: Final = TypeAdapter(TempHumIn)
STATUS_EVENT: Final = TypeAdapter(StatusIn)
