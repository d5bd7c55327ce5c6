"""GET /health and GET /status: the appliance's parts in one answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from appliance.schema.common import Answer
from appliance.schema.presence import BluetoothStatus, PairingStatus
from appliance.schema.relay import RelayStatus


class Health(Answer):
    status: Literal["ok"] = "ok"
    service: str
    version: str


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


class StorageStatus(BaseModel):
    """The data partition: when it is full, readings and last-seen wait; logins still work."""

    full: bool
    freeBytes: int
    refusedWrites: int
    message: str


class Status(BaseModel):
    bluetooth: BluetoothStatus
    pairing: PairingStatus
    relay: RelayStatus
    tunnel: TunnelStatus
    setup: SetupStatus
    storage: StorageStatus
    # The printer link (appliance/printer/service.py status()): configured, and when it is,
    # each of MQTT and camera with its state and last error in words.
    printer: dict[str, Any]

