"""Time, injected: monotonic seconds in memory, UTC wall time at the database and the API.

The clock also sleeps, so every wait of the appliance's own (ticks, backoff, recovery) can be
driven by a test's clock: thirty minutes pass in a microsecond.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock's monotonic time have passed."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def wall_of(clock: Clock, mono: float) -> datetime:
    """The UTC wall time of a monotonic instant."""
    return clock.wall() - timedelta(seconds=clock.monotonic() - mono)


def mono_of(clock: Clock, wall: datetime) -> float:
    """The monotonic instant of a UTC wall time (in the past for stored times)."""
    return clock.monotonic() - (clock.wall() - wall).total_seconds()
