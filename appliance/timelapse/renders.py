"""The render queue: ended recordings become videos one after another, oldest first.

Each render runs ffmpeg (``timelapse.render``) with the recording's frames, reports its
progress in steps of ``PROGRESS_STEP``, deletes the frames unless ``timelapse_keep_frames``, and
saves the recording READY (or FAILED, with ffmpeg's reason) with its size on disk. A recording
queued or rendering is never deleted for space (``pending``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, NoReturn

from appliance.settings import Settings
from appliance.store import recordings
from appliance.store.db import Database
from appliance.store.recordings import Recording, RecordingState
from appliance.timelapse.files import RecordingFiles
from appliance.timelapse.render import RenderError, render

_LOGGER = logging.getLogger(__name__)

# Render progress reaches browsers in steps of this much (a render takes seconds to minutes).
PROGRESS_STEP: Final = 0.05


class RenderQueue:
    """``on_progress(recording, progress)`` as a render starts and moves on; ``on_done(recording)``
    once it is saved, under ``lock`` (the service's, which its space budget needs)."""

    def __init__(self, settings: Settings, db: Database, lock: asyncio.Lock, *,
                 on_progress: Callable[[Recording, float], None],
                 on_done: Callable[[Recording], Awaitable[None]]) -> None:
        self._settings = settings
        self._db = db
        self._lock = lock
        self._on_progress = on_progress
        self._on_done = on_done
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._unrendered: set[int] = set()  # queued or rendering: never deleted for space
        self.rendering: int | None = None
        self.progress = 0.0

    def queued(self) -> int:
        return self._queue.qsize()

    def pending(self, recording_id: int) -> bool:
        return recording_id in self._unrendered

    def add(self, recording_id: int) -> None:
        self._unrendered.add(recording_id)
        self._queue.put_nowait(recording_id)

    def add_all(self, recording_ids: Iterable[int]) -> None:
        """Renders cut by a restart: oldest first, as they would have run."""
        for recording_id in sorted(recording_ids):
            self.add(recording_id)

    async def run(self) -> NoReturn:
        while True:
            recording_id = await self._queue.get()
            try:
                await self._render(recording_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("Rendering timelapse %s failed", recording_id)
            finally:
                self.rendering = None
                self._unrendered.discard(recording_id)

    def _progressed(self, recording: Recording, progress: float) -> None:
        step = int(progress / PROGRESS_STEP)
        if step != int(self.progress / PROGRESS_STEP):
            self.progress = progress
            self._on_progress(recording, progress)
        self.progress = progress

    async def _render(self, recording_id: int) -> None:
        recording = await recordings.get(self._db, recording_id)
        if recording is None:  # deleted while queued
            return
        files = RecordingFiles(self._settings.data_dir, recording_id)
        self.rendering, self.progress = recording_id, 0.0
        self._on_progress(recording, 0.0)
        try:
            result = await render(files, fps=self._settings.timelapse_fps,
                                  on_progress=lambda p: self._progressed(recording, p))
        except RenderError as exc:
            _LOGGER.warning("Timelapse %s could not be rendered: %s", recording_id, exc)
            done = recording.but(state=RecordingState.FAILED, error=str(exc))
        else:
            if not self._settings.timelapse_keep_frames:
                await asyncio.to_thread(files.delete_frames)
            done = recording.but(state=RecordingState.READY, duration_s=result.duration_s,
                                 error=None)
            _LOGGER.info("Timelapse %s is ready: %s frames, %.1f s", recording_id,
                         recording.frames, result.duration_s)
        done = done.but(size_bytes=await asyncio.to_thread(files.size))
        async with self._lock:
            await recordings.save(self._db, done)
            self.rendering = None
            await self._on_done(done)
