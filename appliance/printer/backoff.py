"""Reconnecting with bounded, jittered delays: the loop of the MQTT and the camera links.

``Backoff`` is the pure policy; ``run_with_backoff`` runs a link's session again and again and
sleeps on the injected clock between attempts, so a test's FakeClock drives a night of retries
in milliseconds. Jitter keeps the two links (and several appliances on one printer) from
knocking on the printer in step after it comes back.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, NoReturn

from appliance.clock import Clock
from appliance.printer.health import LinkHealth

_LOGGER = logging.getLogger(__name__)

# The first retry comes quickly: a printer that dropped Wi-Fi for a moment is back within seconds.
FIRST_DELAY_S: Final = 1.0
# A printer switched off for the night is asked once a minute: cheap for both sides, and the
# dashboard shows it within a minute of being switched on.
MAX_DELAY_S: Final = 60.0
FACTOR: Final = 2.0
# Each delay is drawn from [1 - JITTER, 1] of the nominal one.
JITTER: Final = 0.3


@dataclass(slots=True)
class Backoff:
    first_s: float = FIRST_DELAY_S
    max_s: float = MAX_DELAY_S
    factor: float = FACTOR
    jitter: float = JITTER
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each failure doubles it, up to ``max_s``."""
        nominal = min(self.max_s, self.first_s * self.factor ** min(self.failures, 32))
        self.failures += 1
        return nominal * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """A link that worked starts again from the first delay."""
        self.failures = 0


async def run_with_backoff(
    session: Callable[[], Awaitable[object]], *, name: str, clock: Clock, backoff: Backoff,
    health: LinkHealth, describe: Callable[[Exception], str], closed: str,
    on_change: Callable[[], None],
) -> NoReturn:
    """Run ``session`` until cancelled: after it ends (``closed`` says so) or fails (``describe``
    says why, in words for /status), ``health`` is down and the next attempt waits the backoff's
    delay on ``clock``. A session that connected (it marked ``health`` up) starts the delays
    again from the first."""
    while True:
        health.attempts += 1
        try:
            await session()
            error = closed
        except Exception as exc:  # noqa: BLE001 - every failure is reported and retried
            error = describe(exc)
        if health.connected:
            backoff.reset()
        delay = backoff.next_delay()
        health.down(clock.monotonic(), error, delay)
        on_change()
        _LOGGER.warning("%s: %s; retrying in %.1f s", name, error, delay)
        await clock.sleep(delay)
