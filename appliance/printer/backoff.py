"""Bounded, jittered reconnect delays, shared by the MQTT and the camera links.

Pure: the caller sleeps. Jitter keeps the two links (and several appliances on one printer)
from knocking on the printer in step after it comes back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

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
