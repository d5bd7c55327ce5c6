"""The timelapses' space budget on the SD card.

All recordings together stay under ``timelapse_max_bytes`` and the data partition keeps
``timelapse_min_free_bytes`` free: before a frame is written, the oldest finished recordings are
deleted until it fits. The one recording being made and those still to be rendered are never
deleted; when nothing else is left, the answer is why there is no room (the service pauses the
recording with it) instead of a full card.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from appliance.settings import Settings
from appliance.timelapse import files as tfiles

_LOGGER = logging.getLogger(__name__)


class SpaceBudget:
    """The finished recordings' bytes, oldest first. ``active_bytes()``: the bytes of the
    recording being made; ``deletable(id)``: whether a finished one may go (not while it waits for
    its render); ``delete(id)``: removes one everywhere (files, row, browsers), then ``forget``s it
    here."""

    def __init__(self, settings: Settings, *, active_bytes: Callable[[], int],
                 deletable: Callable[[int], bool], delete: Callable[[int], Awaitable[None]]) -> None:
        self._settings = settings
        self._active_bytes = active_bytes
        self._deletable = deletable
        self._delete = delete
        self._sizes: dict[int, int] = {}  # finished recordings' bytes on disk
        self._order: list[int] = []  # finished recordings, oldest first
        self.deleted = 0  # recordings deleted to make room

    def used(self) -> int:
        return sum(self._sizes.values()) + self._active_bytes()

    def track(self, recording_id: int, size: int) -> None:
        """A finished recording, newer than those tracked so far."""
        self._sizes[recording_id] = size
        self._order.append(recording_id)

    def resize(self, recording_id: int, size: int) -> None:
        """A tracked recording's new size (its frames deleted after the render)."""
        if recording_id in self._sizes:
            self._sizes[recording_id] = size

    def forget(self, recording_id: int) -> None:
        self._sizes.pop(recording_id, None)
        with contextlib.suppress(ValueError):
            self._order.remove(recording_id)

    async def room_for(self, size: int, *, keep: int | None) -> str | None:
        """Delete the oldest finished recordings (never ``keep``) until ``size`` more bytes fit
        both limits. None when they do, else why they cannot."""
        limits = self._settings
        while True:
            free = await asyncio.to_thread(tfiles.free_bytes, limits.data_dir)
            over_budget = self.used() + size > limits.timelapse_max_bytes
            low = free - size < limits.timelapse_min_free_bytes
            if not (over_budget or low):
                return None
            victims = [i for i in self._order if i != keep and self._deletable(i)]
            if not victims:
                if low:
                    return (f"less than timelapse_min_free_bytes ({limits.timelapse_min_free_bytes}"
                            f" bytes) free on the data partition ({free} bytes)")
                return (f"the timelapses use timelapse_max_bytes ({limits.timelapse_max_bytes}"
                        " bytes); delete some or raise it")
            _LOGGER.info("Deleting timelapse %s, the oldest, to make room", victims[0])
            self.deleted += 1
            await self._delete(victims[0])
