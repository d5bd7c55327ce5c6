"""The API's time format: every timestamp a client gets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, PlainSerializer, WithJsonSchema


def api_time(moment: datetime) -> str:
    """An API timestamp: UTC ISO 8601 with milliseconds and 'Z', as the reference's clients parse.

    The API's own decision: the database's format (``store.db.to_db_time``) prints the same today
    and may change without changing what clients get.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ApiTime = Annotated[AwareDatetime, PlainSerializer(api_time, return_type=str), WithJsonSchema(
    {"type": "string", "format": "date-time", "examples": ["2026-11-22T12:00:00.000Z"]})]

