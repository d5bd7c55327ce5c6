"""The printer: GET /api/printer and printer2v, the light, the access code, trusting a certificate."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LightRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: bool


class AccessCodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accessCode: str = Field(min_length=1, max_length=32, pattern=r"^[\x21-\x7e]+$")


class AddressRequest(BaseModel):
    """The printer's address and serial; host "" unlinks it. Checked as appliance.toml's are."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(max_length=253, examples=["192.168.1.40"])
    serial: str = Field(max_length=32, examples=["03919D123456789"])


class TrustRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")


class PrinterState(BaseModel):
    """GET /api/printer, and the body of every ``printer2v``."""

    connected: bool
    state: str | None = Field(description="gcode_state: IDLE, PREPARE, RUNNING, PAUSE, FINISH, FAILED")
    progress: int | None
    layer: int | None
    totalLayers: int | None
    remainingMin: int | None
    nozzleTemp: float | None
    nozzleTarget: float | None
    bedTemp: float | None
    bedTarget: float | None
    job: str | None
    lightOn: bool | None
    lastError: str | None
    lastSeen: str | None = Field(description="UTC, ISO 8601 with milliseconds and Z")


class LightAnswer(BaseModel):
    success: bool
    lightOn: bool | None
    message: str


class PrinterAnswer(BaseModel):
    success: bool
    message: str
    pinned: str | None = None
