"""Counts attempts per key in a sliding window: after `limit` of them within `window` seconds, further attempts
for that key wait until the oldest leaves the window. Failed logins per email (slows password guessing) and
signups per client address (each signup costs a deployment) use it.

In memory, per process: enough to make guessing one customer's password impractical without a table of its own;
several replicas each allow `limit`."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class RateGuard:
    def __init__(self, limit: int, window: float, *, max_tracked: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.max_tracked = max_tracked  # bounds the memory an attacker can make us use with made-up keys
        self._clock = clock
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float]:
        attempts = self._attempts.get(key)
        if attempts is None:
            return deque()
        cutoff = self._clock() - self.window
        while attempts and attempts[0] <= cutoff:
            attempts.popleft()
        if not attempts:
            del self._attempts[key]
        return attempts

    def retry_after(self, key: str) -> float | None:
        """Seconds until the next attempt is allowed, or None when one is allowed now."""
        attempts = self._recent(key)
        if len(attempts) < self.limit:
            return None
        return max(attempts[0] + self.window - self._clock(), 1.0)

    def record(self, key: str) -> None:
        attempts = self._attempts.setdefault(key, deque())
        attempts.append(self._clock())
        self._attempts.move_to_end(key)
        while len(self._attempts) > self.max_tracked:
            self._attempts.popitem(last=False)

    def clear(self, key: str) -> None:
        self._attempts.pop(key, None)
