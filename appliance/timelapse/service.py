"""Timelapse recordings: one per print, a frame per layer change or per interval, then a video.

- The printer's state (``PrinterService.subscribe``) starts a recording at RUNNING, ends it at
  FINISH, FAILED or a cancel, and marks layer changes; ``begin``/``end`` do it by hand (the API).
- Frames are whatever the relay receives (``RelayService.subscribe``: the printer's camera or
  publishers). Only the newest is held, by reference; a frame is written only when one is due
  (a layer change, an interval), never per incoming frame (``timelapse.frames``).
- Frames go to files (``timelapse.files``), the index to the recordings table. One recording is
  active at a time; ended ones are rendered one after another by ffmpeg (``timelapse.renders``).
- Space (``timelapse.space``): all recordings stay under ``timelapse_max_bytes`` and the
  partition keeps ``timelapse_min_free_bytes`` free; the oldest finished recordings go first, and
  when nothing is left to delete, recording pauses (``status()`` says why) instead of filling the
  card.
- Start-up: half-written files and directories no row owns are removed; a recording cut by a
  restart resumes if its print still runs (or it was started by hand), else it is rendered; a
  render cut by a restart runs again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from appliance.clock import Clock
from appliance.errors import RequestError
from appliance.printer.service import PrinterService
from appliance.relay.service import FrameEvent, RelayEvent, RelayService
from appliance.settings import Settings
from appliance.store import recordings
from appliance.store.db import Database
from appliance.store.recordings import Recording, RecordingState
from appliance.timelapse import files as tfiles
from appliance.timelapse.files import RecordingFiles
from appliance.timelapse.frames import Active, FrameTaker
from appliance.timelapse.renders import RenderQueue
from appliance.timelapse.space import SpaceBudget
from appliance.timelapse.watch import PRINTING, PrintWatcher

_LOGGER = logging.getLogger(__name__)

LAYER: Final = "layer"
INTERVAL: Final = "interval"
PRINTER: Final = "printer"
MANUAL: Final = "manual"
# A recording cut by a restart waits this long for the printer to say whether its print still
# runs; a printer that has not answered by then lost power with the Pi, and the print with it.
RESUME_WAIT_S: Final = 120.0

Listener = Callable[["TimelapseView | int"], None]
Unsubscribe = Callable[[], None]


class TimelapseError(RequestError):
    """A request the recordings cannot follow (no such recording, not ready, busy)."""


@dataclass(frozen=True, slots=True)
class TimelapseView:
    """A recording as the API shows it, with what only memory knows (live frames, progress)."""

    recording: Recording
    progress: float | None = None  # rendering: 0..1
    paused: str | None = None  # recording, but not taking frames: why


class TimelapseService:
    def __init__(self, settings: Settings, db: Database, relay: RelayService,
                 printer: PrinterService, clock: Clock) -> None:
        self._settings = settings
        self._db = db
        self._relay = relay
        self._printer = printer
        self._clock = clock
        self._data_dir = settings.data_dir
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._unsubscribe: list[Unsubscribe] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._active: Active | None = None
        self._frames = FrameTaker(clock, room_for=self._room_for,
                                  saved=lambda a: self._publish(self.view(a.recording)))
        self._watcher = PrintWatcher()
        self._printer_changes: asyncio.Queue[tuple[str | None, int | None, str | None]] = \
            asyncio.Queue()
        self._renders = RenderQueue(
            settings, db, self._lock, on_done=self._rendered,
            on_progress=lambda r, p: self._publish(TimelapseView(r, progress=p)))
        self._space = SpaceBudget(
            settings, active_bytes=lambda: self._active.size if self._active else 0,
            deletable=lambda i: not self._renders.pending(i), delete=self._delete)

    @property
    def default_mode(self) -> str:
        if self._settings.timelapse_mode:
            return self._settings.timelapse_mode
        return LAYER if self._printer.configured else INTERVAL

    # -- life ----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._recover()
        # The printer always: it may be linked later, from the Settings page.
        self._unsubscribe = [self._relay.subscribe(self._on_relay),
                             self._printer.subscribe(self._on_printer_payload)]
        self._tasks = [asyncio.create_task(self._printer_worker(), name="timelapse-printer"),
                       asyncio.create_task(self._frames.run(), name="timelapse-writer"),
                       asyncio.create_task(self._renders.run(), name="timelapse-render"),
                       asyncio.create_task(self._ticker(), name="timelapse-interval")]
        if self._active is not None and self._active.resume_check:
            self._tasks.append(asyncio.create_task(self._resume_deadline()))

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # The recording stays "recording" and a render "rendering": the next start picks them up.

    def subscribe(self, listener: Listener) -> Unsubscribe:
        """``listener(view)`` on every change of a recording, ``listener(id)`` when it is deleted."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _publish(self, what: TimelapseView | int) -> None:
        for listener in list(self._listeners):
            try:
                listener(what)
            except Exception:
                _LOGGER.exception("Timelapse listener failed")

    # -- what the API shows --------------------------------------------------------------------
    def view(self, recording: Recording) -> TimelapseView:
        active = self._active
        if active is not None and active.recording.id == recording.id:
            return TimelapseView(active.recording, paused=active.paused)
        if recording.id == self._renders.rendering:
            return TimelapseView(recording, progress=self._renders.progress)
        return TimelapseView(recording)

    async def all(self) -> list[TimelapseView]:
        return [self.view(r) for r in await recordings.all_recordings(self._db)]

    async def get(self, recording_id: int) -> Recording:
        recording = await recordings.get(self._db, recording_id)
        if recording is None:
            msg = f"there is no timelapse {recording_id}; GET /api/timelapses lists them"
            raise TimelapseError(msg, code="not_found", status=404)
        if self._active is not None and self._active.recording.id == recording_id:
            return self._active.recording
        return recording

    async def file(self, recording_id: int, which: str) -> Path:
        """The path of a ready recording's video or poster."""
        recording = await self.get(recording_id)
        files = RecordingFiles(self._data_dir, recording_id)
        path = files.video if which == "video" else files.poster
        if recording.state is not RecordingState.READY or not path.is_file():
            msg = (f"timelapse {recording_id} is {recording.state.value}: its {which} exists "
                   "once it is ready")
            raise TimelapseError(msg, code="not_ready", status=409)
        return path

    def status(self) -> dict[str, Any]:
        active = self._active
        free = tfiles.free_bytes(self._data_dir)
        return {
            "mode": self.default_mode,
            "recording": active.recording.id if active else None,
            "frames": active.recording.frames if active else None,
            "paused": active.paused if active else None,
            "rendering": self._renders.rendering,
            "renderProgress": self._renders.progress if self._renders.rendering is not None
            else None,
            "queued": self._renders.queued(),
            "usedBytes": self._space.used(), "maxBytes": self._settings.timelapse_max_bytes,
            "freeBytes": free, "minFreeBytes": self._settings.timelapse_min_free_bytes,
            "lowSpace": free < self._settings.timelapse_min_free_bytes,
            "deletedForSpace": self._space.deleted, "framesDropped": self._frames.dropped,
            "writeErrors": self._frames.errors,
        }

    # -- by hand (the API) ---------------------------------------------------------------------
    async def begin(self, job: str | None, mode: str | None) -> TimelapseView:
        mode = mode or self.default_mode
        if mode == LAYER and not self._printer.configured:
            msg = "layer mode needs a linked printer (its layer_num); use interval"
            raise TimelapseError(msg, code="no_printer", status=409)  # the state, not the input
        async with self._lock:
            if self._active is not None:
                msg = (f"timelapse {self._active.recording.id} is recording; stop it first "
                       f"(POST /api/timelapses/{self._active.recording.id}/stop)")
                raise TimelapseError(msg, code="busy", status=409)
            await self._begin(job, mode, MANUAL)
            assert self._active is not None  # noqa: S101 - _begin sets it
            return self.view(self._active.recording)

    async def end(self, recording_id: int) -> TimelapseView:
        async with self._lock:
            recording = await self.get(recording_id)
            if self._active is None or self._active.recording.id != recording_id:
                msg = f"timelapse {recording_id} is {recording.state.value}, not recording"
                raise TimelapseError(msg, code="not_recording", status=409)
            ended = await self._end()
            return self.view(ended)

    async def delete(self, recording_id: int) -> None:
        async with self._lock:
            recording = await self.get(recording_id)
            if recording.state in (RecordingState.RECORDING, RecordingState.RENDERING):
                msg = (f"timelapse {recording_id} is {recording.state.value}; delete it once it "
                       "is ready (stop a recording with POST /api/timelapses/ID/stop)")
                raise TimelapseError(msg, code="busy", status=409)
            await self._delete(recording_id)

    # -- recordings ----------------------------------------------------------------------------
    async def _begin(self, job: str | None, mode: str, trigger: str) -> None:
        recording = await recordings.add(self._db, job=job, started_at=self._clock.wall(),
                                         mode=mode, trigger=trigger)
        files = RecordingFiles(self._data_dir, recording.id)
        try:
            await asyncio.to_thread(files.create)
        except OSError as exc:
            await recordings.delete(self._db, recording.id)
            msg = f"cannot create {files.dir}: {exc}; check the data dir's space and permissions"
            raise TimelapseError(msg, code="cannot_record", status=507) from exc
        self._active = Active(recording, files, next_number=1)
        _LOGGER.info("Timelapse %s started (%s, %s mode): %s", recording.id, trigger, mode,
                     job or "no job name")
        self._publish(self.view(recording))
        self._want_frame()  # the first frame at once, in either mode

    async def _end(self) -> Recording:
        """End the active recording and queue its render."""
        active, self._active = self._active, None  # no frame is queued for it from now on
        assert active is not None  # noqa: S101 - callers check
        await self._frames.drained(active)  # the frames it already took reach the disk first
        recording = active.recording.but(ended_at=self._clock.wall(),
                                         state=RecordingState.RENDERING)
        await recordings.save(self._db, recording)
        self._space.track(recording.id, active.size)
        self._renders.add(recording.id)
        _LOGGER.info("Timelapse %s ended with %s frames; rendering", recording.id, recording.frames)
        self._publish(self.view(recording))
        return recording

    async def _delete(self, recording_id: int) -> None:
        await asyncio.to_thread(RecordingFiles(self._data_dir, recording_id).delete)
        await recordings.delete(self._db, recording_id)
        self._space.forget(recording_id)
        self._publish(recording_id)

    # -- frames (timelapse.frames) ---------------------------------------------------------
    def _on_relay(self, event: RelayEvent) -> None:
        if isinstance(event, FrameEvent):
            self._frames.received(event, self._active)

    def _want_frame(self) -> None:
        if self._active is not None:
            self._frames.want(self._active)

    def _pause(self, active: Active, reason: str | None) -> None:
        if active.paused != reason:
            active.paused = reason
            if reason:
                _LOGGER.warning("Timelapse %s paused: %s", active.recording.id, reason)
            else:
                _LOGGER.info("Timelapse %s takes frames again", active.recording.id)
            self._publish(self.view(active.recording))

    async def _room_for(self, size: int, active: Active | None) -> bool:
        """Whether ``size`` more bytes fit (the space budget deletes old recordings for them);
        pauses or unpauses ``active``, the recording that wants the room."""
        full = await self._space.room_for(size, keep=active.recording.id if active else None)
        if active is not None:
            self._pause(active, full)
        return full is None

    # -- the printer ---------------------------------------------------------------------------
    def _on_printer_payload(self, _payload: dict[str, Any]) -> None:
        state = self._printer.state
        self._printer_changes.put_nowait((state.state, state.layer, state.job))

    async def _printer_worker(self) -> None:
        while True:
            state, layer, job = await self._printer_changes.get()
            try:
                async with self._lock:
                    await self._on_printer(state, layer, job)
            except Exception:
                _LOGGER.exception("Following the printer's state failed")

    async def _on_printer(self, state: str | None, layer: int | None, job: str | None) -> None:
        active = self._active
        if active is not None and active.resume_check and state is not None:
            active.resume_check = False
            if state in PRINTING and (job is None or job == active.recording.job):
                _LOGGER.info("Timelapse %s resumes: the print still runs", active.recording.id)
                self._watcher.printing, self._watcher.job = True, job
                self._watcher.layer = layer or 0
                return
            await self._end()
        change = self._watcher.observe(state, layer, job)
        active = self._active
        printer_owned = active is not None and active.recording.trigger == PRINTER
        if change.ended and printer_owned:
            await self._end()
        if change.started and self._active is None:
            await self._begin(job, self.default_mode, PRINTER)
        elif change.new_layer and self._active is not None and self._active.recording.mode == LAYER:
            self._want_frame()

    async def _resume_deadline(self) -> None:
        await self._clock.sleep(RESUME_WAIT_S)
        async with self._lock:
            if self._active is not None and self._active.resume_check:
                _LOGGER.info("The printer did not answer after the restart: ending timelapse %s",
                             self._active.recording.id)
                await self._end()

    async def _ticker(self) -> None:
        while True:
            await self._clock.sleep(self._settings.timelapse_interval_s)
            active = self._active
            if active is not None and active.recording.mode == INTERVAL:
                self._want_frame()

    async def _rendered(self, done: Recording) -> None:
        """A render saved, under the lock: its new size counts, and a paused recording may go on."""
        self._space.resize(done.id, done.size_bytes)
        self._publish(self.view(done))
        await self._room_for(0, self._active)

    # -- start-up ------------------------------------------------------------------------------
    async def _recover(self) -> None:
        rows = await recordings.all_recordings(self._db)  # newest first
        removed = await asyncio.to_thread(tfiles.sweep_orphans, self._data_dir,
                                          [r.id for r in rows])
        for path in removed:
            _LOGGER.info("Removed %s: no recording owns it", path)
        resumable = True
        sizes: dict[int, int] = {}  # finished recordings' bytes
        unrendered: list[int] = []
        for recording in rows:
            files = RecordingFiles(self._data_dir, recording.id)
            parts = await asyncio.to_thread(files.sweep_parts)
            if parts:
                _LOGGER.info("Removed %s half-written files of timelapse %s", parts, recording.id)
            size = await asyncio.to_thread(files.size)
            if recording.state is RecordingState.RECORDING:
                frames = await asyncio.to_thread(files.frames)
                recording = recording.but(frames=len(frames), size_bytes=size)
                if resumable and (recording.trigger == MANUAL or self._printer.configured):
                    resumable = False  # only the newest: one recording at a time
                    last = int(frames[-1].stem) if frames else 0
                    self._active = Active(
                        recording, files, next_number=last + 1, size=size,
                        mime=next((m for m, e in tfiles.EXTENSIONS.items()
                                   if frames and frames[0].suffix == e), None),
                        resume_check=recording.trigger == PRINTER)
                    await recordings.save(self._db, recording)
                    _LOGGER.info("Timelapse %s was cut by a restart with %s frames; %s",
                                 recording.id, len(frames), "resuming" if recording.trigger ==
                                 MANUAL else "asking the printer whether its print still runs")
                    continue
                recording = recording.but(state=RecordingState.RENDERING,
                                          ended_at=recording.ended_at or self._clock.wall())
                await recordings.save(self._db, recording)
            if recording.state is RecordingState.RENDERING:
                unrendered.append(recording.id)
            elif recording.state is RecordingState.READY and not files.video.is_file():
                recording = recording.but(state=RecordingState.FAILED,
                                          error="the video file is missing")
                await recordings.save(self._db, recording)
            if size != recording.size_bytes:
                await recordings.save(self._db, recording.but(size_bytes=size))
            sizes[recording.id] = size
        for recording in reversed(rows):  # oldest first
            if recording.id in sizes:
                self._space.track(recording.id, sizes[recording.id])
        self._renders.add_all(unrendered)
