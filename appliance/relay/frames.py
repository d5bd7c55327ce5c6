"""Frames from publishers, checked before anything is stored or relayed.

A frame is bytes, not a JSON shape: it is checked by its size and first bytes (and decoded from
the reference's base64 string when an old publisher sends one), never decoded as an image.
Readings and status are JSON and checked by the pydantic models of ``appliance.schema``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final

JPEG_MAGIC: Final = b"\xff\xd8\xff"
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"


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
