"""The presence service: radio -> tracker -> store, restarts, batching and recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from helpers import ADDR_A, ADDR_B, FakeClock, InjectableRadio, make_advertisement, make_settings, wait_for

from appliance.errors import RadioError
from appliance.presence.model import BeaconView, PresenceState
from appliance.presence.service import PairingError, PresenceService
from appliance.store.db import Database


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "appliance.db"
        self.settings = make_settings(tmp_path, last_seen_write_s=60)
        self.clock = FakeClock()
        self.radio = InjectableRadio()
        self.db: Database | None = None
        self.service: PresenceService | None = None

    async def start(self, **kwargs: float) -> PresenceService:
        self.db = await Database.open(self.path)
        self.radio = InjectableRadio()
        self.service = PresenceService(self.settings, self.db, self.radio, self.clock, **kwargs)
        await self.service.start()
        return self.service

    async def stop(self) -> None:
        if self.service:
            await self.service.stop()
        if self.db:
            await self.db.close()
        self.service = self.db = None

    async def state(self, address: str = ADDR_A) -> PresenceState | None:
        assert self.service is not None
        view = self.service.tracker.view(address)
        return view.state if view else None

    async def wait_stored(self, state: str, address: str = ADDR_A) -> None:
        """The state in the database file (written just after the tracker changed it)."""
        async def stored() -> bool:
            return await self.stored_state() == [(address, state)]
        await wait_for(stored, what=f"{state} stored")

    async def stored_state(self) -> list[tuple[str, str]]:
        db = await Database.open(self.path)
        rows = await db.fetch_all("SELECT address, state FROM presence ORDER BY address")
        await db.close()
        return [(row["address"], row["state"]) for row in rows]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    test_rig = Rig(tmp_path)
    yield test_rig
    await test_rig.stop()


async def _seen_and_paired(rig: Rig) -> PresenceService:
    service = await rig.start()
    rig.radio.inject(make_advertisement())
    await wait_for(lambda: service.tracker.view(ADDR_A) is not None, what="discovery")
    await service.pair(ADDR_A, "u1", "Alice")
    await wait_for(lambda: ADDR_A in rig.radio.links, what="the GATT link")
    return service


async def _linked_then_away(rig: Rig) -> PresenceService:
    """Paired and linked, then the beacon leaves: away, in memory and in the file."""
    service = await _seen_and_paired(rig)
    await wait_for(lambda: service.tracker.view(ADDR_A).linked, what="link up")  # type: ignore[union-attr]
    rig.radio.leave(ADDR_A)
    rig.clock.advance(31)
    await wait_for(lambda: service.tracker.view(ADDR_A).state is PresenceState.AWAY, what="away")  # type: ignore[union-attr]
    await rig.wait_stored("away")
    return service


async def test_pairing_connects_and_is_stored_at_once(rig: Rig) -> None:
    service = await _seen_and_paired(rig)
    await wait_for(lambda: service.tracker.view(ADDR_A).linked, what="link up")  # type: ignore[union-attr]
    await rig.wait_stored("connected")


async def test_pairing_an_unseen_beacon_is_refused(rig: Rig) -> None:
    service = await rig.start()
    with pytest.raises(PairingError) as err:
        await service.pair(ADDR_B, "u1", "Alice")
    assert err.value.code == "unknown_device"


async def test_restart_mid_window_keeps_counting_the_absence(rig: Rig) -> None:
    await _linked_then_away(rig)
    await rig.stop()

    rig.clock.advance(29 * 60)  # down for 29 minutes: 29 min 31 s since the beacon was last seen
    rig.clock = rig.clock.restart()
    service = await rig.start()
    assert await rig.state() is PresenceState.AWAY  # still inside the 30-minute window
    rig.clock.advance(30)
    await wait_for(lambda: service.tracker.view(ADDR_A).state is PresenceState.REQUIRES_TAP,  # type: ignore[union-attr]
                   what="requiresTap after 30 minutes in total")
    await rig.wait_stored("requiresTap")


async def test_restart_after_the_window_needs_a_tap_at_once(rig: Rig) -> None:
    service = await _seen_and_paired(rig)
    rig.radio.leave(ADDR_A)
    await rig.stop()
    rig.clock.advance(31 * 60)
    rig.clock = rig.clock.restart()
    service = await rig.start()
    assert await rig.state() is PresenceState.REQUIRES_TAP
    rig.radio.inject(make_advertisement())
    await wait_for(lambda: service.tracker.view(ADDR_A).last_seen == rig.clock.monotonic(),  # type: ignore[union-attr]
                   what="the advertisement")
    assert await rig.state() is PresenceState.REQUIRES_TAP
    assert rig.radio.connects == []  # no automatic connection without the tap
    await service.reconnect(ADDR_A)
    await wait_for(lambda: ADDR_A in rig.radio.links, what="reconnected after the tap")


async def test_a_connect_that_finishes_after_the_window_is_dropped_and_waits_for_the_tap(
    rig: Rig,
) -> None:
    # HIL scenario 4 in CI: a connect started while the beacon was still in its window came
    # through (BlueZ waits for the next advertisement) after it had run out: requiresTap, linked.
    service = await _seen_and_paired(rig)
    rig.radio.held[ADDR_A] = released = asyncio.Event()
    rig.radio.links.pop(ADDR_A)(ADDR_A)  # the link drops; the next connect hangs
    await wait_for(lambda: rig.radio.connects.count(ADDR_A) == 2, what="the second connect", within=20)
    await wait_for(_after(rig, 60, lambda: service.tracker.view(ADDR_A).state  # type: ignore[union-attr]
                          is PresenceState.REQUIRES_TAP), what="requiresTap after the window",
                   within=20)
    released.set()
    rig.radio.inject(make_advertisement())  # the beacon is back, which lets the connect finish
    await wait_for(lambda: service.tracker.view(ADDR_A).last_seen == rig.clock.monotonic(),  # type: ignore[union-attr]
                   what="the advertisement", within=20)
    await wait_for(lambda: rig.radio.completed.count(ADDR_A) == 2, what="the late connect",
                   within=20)
    await wait_for(lambda: ADDR_A not in rig.radio.links, what="the late link dropped", within=20)
    view = service.tracker.view(ADDR_A)
    assert view is not None and view.state is PresenceState.REQUIRES_TAP and not view.linked
    await rig.wait_stored("requiresTap")


async def test_a_wall_clock_an_hour_behind_at_restart_does_not_stretch_the_window(rig: Rig) -> None:
    # A Pi without an RTC boots with the time it shut down at (fake-hwclock), or earlier: stored
    # times then lie in the future. Absence counts from the restart, never from an hour ahead.
    await _linked_then_away(rig)
    await rig.stop()
    rig.clock = rig.clock.restart()
    rig.clock.set_wall(-3600)
    service = await rig.start()
    assert await rig.state() is PresenceState.AWAY
    started = rig.clock.monotonic()
    await wait_for(_after(rig, 30, lambda: service.tracker.view(ADDR_A).state  # type: ignore[union-attr]
                          is PresenceState.REQUIRES_TAP), what="requiresTap", within=10)
    assert rig.clock.monotonic() - started <= 30 * 60 + 60
    rig.clock.set_wall(+3600)  # NTP puts it right while running: memory counts monotonic time
    assert await rig.state() is PresenceState.REQUIRES_TAP


async def test_last_seen_is_written_in_batches_not_per_advertisement(rig: Rig) -> None:
    service = await _seen_and_paired(rig)
    assert rig.db is not None
    await rig.db.execute("CREATE TABLE writes (n INTEGER)")
    await rig.db.execute("CREATE TRIGGER count_writes AFTER UPDATE ON presence "
                         "BEGIN INSERT INTO writes VALUES (1); END")
    for i in range(200):  # 20 s of advertising at 10 Hz, then 50 s more
        rig.clock.advance(0.35)
        rig.radio.inject(make_advertisement(rssi=-60 - i % 5))
    await wait_for(lambda: service.tracker.view(ADDR_A).last_seen == rig.clock.monotonic(),  # type: ignore[union-attr]
                   what="all advertisements consumed")
    await service.flush()
    rows = await rig.db.fetch_all("SELECT COUNT(*) AS n FROM writes")
    assert rows[0]["n"] <= 2  # 70 s of advertising: at most one write per 60 s
    rig.clock.advance(60)
    rig.radio.inject(make_advertisement())
    await wait_for(lambda: service.tracker.view(ADDR_A).last_seen == rig.clock.monotonic(),  # type: ignore[union-attr]
                   what="the next advertisement")
    await service.flush()
    rows = await rig.db.fetch_all("SELECT COUNT(*) AS n FROM writes")
    assert rows[0]["n"] >= 1


async def test_listeners_get_changes_until_they_unsubscribe(rig: Rig) -> None:
    service = await rig.start()
    seen: list[tuple[str, BeaconView | None]] = []
    unsubscribe = service.subscribe(lambda address, view: seen.append((address, view)))
    rig.radio.inject(make_advertisement())
    await wait_for(lambda: len(seen) == 1, what="the discovery event")
    assert seen[0][1] is not None and seen[0][1].state is PresenceState.DISCOVERED
    unsubscribe()
    rig.radio.inject(make_advertisement(ADDR_B))
    await wait_for(lambda: service.tracker.view(ADDR_B) is not None, what="second beacon")
    assert len(seen) == 1


class _RecoveringRadio(InjectableRadio):
    """Records the recovery steps asked of it; the steps in ``working`` bring scanning back."""

    def __init__(self, working: set[int]) -> None:
        super().__init__()
        self.working = working
        self.steps: list[int] = []

    async def recover(self, step: int) -> str:
        self.steps.append(step)
        if step not in self.working:
            msg = f"step {step} did not help"
            raise RadioError(msg)
        self.inject(make_advertisement())
        return "reset adapter"


async def _start_with(rig: Rig, radio: _RecoveringRadio) -> PresenceService:
    rig.db = await Database.open(rig.path)
    rig.radio = radio
    rig.service = PresenceService(rig.settings, rig.db, radio, rig.clock)
    await rig.service.start()
    return rig.service


def _after(rig: Rig, seconds: float, done: Callable[[], bool]) -> Callable[[], bool]:
    """A wait_for probe that moves the service's clock on by ``seconds`` at each look."""

    def probe() -> bool:
        rig.clock.advance(seconds)
        return done()

    return probe


async def test_stalled_scanning_is_recovered_with_escalating_steps(rig: Rig) -> None:
    radio = _RecoveringRadio(working={1})
    health = (await _start_with(rig, radio)).health
    # 90 s of silence is a stall: restart the scanner (it fails), then reset the adapter.
    await wait_for(_after(rig, 10, lambda: radio.steps[:2] == [0, 1]), what="recovery steps 0 then 1")
    assert health.recoveries >= 2
    assert health.last_error == "step 0 did not help"
    assert health.last_recovery is not None and "reset adapter" in health.last_recovery


async def test_a_restarted_bluetoothd_restarts_the_scanner_at_the_next_look_not_after_a_stall(
    rig: Rig,
) -> None:
    radio = _RecoveringRadio(working={0})
    health = (await _start_with(rig, radio)).health
    radio.inject(make_advertisement())  # the room is busy, nothing has stalled
    radio.interrupt = True
    await wait_for(_after(rig, 10, lambda: radio.steps == [0]), what="the scanner restarted",
                   within=2)
    assert rig.clock.monotonic() < 10_000 + 30  # one or two watchdog looks, not 90 s of silence
    assert health.state == "ok" and health.recoveries == 1


async def test_a_dead_adapter_is_given_up_on_for_ten_minutes_then_tried_again(rig: Rig) -> None:
    radio = _RecoveringRadio(working=set())
    health = (await _start_with(rig, radio)).health
    await wait_for(_after(rig, 10, lambda: health.state == "failed"), what="recovery given up")
    assert radio.steps == [0, 1]
    # It gave up at most one probe (10 s) ago: 9 min 40 s more stay inside the 10-minute pause.
    rig.clock.advance(580)
    await wait_for(lambda: rig.clock.sleepers == 3, what="ticker, flusher and watchdog asleep")
    assert radio.steps == [0, 1] and health.state == "failed"
    await wait_for(_after(rig, 10, lambda: radio.steps[2:] == [0]), what="a fresh start after the pause")
    assert health.recoveries == 3 and health.last_error == "step 0 did not help"
