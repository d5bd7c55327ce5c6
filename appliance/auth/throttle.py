"""Login throttling: too many failures from one client, or for one user, within a window.

Three sliding windows, each a failure count per key:

- per client (an IPv4 address, or an IPv6 /64: one subscriber's whole prefix is one client):
  ``max_failures`` per ``window_s``, then every login from it waits;
- per user, soft: after ``max_failures`` per ``window_s`` only clients with no failure of their
  own in their window may still try, so a spray from one place cannot lock the owner out;
- per user, ceiling: ``USER_CEILING_FACTOR * max_failures`` per ``USER_CEILING_WINDOW_FACTOR *
  window_s``, then everyone waits: the bound on guesses spread over many addresses.

An attempt is counted *before* its password is checked (``begin``) and forgiven if the password
was right (``succeeded``), so concurrent guesses cannot all slip in while the first is hashed.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from dataclasses import dataclass
from typing import Final

# Keys kept per window before the oldest *unlocked* ones are dropped (bounded memory under a
# spray of fresh names or addresses). A key at its limit is never dropped before its window ends:
# forgetting it would free a locked user. Locked keys cost max_failures counted attempts each
# per window, which the scrypt check (~50 ms each) rate-limits.
MAX_KEYS: Final = 10_000
# Guesses from many clients for one user: 20 x 5 per hour by default. Low enough that a password
# the policy accepts survives years of it, high enough that locking the owner out takes 100
# addresses (IPv6 /64s) instead of one.
USER_CEILING_FACTOR: Final = 20
USER_CEILING_WINDOW_FACTOR: Final = 12
# IPv6 clients are keyed by their /64: a subscriber (or a rented server) gets at least that many
# addresses, so per-address counting lets one attacker rotate forever.
IPV6_CLIENT_PREFIX: Final = 64


def client_key(address: str | None) -> str:
    """The key a client is throttled by: its IPv4 address or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return f"client:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"client:{ip.ipv4_mapped}"
        net = ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False)
        return f"client:{net}"
    return f"client:{ip}"


class _Window:
    """Failure times per key within a sliding window, at most ``limit`` kept per key."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def count(self, key: str, now: float) -> int:
        times = self._prune(key, now)
        return len(times) if times is not None else 0

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` is under its limit again; 0 when it is."""
        times = self._prune(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[0] + self.window_s - now

    def add(self, key: str, now: float) -> None:
        times = self._failures.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._failures[key] = times  # re-insert: dict order is least recently failed first
        if len(self._failures) > MAX_KEYS:
            self._evict(now)

    def forgive(self, key: str, at: float) -> None:
        """Take back the failure counted at ``at`` (the password turned out right)."""
        times = self._failures.get(key)
        if times is not None and at in times:
            times.remove(at)
            if not times:
                del self._failures[key]

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def _evict(self, now: float) -> None:
        for key in list(self._failures):
            if len(self._failures) <= MAX_KEYS:
                return
            if self.wait(key, now) == 0:  # expired or under its limit: safe to forget
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


@dataclass(frozen=True, slots=True)
class Attempt:
    """One counted login attempt, to forgive when its password was right."""

    client: str
    user: str
    at: float


class LoginThrottle:
    """Counts failed logins per client and per user; see the module docstring for the rules."""

    def __init__(self, *, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clients = _Window(max_failures, window_s)
        self._users = _Window(max_failures, window_s)
        self._ceiling = _Window(max_failures * USER_CEILING_FACTOR,
                                window_s * USER_CEILING_WINDOW_FACTOR)

    def retry_after(self, client: str, user: str, now: float) -> int:
        """Seconds until this client may try this user again; 0 = allowed now."""
        wait = max(self._clients.wait(client, now), self._ceiling.wait(user, now))
        if self._clients.count(client, now) > 0:
            wait = max(wait, self._users.wait(user, now))
        return math.ceil(wait)

    def begin(self, client: str, user: str, now: float) -> Attempt | int:
        """Count an attempt before its password is checked, or the seconds to wait instead."""
        wait = self.retry_after(client, user, now)
        if wait:
            return wait
        for window, key in ((self._clients, client), (self._users, user), (self._ceiling, user)):
            window.add(key, now)
        return Attempt(client, user, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt is not a failure, and the user starts afresh.

        The ceiling keeps its count: the owner logging in must not reset the bound on a spray.
        """
        self._clients.forgive(attempt.client, attempt.at)
        self._ceiling.forgive(attempt.user, attempt.at)
        self._users.clear(attempt.user)
