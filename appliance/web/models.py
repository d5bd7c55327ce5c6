"""Request bodies of the REST API, validated by quart-schema (pydantic)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from appliance.auth.policy import (
    MAX_PASSWORD_LEN,
    MIN_PASSWORD_LEN,
    NAME_PATTERN,
    check_name,
    check_password,
    check_token_name,
)
from appliance.presence.model import normalise_address

DAY_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DeviceId = Annotated[str, AfterValidator(normalise_address)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class LoginRequest(BaseModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LEN)]


class PairRequest(BaseModel):
    """Pair a beacon with a user (the reference presence server's body)."""

    deviceId: DeviceId
    userId: ShortText
    userName: ShortText


class DeviceRequest(BaseModel):
    deviceId: DeviceId


class TimelapseConfigBody(BaseModel):
    """Delays in seconds between frames, sensor readings and status updates."""

    model_config = ConfigDict(extra="forbid")

    image_delay: int = Field(ge=1, le=86400)
    temphum_delay: int = Field(ge=1, le=86400)
    status_delay: int = Field(ge=1, le=86400)


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


class TempHumQuery(BaseModel):
    """The UTC day to list; today when omitted."""

    date: Annotated[str, AfterValidator(_check_day)] | None = None


# The policies of appliance.auth.policy as field types: the same check and message as the CLI;
# the JSON Schema states the rule for the OpenAPI document.
Password = Annotated[str, AfterValidator(check_password), WithJsonSchema(
    {"type": "string", "minLength": MIN_PASSWORD_LEN, "maxLength": MAX_PASSWORD_LEN})]
UserName = Annotated[str, AfterValidator(check_name),
                     WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]
TokenName = Annotated[str, AfterValidator(check_token_name),
                      WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]


class NewUser(BaseModel):
    username: UserName
    password: Password


class NewPassword(BaseModel):
    password: Password


class NewToken(BaseModel):
    name: TokenName
