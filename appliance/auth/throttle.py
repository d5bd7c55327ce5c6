"""Login throttling: too many failures from one client, or for one user, within a window."""

from __future__ import annotations

import math
from collections import deque
from typing import Final

# Keys kept at most; the oldest idle ones are dropped first (bounded memory under a spray).
MAX_KEYS: Final = 10_000


class LoginThrottle:
    """Sliding-window failure counter keyed by client address and by username."""

    def __init__(self, *, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, keys: list[str], now: float) -> int:
        """Seconds until a login may be tried again for any of ``keys``; 0 = allowed now."""
        wait = 0.0
        for key in keys:
            times = self._prune(key, now)
            if times is not None and len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window_s - now)
        return math.ceil(wait)

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            times = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
            times.append(now)
            self._failures[key] = times  # re-insert: dict order is least recently failed first
        while len(self._failures) > MAX_KEYS:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _prune(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] + self.window_s <= now:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
