"""The active recording's frames: the relay's newest held by reference, one written when due.

A frame is due at a layer change or an interval (the service says when, ``want``): it is the
newest frame if that is fresh and new to the recording, else the next one the relay receives.
Due frames reach the disk in order, off the event loop, through a short queue; a frame is never
written per incoming frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, NoReturn

from appliance.clock import Clock
from appliance.relay.service import FrameEvent
from appliance.store.recordings import Recording
from appliance.timelapse.files import RecordingFiles

_LOGGER = logging.getLogger(__name__)

# The newest frame counts as "now" for this long: a printer camera sends one a second, a
# publisher every few; an older one (the camera is off) would show a moment long gone.
FRESH_S: Final = 5.0
# Frames waiting for the disk; one is due per layer or interval, so more means a stuck disk.
WRITE_QUEUE: Final = 4


@dataclass(slots=True)
class Active:
    """The recording that takes frames (one at a time)."""

    recording: Recording
    files: RecordingFiles
    next_number: int
    mime: str | None = None  # the recording's frame format: its first frame's
    wanted: bool = False  # a frame is due: the next one the relay receives
    last: FrameEvent | None = None  # the frame written last
    paused: str | None = None
    resume_check: bool = False  # cut by a restart: the printer's next state decides
    skipped: int = 0  # frames of another format than the recording's
    size: int = 0
    pending: int = 0  # frames queued for the disk
    written: asyncio.Event = field(default_factory=asyncio.Event)  # set when none is pending


class FrameTaker:
    """``room_for(size, active)``: whether a frame of ``size`` bytes may be written (the space
    budget); ``saved(active)``: a frame was written, the recording's counts moved on."""

    def __init__(self, clock: Clock, room_for: Callable[[int, Active], Awaitable[bool]],
                 saved: Callable[[Active], None]) -> None:
        self._clock = clock
        self._room_for = room_for
        self._saved = saved
        self._latest: FrameEvent | None = None
        self._latest_at = float("-inf")  # monotonic time it arrived
        self._writes: asyncio.Queue[tuple[Active, FrameEvent]] = asyncio.Queue(WRITE_QUEUE)
        self.dropped = 0  # frames due that the disk queue had no room for
        self.errors = 0

    def received(self, event: FrameEvent, active: Active | None) -> None:
        """A frame from the relay: held as the newest, written if ``active`` wants one."""
        self._latest, self._latest_at = event, self._clock.monotonic()
        if active is not None and active.wanted:
            active.wanted = False
            self._queue(active, event)

    def want(self, active: Active) -> None:
        """A frame is due: the newest one if it is fresh and new to this recording, else the
        next one to arrive."""
        latest = self._latest
        fresh = self._clock.monotonic() - self._latest_at <= FRESH_S
        if latest is not None and latest is not active.last and fresh:
            active.wanted = False
            self._queue(active, latest)
        else:
            active.wanted = True

    async def drained(self, active: Active) -> None:
        """Once the frames ``active`` already took are on the disk."""
        while active.pending:
            active.written.clear()
            await active.written.wait()

    def _queue(self, active: Active, event: FrameEvent) -> None:
        active.last = event
        try:
            self._writes.put_nowait((active, event))
        except asyncio.QueueFull:
            self.dropped += 1
            _LOGGER.warning("The disk is too slow for timelapse frames; one dropped")
        else:
            active.pending += 1

    async def run(self) -> NoReturn:
        """Frames to the disk, in order. Without the service's lock: ending a recording waits
        for its frames here while it holds the lock."""
        while True:
            active, event = await self._writes.get()
            try:
                await self._write(active, event)
            except Exception:
                self.errors += 1
                _LOGGER.exception("Keeping a timelapse frame failed")
            finally:
                active.pending -= 1
                if not active.pending:
                    active.written.set()

    async def _write(self, active: Active, event: FrameEvent) -> None:
        frame = event.frame
        if active.mime is None:
            active.mime = frame.mime
        elif frame.mime != active.mime:
            active.skipped += 1  # one video, one format: ffmpeg reads one kind of image
            return
        if not await self._room_for(len(frame.data), active):
            return
        try:
            await asyncio.to_thread(active.files.add_frame, active.next_number, frame.mime,
                                    frame.data)
        except OSError as exc:
            self.errors += 1
            _LOGGER.warning("Writing timelapse frame %s failed: %s", active.next_number, exc)
            return
        active.next_number += 1
        active.size += len(frame.data)
        active.recording = active.recording.but(frames=active.recording.frames + 1,
                                                size_bytes=active.size)
        self._saved(active)
