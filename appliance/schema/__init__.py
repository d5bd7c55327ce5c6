"""The API's JSON shapes and its time format, in one place: one module per part of the API.

One set of pydantic models serves both transports: quart-schema validates REST requests and
responses with them (and writes the OpenAPI document from them), and the Socket.IO channels
validate what publishers send and build what browsers receive with the same models (through
TypeAdapters). Field names are the reference servers' (camelCase), so existing clients keep working.

- ``time``: the API's timestamps (``api_time``, ``ApiTime``);
- ``common``: errors, acks, validation messages, the answer base;
- ``auth``: sessions, users and publisher tokens;
- ``presence``: beacons, pairing, the radio's status;
- ``relay``: what publishers send and browsers receive, the relay's delays and status;
- ``printer``: the Bambu printer's state and commands;
- ``mqtt``: satellite scanners and /status's MQTT part;
- ``status``: /health and /status.

Every name is re-exported here: ``from appliance.schema import Device`` and ``schema.Device``.
"""

from __future__ import annotations

from appliance.schema.auth import (
    LoginRequest,
    NewPassword,
    NewToken,
    NewUser,
    Password,
    SessionInfo,
    TokenCreated,
    TokenInfo,
    TokenName,
    Tokens,
    UserCreated,
    UserInfo,
    UserName,
    Users,
)
from appliance.schema.common import (
    Ack,
    Answer,
    Done,
    ErrorBody,
    describe,
    not_an_object,
)
from appliance.schema.mqtt import MqttStatus, ScannerInfo, Scanners
from appliance.schema.presence import (
    BluetoothStatus,
    Device,
    DeviceId,
    DeviceRemoved,
    DeviceRequest,
    Devices,
    Paired,
    PairingStatus,
    PairRequest,
    ShortText,
    Unpaired,
)
from appliance.schema.printer import (
    AccessCodeRequest,
    AddressRequest,
    LightAnswer,
    LightRequest,
    PrinterAnswer,
    PrinterState,
    TrustRequest,
)
from appliance.schema.relay import (
    DAY_RE,
    STATUS_EVENT,
    STATUS_MAX_LEN,
    TEMPHUM_EVENT,
    Humidity,
    ImageOut,
    ImagePublished,
    RelayStatus,
    StatusIn,
    StatusOut,
    StatusPublished,
    StatusText,
    Temperature,
    TempHumIn,
    TempHumOut,
    TempHumPublished,
    TempHumQuery,
    TempHumReadings,
    TimelapseConfig,
)
from appliance.schema.status import (
    Health,
    SetupError,
    SetupStatus,
    Status,
    StorageStatus,
    TunnelStatus,
)
from appliance.schema.time import (
    ApiTime,
    api_time,
)

__all__ = [
    "DAY_RE",
    "STATUS_EVENT",
    "STATUS_MAX_LEN",
    "TEMPHUM_EVENT",
    "AccessCodeRequest",
    "Ack",
    "AddressRequest",
    "Answer",
    "ApiTime",
    "BluetoothStatus",
    "Device",
    "DeviceId",
    "DeviceRemoved",
    "DeviceRequest",
    "Devices",
    "Done",
    "ErrorBody",
    "Health",
    "Humidity",
    "ImageOut",
    "ImagePublished",
    "LightAnswer",
    "LightRequest",
    "LoginRequest",
    "MqttStatus",
    "NewPassword",
    "NewToken",
    "NewUser",
    "PairRequest",
    "Paired",
    "PairingStatus",
    "Password",
    "PrinterAnswer",
    "PrinterState",
    "RelayStatus",
    "ScannerInfo",
    "Scanners",
    "SessionInfo",
    "SetupError",
    "SetupStatus",
    "ShortText",
    "Status",
    "StatusIn",
    "StatusOut",
    "StatusPublished",
    "StatusText",
    "StorageStatus",
    "TempHumIn",
    "TempHumOut",
    "TempHumPublished",
    "TempHumQuery",
    "TempHumReadings",
    "Temperature",
    "TimelapseConfig",
    "TokenCreated",
    "TokenInfo",
    "TokenName",
    "Tokens",
    "TrustRequest",
    "TunnelStatus",
    "Unpaired",
    "UserCreated",
    "UserInfo",
    "UserName",
    "Users",
    "api_time",
    "describe",
    "not_an_object",
]
