"""What publishers send, checked before anything is stored or relayed."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any, Final

JPEG_MAGIC: Final = b"\xff\xd8\xff"
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
# A DHT22/SHT3x reads -40..80 °C (SHT up to 125); anything outside is a broken sensor or a bug.
TEMPERATURE_RANGE: Final = (-40.0, 125.0)
HUMIDITY_RANGE: Final = (0.0, 100.0)
STATUS_MAX_LEN: Final = 200


class RelayInputError(ValueError):
    def __init__(self, message: str, *, code: str = "invalid", status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class Frame:
    mime: str
    data: bytes


def image_mime(data: bytes) -> str:
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    msg = "the image is neither JPEG nor PNG (checked by its first bytes)"
    raise RelayInputError(msg, code="not_an_image", status=415)


def frame_from_bytes(data: bytes, max_bytes: int) -> Frame:
    if len(data) > max_bytes:
        msg = f"the image is {len(data)} bytes; the limit is {max_bytes} (image_max_bytes)"
        raise RelayInputError(msg, code="too_large", status=413)
    if not data:
        msg = "the image is empty"
        raise RelayInputError(msg, code="not_an_image", status=415)
    return Frame(image_mime(data), data)


def frame_from_event(payload: Any, max_bytes: int) -> Frame:
    """An `image` event: bytes (binary attachment), or the reference's {image: base64 or bytes}."""
    if isinstance(payload, dict):
        payload = payload.get("image")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return frame_from_bytes(bytes(payload), max_bytes)
    if isinstance(payload, str):
        text = payload.split(",", 1)[1] if payload.startswith("data:") else payload
        if len(text) > max_bytes * 4 // 3 + 4:
            msg = f"the image is larger than the limit of {max_bytes} bytes (image_max_bytes)"
            raise RelayInputError(msg, code="too_large", status=413)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            msg = "the image string is not valid base64"
            raise RelayInputError(msg, code="bad_base64", status=400) from None
        return frame_from_bytes(data, max_bytes)
    msg = "send the image as binary data, or as {image: <base64 string>}"
    raise RelayInputError(msg, code="invalid")


def _number(payload: dict[str, Any], key: str, low: float, high: float) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        msg = f"{key} must be a number"
        raise RelayInputError(msg)
    if not low <= value <= high:
        msg = f"{key} {value} is outside {low:g}..{high:g}"
        raise RelayInputError(msg)
    return float(value)


def temphum(payload: Any) -> tuple[float, float]:
    if not isinstance(payload, dict):
        msg = "send {temperature: number, humidity: number}"
        raise RelayInputError(msg)
    return (_number(payload, "temperature", *TEMPERATURE_RANGE),
            _number(payload, "humidity", *HUMIDITY_RANGE))


def status(payload: Any) -> str:
    value = payload.get("status") if isinstance(payload, dict) else None
    if not isinstance(value, str) or not value.strip():
        msg = "send {status: text}"
        raise RelayInputError(msg)
    value = value.strip()
    if len(value) > STATUS_MAX_LEN:
        msg = f"status is {len(value)} characters; at most {STATUS_MAX_LEN}"
        raise RelayInputError(msg)
    if any(ord(ch) < 32 for ch in value):
        msg = "status must be one line of printable text"
        raise RelayInputError(msg)
    return value
