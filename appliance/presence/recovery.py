"""When to retry: the adapter's recovery steps and the per-beacon connect backoff, as pure policy.

No clock, no I/O: the presence service asks with the time it read from its injected clock and
does what it is told, so tests walk ten minutes of escalation in a few calls.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

# The scanner counts as stalled after this long without any advertisement from any device
# (a Pi hears phones, TVs and beacons: a minute and a half of silence is a broken scanner).
SCAN_STALL_S: Final = 90.0
# After the last step, wait this long before starting over, so a dead adapter is not hammered.
RECOVERY_GIVE_UP_S: Final = 600.0
# Per-beacon connect backoff after a failed attempt: 5 s doubling to 5 minutes (a beacon out of
# range for an hour costs 12 attempts an hour, not thousands).
CONNECT_BACKOFF_S: Final = 5.0
CONNECT_BACKOFF_MAX_S: Final = 300.0


class Recovery(enum.Enum):
    """What the watchdog does now. The steps escalate; Radio.recover(step) takes ``.value``."""

    NOTHING = "nothing"  # scanning is healthy
    RESTART_SCANNER = 0
    RESET_ADAPTER = 1
    GIVE_UP = "give up"  # every step failed: report it and wait RECOVERY_GIVE_UP_S
    WAIT = "wait"  # still waiting after giving up


STEPS: Final = (Recovery.RESTART_SCANNER, Recovery.RESET_ADAPTER)


@dataclass(slots=True)
class RecoveryPolicy:
    """Bounded, escalating adapter recovery: each stalled check takes the next step."""

    stall_s: float = SCAN_STALL_S
    give_up_s: float = RECOVERY_GIVE_UP_S
    _step: int = 0
    _resume_at: float = float("-inf")
    _activity: int = 0
    _active_at: float | None = None  # when the activity count last moved

    def stalled(self, activity: int, now: float, *, expect_silence: bool) -> bool:
        """Has the scanner heard nothing for ``stall_s``? ``activity`` counts what it heard.

        ``expect_silence``: linked beacons stop advertising (the firmware does), so silence is
        then no sign of a stalled scanner.
        """
        if self._active_at is None or activity != self._activity or expect_silence:
            self._activity, self._active_at = activity, now
            return False
        return now - self._active_at > self.stall_s

    def decide(self, *, healthy: bool, now: float) -> Recovery:
        """The next action; call once per watchdog check."""
        if healthy:
            self._step = 0
            self._resume_at = float("-inf")
            return Recovery.NOTHING
        if now < self._resume_at:
            return Recovery.WAIT
        if self._step >= len(STEPS):
            self._step = 0
            self._resume_at = now + self.give_up_s
            return Recovery.GIVE_UP
        step = STEPS[self._step]
        self._step += 1
        return step

    def recovered(self, now: float) -> None:
        """A step worked: silence counts from now."""
        self._active_at = now


def connect_backoff_s(failures: int) -> float:
    """How long to wait before the next connect after ``failures`` failures in a row."""
    if failures <= 0:
        return 0.0
    return float(min(CONNECT_BACKOFF_S * 2 ** (failures - 1), CONNECT_BACKOFF_MAX_S))
