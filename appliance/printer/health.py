"""How one link (MQTT or camera) is doing, for /status: connected, since when, the last error."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class LinkHealth:
    connected: bool = False
    since: float | None = None  # monotonic: when it connected, or when it last failed
    last_error: str | None = None
    attempts: int = 0
    failures: int = 0
    retry_in_s: float | None = None

    def up(self, now: float) -> None:
        self.connected, self.since, self.last_error, self.retry_in_s = True, now, None, None

    def down(self, now: float, error: str, retry_in_s: float) -> None:
        if self.connected or self.since is None:
            self.since = now
        self.connected = False
        self.last_error = error
        self.failures += 1
        self.retry_in_s = round(retry_in_s, 1)
