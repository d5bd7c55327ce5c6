"""The API's JSON shapes and its time format, in one place.

One set of pydantic models serves both transports: quart-schema validates REST requests and
responses with them (and writes the OpenAPI document from them), and the Socket.IO channels
validate what publishers send and build what browsers receive with the same models (through
TypeAdapters). Field names are the reference servers' (camelCase), so existing clients keep working.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from appliance.auth.policy import (
    MAX_NAME_LEN,
    MAX_PASSWORD_LEN,
    MIN_PASSWORD_LEN,
    NAME_PATTERN,
    check_name,
    check_password,
    check_token_name,
)
from appliance.presence.model import BeaconView, PresenceState, normalise_address


# -- time -------------------------------------------------------------------------------------
def api_time(moment: datetime) -> str:
    """An API timestamp: UTC ISO 8601 with milliseconds and 'Z', as the reference's clients parse.

    The API's own decision: the database's format (``store.db.to_db_time``) prints the same today
    and may change without changing what clients get.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ApiTime = Annotated[AwareDatetime, PlainSerializer(api_time, return_type=str), WithJsonSchema(
    {"type": "string", "format": "date-time", "examples": ["2026-11-22T12:00:00.000Z"]})]


def describe(exc: ValidationError) -> str:
    """One line for people: ``field: what is wrong; ...``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(loc) for loc in error["loc"]) or "body"
        text = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {text}")
    return "; ".join(parts)


def not_an_object(exc: ValidationError) -> bool:
    """The input was not a JSON object at all (a list, a string, nothing)."""
    return any(error["type"] in ("model_type", "dict_type") and not error["loc"]
               for error in exc.errors())


# -- field types --------------------------------------------------------------------------------
DeviceId = Annotated[str, AfterValidator(normalise_address),
                     WithJsonSchema({"type": "string", "examples": ["AA:BB:CC:DD:EE:FF"]})]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
# The policies of appliance.auth.policy as field types: the same check and message as the CLI
# and first boot; the JSON Schema states the rule for the OpenAPI document.
Password = Annotated[str, AfterValidator(check_password), WithJsonSchema(
    {"type": "string", "minLength": MIN_PASSWORD_LEN, "maxLength": MAX_PASSWORD_LEN})]
UserName = Annotated[str, AfterValidator(check_name),
                     WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]
TokenName = Annotated[str, AfterValidator(check_token_name),
                      WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]
DAY_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A DHT22/SHT3x reads -40..80 °C (SHT up to 125); anything outside is a broken sensor or a bug.
# Strict: "21" or true is a publisher bug, not a reading.
Temperature = Annotated[float, Strict(), Field(ge=-40.0, le=125.0, allow_inf_nan=False,
                                               description="°C")]
Humidity = Annotated[float, Strict(), Field(ge=0.0, le=100.0, allow_inf_nan=False,
                                            description="% relative humidity")]
STATUS_MAX_LEN: Final = 200


def _one_line(text: str) -> str:
    if any(ord(ch) < 32 for ch in text):
        msg = "must be one line of printable text"
        raise ValueError(msg)
    return text


StatusText = Annotated[str, Strict(), StringConstraints(
    strip_whitespace=True, min_length=1, max_length=STATUS_MAX_LEN), AfterValidator(_one_line)]


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


class Answer(BaseModel):
    """A response model whose defaulted fields are always sent, so the document marks them required."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


# -- errors -----------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    """An error: a stable code for programs, a sentence for people that says what to do."""

    error: str
    message: str


class Ack(BaseModel):
    """The answer to a publisher's Socket.IO event: {ok: true} or {ok: false, error, message}."""

    ok: bool
    error: str | None = None
    message: str | None = None


# -- sessions and accounts ------------------------------------------------------------------------
class LoginRequest(BaseModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LEN)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LEN)]


class SessionInfo(BaseModel):
    username: str
    id: int


class Done(Answer):
    """A change that has nothing to return but that it happened (the reference's shape)."""

    success: bool = True
    message: str


class NewUser(BaseModel):
    username: UserName
    password: Password


class NewPassword(BaseModel):
    password: Password


class NewToken(BaseModel):
    name: TokenName


class UserInfo(BaseModel):
    id: int
    username: str
    createdAt: ApiTime


class UserCreated(BaseModel):
    id: int
    username: str


class Users(BaseModel):
    users: list[UserInfo]


class TokenInfo(BaseModel):
    name: str
    createdAt: ApiTime
    lastUsedAt: ApiTime | None


class Tokens(BaseModel):
    tokens: list[TokenInfo]


class TokenCreated(BaseModel):
    name: str
    token: str = Field(description="shown this once; only its hash is kept")


# -- presence -------------------------------------------------------------------------------------
class Health(Answer):
    status: Literal["ok"] = "ok"
    service: str
    version: str


class Device(BaseModel):
    """One beacon: an entry of GET /devices, of devices2v and of presence2v."""

    # The reference fields.
    id: str
    name: str
    rssi: int | None
    isPaired: bool
    isConnected: bool
    # What the appliance adds.
    beaconId: int
    state: PresenceState
    requiresTap: bool
    rssiSmoothed: float | None
    userId: str | None
    userName: str | None
    firstSeen: ApiTime
    lastSeen: ApiTime

    @classmethod
    def of(cls, view: BeaconView, wall_of: Callable[[float], datetime]) -> Device:
        return cls(
            id=view.address, name=view.name, rssi=view.rssi, isPaired=view.pairing is not None,
            isConnected=view.linked, beaconId=view.beacon_id, state=view.state,
            requiresTap=view.state is PresenceState.REQUIRES_TAP,
            rssiSmoothed=None if view.rssi_smoothed is None else round(view.rssi_smoothed, 1),
            userId=view.pairing.user_id if view.pairing else None,
            userName=view.pairing.user_name if view.pairing else None,
            firstSeen=wall_of(view.first_seen), lastSeen=wall_of(view.last_seen),
        )


class Devices(BaseModel):
    discovered: list[Device]


class DeviceRemoved(Answer):
    """presence2v when an unpaired beacon has left and is forgotten."""

    id: str
    removed: Literal[True] = True


class PairRequest(BaseModel):
    """Pair a beacon with a user (the reference presence server's body)."""

    deviceId: DeviceId
    userId: ShortText
    userName: ShortText


class DeviceRequest(BaseModel):
    deviceId: DeviceId


class Paired(Answer):
    success: bool = True
    message: str
    deviceId: str
    userId: str
    device: Device


class Unpaired(Answer):
    success: bool = True
    message: str
    deviceId: str


class BluetoothStatus(BaseModel):
    scanning: bool
    discoveredCount: int
    connectedCount: int
    radio: str
    adapter: str
    recoveries: int
    lastError: str | None
    lastRecovery: str | None


class PairingStatus(BaseModel):
    totalPaired: int
    requiresTap: int
    activeRecent: int


class RelayStatus(BaseModel):
    browsers: int
    publishers: int
    framesIn: int
    framesDropped: int
    framesStored: int  # kept on the SD card: at most one per image_delay
    storeErrors: int
    rejected: int


class TunnelStatus(BaseModel):
    installed: bool
    configured: bool
    message: str


class SetupError(BaseModel):
    key: str
    message: str


class SetupStatus(BaseModel):
    at: str | None
    applied: list[str]
    errors: list[SetupError]


class Status(BaseModel):
    bluetooth: BluetoothStatus
    pairing: PairingStatus
    relay: RelayStatus
    tunnel: TunnelStatus
    setup: SetupStatus
    # The printer link (appliance/printer/service.py status()): configured, and when it is,
    # each of MQTT and camera with its state and last error in words.
    printer: dict[str, Any]


# -- timelapse and publishing -----------------------------------------------------------------------
class TimelapseConfig(BaseModel):
    """Delays in seconds between frames, sensor readings and status updates."""

    model_config = ConfigDict(extra="forbid")

    image_delay: int = Field(ge=1, le=86400)
    temphum_delay: int = Field(ge=1, le=86400)
    status_delay: int = Field(ge=1, le=86400)


class TempHumQuery(BaseModel):
    """The UTC day to list; today when omitted."""

    date: Annotated[str, AfterValidator(_check_day)] | None = None


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
