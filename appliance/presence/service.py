"""The presence service: radio -> tracker -> store and subscribers; owns its tasks.

Writes are batched: state changes reach the database at once, last-seen/RSSI at most every
``last_seen_write_s`` per beacon (SD cards wear out; a beacon advertises ten times a second).
Every wait is on the injected clock, and when to retry is recovery.py's pure policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from appliance.clock import Clock, mono_of, wall_of
from appliance.errors import ApplianceError, RadioError, StorageFullError, StoreError
from appliance.presence.model import (
    Advertisement,
    BeaconView,
    Pairing,
    PresenceState,
    StateChanged,
    Unsubscribe,
)
from appliance.presence.radio import Radio
from appliance.presence.recovery import Recovery, RecoveryPolicy, connect_backoff_s
from appliance.presence.tracker import Tracker, UnknownBeaconError
from appliance.settings import Settings
from appliance.store import beacons as beacon_store
from appliance.store.db import Database

_LOGGER = logging.getLogger(__name__)

# How often timeouts (away, window, forget) and connect backoffs are evaluated; a second is
# finer than any of them.
TICK_S: Final = 1.0
# How often the watchdog looks at the scanner; stalls are counted in these steps.
WATCHDOG_S: Final = 10.0
# Last-seen/RSSI due for the SD card are looked for this often (each beacon's own interval is
# last_seen_write_s).
FLUSH_CHECK_S: Final = 5.0

Listener = Callable[[str, BeaconView | None], None]


class PairingError(ApplianceError):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class AdapterHealth:
    scanning: bool = False
    state: str = "starting"  # ok | recovering | failed | starting
    recoveries: int = 0
    last_error: str | None = None
    last_recovery: str | None = None


@dataclass(slots=True)
class _LinkAttempt:
    failures: int = 0
    not_before: float = 0.0
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Written:
    last_seen: float = field(default=float("-inf"))
    at: float = field(default=float("-inf"))


class PresenceService:
    def __init__(
        self, settings: Settings, db: Database, radio: Radio, clock: Clock, *,
        radio_name: str = "virtual", recovery: RecoveryPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._radio = radio
        self._clock = clock
        self._recovery = recovery or RecoveryPolicy()
        self.radio_name = radio_name
        self.tracker = Tracker(
            away_after=settings.away_after_s, reconnect_window=settings.reconnect_window_s,
            forget_after=settings.forget_after_s, area=settings.area,
        )
        self.health = AdapterHealth()
        self._listeners: list[Listener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._links: dict[str, _LinkAttempt] = {}
        self._written: dict[str, _Written] = {}
        self._unsaved: set[str] = set()  # addresses whose state the database refused
        self._pending: set[asyncio.Task[None]] = set()
        self._links_dirty = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        now = self._clock.monotonic()

        def stored_at(wall: datetime) -> float:
            # Never later than now: a Pi without an RTC may boot with its clock behind the
            # times it stored (NTP corrects it later); a window must not stretch by that much.
            return min(self._mono(wall), now)

        for stored in await beacon_store.paired(self._db):
            changes = self.tracker.restore(
                address=stored.address, beacon_id=stored.beacon_id, name=stored.name,
                pairing=Pairing(stored.user_id, stored.user_name),
                state=PresenceState(stored.state), first_seen=stored_at(stored.first_seen),
                last_seen=stored_at(stored.last_seen),
                window_from=stored_at(stored.window_from), rssi=stored.rssi, now=now,
            )
            self._written[stored.address] = _Written(stored_at(stored.last_seen), now)
            await self._persist(changes)
        try:
            await self._radio.start()
            self.health.scanning, self.health.state = True, "ok"
        except RadioError as exc:
            _LOGGER.error("Bluetooth radio did not start: %s", exc)
            self.health.state, self.health.last_error = "recovering", str(exc)
        # Periods count from now, not from when each task first runs: a clock that moves
        # before the tasks do (a test's) still wakes them.
        now = self._clock.monotonic()
        self._recovery.stalled(self._radio.activity, now, expect_silence=True)
        flush_s = min(FLUSH_CHECK_S, self._settings.last_seen_write_s)
        for coro in (
            self._consume(), self._link_manager(),
            self._periodic(TICK_S, self._tick, now), self._periodic(flush_s, self.flush, now),
            self._periodic(WATCHDOG_S, self._watch, now),
        ):
            self._tasks.append(asyncio.create_task(coro))

    async def stop(self) -> None:
        for task in [*self._tasks, *self._pending]:
            task.cancel()
        for attempt in self._links.values():
            if attempt.task:
                attempt.task.cancel()
        await asyncio.gather(*self._tasks, *self._pending, return_exceptions=True)
        self._tasks.clear()
        await self._radio.stop()
        self.health.scanning = False
        await self.flush(force=True)

    # -- queries -------------------------------------------------------------------------------
    def devices(self) -> list[BeaconView]:
        return self.tracker.views()

    def wall(self, mono: float) -> datetime:
        return wall_of(self._clock, mono)

    def subscribe(self, listener: Listener) -> Unsubscribe:
        """``listener(address, view)`` after every change; view None = the beacon was forgotten."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- commands (the REST API) ---------------------------------------------------------------
    async def pair(self, address: str, user_id: str, user_name: str) -> BeaconView:
        now = self._clock.monotonic()
        before = self.tracker.view(address)
        try:
            changes = self.tracker.pair(address, Pairing(user_id, user_name), now)
        except UnknownBeaconError:
            msg = f"no beacon {address} has been seen; bring it close and wait for it to appear"
            raise PairingError(msg, code="unknown_device") from None
        view = self._require(address)
        try:
            await beacon_store.save_pairing(
                self._db, address=address, beacon_id=view.beacon_id, name=view.name,
                first_seen=self.wall(view.first_seen), user_id=user_id, user_name=user_name,
                paired_at=self._clock.wall(), state=view.state.value,
                last_seen=self.wall(view.last_seen),
                window_from=self.wall(self.tracker.window_from(address)),
                rssi=view.rssi,
            )
        except StoreError:  # not stored (a full card): the pairing did not happen
            self._undo_pairing(address, before.pairing if before else None, now)
            raise
        self._written[address] = _Written(view.last_seen, now)
        await self._persist(changes[1:])
        self._publish(changes)
        self._links.pop(address, None)
        self._links_dirty.set()
        return self._require(address)

    async def unpair(self, address: str) -> None:
        before = self.tracker.view(address)
        try:
            changes = self.tracker.unpair(address, self._clock.monotonic())
        except UnknownBeaconError:
            msg = f"{address} is not paired"
            raise PairingError(msg, code="not_paired") from None
        try:
            await beacon_store.delete_pairing(self._db, address)
        except StoreError:
            self._undo_pairing(address, before.pairing if before else None,
                               self._clock.monotonic())
            raise
        self._written.pop(address, None)
        attempt = self._links.pop(address, None)
        if attempt and attempt.task:
            attempt.task.cancel()
        await self._radio.disconnect(address)
        self.tracker.link_down(address, self._clock.monotonic())
        self._publish(changes)

    async def reconnect(self, address: str) -> BeaconView:
        try:
            changes = self.tracker.reconnect(address, self._clock.monotonic())
        except UnknownBeaconError:
            msg = f"{address} is not paired; pair it first"
            raise PairingError(msg, code="not_paired") from None
        await self._persist(changes)
        self._publish(changes)
        self._links.pop(address, None)  # a tap resets the connect backoff too
        self._links_dirty.set()
        return self._require(address)

    # -- satellite scanners (appliance/mqtt/hub.py) -------------------------------------------
    async def heard_by(self, scanner: str, area: str, advertisements: list[Advertisement]) -> None:
        """A scanner's batch: presence and areas as if the local radio had heard them."""
        now = self._clock.monotonic()
        changes: list[StateChanged] = []
        for adv in advertisements:
            changes += self.tracker.advertisement(adv, now, scanner=scanner, area=area)
        await self._apply(changes)

    def scanner_gone(self, scanner: str) -> None:
        self._publish(self.tracker.scanner_gone(scanner))

    # -- internals -----------------------------------------------------------------------------
    def _undo_pairing(self, address: str, pairing: Pairing | None, now: float) -> None:
        """Memory back to what the database still says, after a pairing change failed to land."""
        if pairing is None:
            self.tracker.unpair(address, now)
        else:
            self.tracker.pair(address, pairing, now)

    def _mono(self, wall: datetime) -> float:
        return mono_of(self._clock, wall)

    def _require(self, address: str) -> BeaconView:
        view = self.tracker.view(address)
        if view is None:  # pragma: no cover - the tracker just handled this address
            msg = f"{address} vanished"
            raise PairingError(msg, code="unknown_device")
        return view

    def _publish(self, changes: list[StateChanged]) -> None:
        for address in dict.fromkeys(change.address for change in changes):
            view = self.tracker.view(address)
            for listener in list(self._listeners):
                try:
                    listener(address, view)
                except Exception:
                    _LOGGER.exception("Presence listener failed")

    async def _persist(self, changes: list[StateChanged]) -> None:
        """State changes of paired beacons reach the database at once."""
        await self._save_states(dict.fromkeys(c.address for c in changes if c.new is not c.old))

    async def _save_states(self, addresses: Iterable[str]) -> None:
        """A state the database refused (a full card) is kept and saved again by ``flush``."""
        when = self._clock.wall()
        for address in addresses:
            view = self.tracker.view(address)
            if view is None or view.pairing is None:
                self._unsaved.discard(address)
                continue
            try:
                await beacon_store.set_state(
                    self._db, address, view.state.value, self.wall(view.last_seen),
                    self.wall(self.tracker.window_from(address)), when,
                )
            except StoreError as exc:
                if address not in self._unsaved:
                    _LOGGER.warning("Presence of %s not saved yet: %s", address, exc)
                self._unsaved.add(address)
                continue
            self._unsaved.discard(address)
            self._written[address] = _Written(view.last_seen, self._clock.monotonic())

    async def _apply(self, changes: list[StateChanged]) -> None:
        for change in changes:  # a line per visit of a beacon, none per advertisement
            if change.old is None or change.new is None:
                _LOGGER.info("Beacon %s %s", change.address,
                             "discovered" if change.old is None else "forgotten (silent)")
        if changes:
            await self._persist(changes)
            self._publish(changes)
            self._links_dirty.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _consume(self) -> None:
        while True:
            try:
                async for adv in self._radio.advertisements():
                    await self._apply(self.tracker.advertisement(adv, self._clock.monotonic()))
            except (RadioError, OSError) as exc:  # the watchdog recovers the radio
                _LOGGER.warning("Advertisement stream failed: %s", exc)
                self.health.state, self.health.last_error = "recovering", str(exc)
                await self._clock.sleep(TICK_S)
            else:
                return  # the radio stopped

    async def _periodic(
        self, period_s: float, action: Callable[[], Coroutine[Any, Any, None]], start: float
    ) -> None:
        """``action`` once every ``period_s`` of the clock from ``start``; once, not many times,
        after a jump."""
        due = start + period_s
        while True:
            await self._clock.sleep(due - self._clock.monotonic())
            await action()
            due += period_s
            if due <= self._clock.monotonic():  # the clock jumped: carry on from now
                due = self._clock.monotonic() + period_s

    async def _tick(self) -> None:
        await self._apply(self.tracker.tick(self._clock.monotonic()))
        self._links_dirty.set()  # a connect backoff may have run out

    async def flush(self, *, force: bool = False) -> None:
        """Write last-seen/RSSI of paired beacons that moved, at most once per interval each."""
        now = self._clock.monotonic()
        rows = []
        for view in self.tracker.views():
            if view.pairing is None:
                continue
            written = self._written.setdefault(view.address, _Written())
            due = force or now - written.at >= self._settings.last_seen_write_s
            if view.last_seen > written.last_seen and due:
                rows.append((
                    view.address, self.wall(view.last_seen),
                    self.wall(self.tracker.window_from(view.address)), view.rssi,
                ))
                self._written[view.address] = _Written(view.last_seen, now)
        if self._unsaved:
            await self._save_states(list(self._unsaved))
        if not rows:
            return
        try:
            await beacon_store.set_last_seen(self._db, rows)
        except StorageFullError:  # the database said so once; these wait for room
            for address, *_ in rows:
                self._written.pop(address, None)

    async def _link_manager(self) -> None:
        """Starts a connect for every beacon that wants a link and is out of backoff."""
        while True:
            await self._links_dirty.wait()
            self._links_dirty.clear()
            now = self._clock.monotonic()
            for address in self.tracker.wants_link(now):
                attempt = self._links.setdefault(address, _LinkAttempt())
                if attempt.task is None and now >= attempt.not_before:
                    attempt.task = asyncio.create_task(self._connect(address, attempt))

    async def _connect(self, address: str, attempt: _LinkAttempt) -> None:
        try:
            info = await self._radio.connect(address, self._on_link_lost)
        except RadioError as exc:
            attempt.failures += 1
            delay = connect_backoff_s(attempt.failures)
            attempt.not_before = self._clock.monotonic() + delay
            _LOGGER.warning("Connect to %s failed (retry in %.0f s): %s", address, delay, exc)
            return
        finally:
            attempt.task = None
        attempt.failures = 0
        if not self.tracker.may_link(address, self._clock.monotonic()):
            # Unpaired, or the window ran out, while connecting: the link goes, the tap decides.
            await self._radio.disconnect(address)
            return
        await beacon_store.set_firmware(self._db, address, info.firmware)
        await self._apply(self.tracker.link_up(address, self._clock.monotonic()))

    def _on_link_lost(self, address: str) -> None:
        changes = self.tracker.link_down(address, self._clock.monotonic())
        self._spawn(self._apply(changes))

    async def _watch(self) -> None:
        """One look of the watchdog: recover a stalled or failed scanner, one step at a time."""
        policy = self._recovery
        now = self._clock.monotonic()
        # Linked beacons stop advertising (the firmware does), so silence with live links
        # is expected, not a stalled scanner.
        linked = any(view.linked for view in self.tracker.views())
        stalled = policy.stalled(self._radio.activity, now, expect_silence=linked)
        interrupted = self._radio.interrupted()  # bluetoothd restarted: no need to wait a stall
        healthy = self.health.state == "ok" and not stalled and not interrupted
        action = policy.decide(healthy=healthy, now=now)
        if action in (Recovery.NOTHING, Recovery.WAIT):
            return
        if action is Recovery.GIVE_UP:
            self.health.state = "failed"
            _LOGGER.error("Bluetooth recovery exhausted; next try in %s s", policy.give_up_s)
            return
        self.health.state = "recovering"
        self.health.recoveries += 1
        try:
            done = await self._radio.recover(int(action.value))
        except (RadioError, TimeoutError, OSError) as exc:
            self.health.last_error = str(exc)
            _LOGGER.warning("Bluetooth recovery %s failed: %s", action.name, exc)
            return
        self.health.state, self.health.scanning = "ok", True
        policy.recovered(self._clock.monotonic())
        self.health.last_recovery = f"{self._clock.wall().isoformat()} {done}"
        _LOGGER.warning("Bluetooth scanning stalled; recovered: %s", done)
