"""Slows password guessing: after `max_failures` failed logins for one email within `window` seconds, further
attempts for it are refused (429) until the oldest failure leaves the window.

In memory, per process: enough to make guessing one customer's password impractical without a table of its own;
several replicas each allow `max_failures`."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginGuard:
    def __init__(self, max_failures: int = 5, window: float = 900.0, *, max_tracked: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_tracked = max_tracked  # bounds the memory an attacker can make us use with made-up emails
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, email: str) -> deque[float]:
        failures = self._failures.get(email)
        if failures is None:
            return deque()
        cutoff = self._clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[email]
        return failures

    def retry_after(self, email: str) -> float | None:
        """Seconds until the next attempt is allowed, or None when one is allowed now."""
        failures = self._recent(email)
        if len(failures) < self.max_failures:
            return None
        return max(failures[0] + self.window - self._clock(), 1.0)

    def failed(self, email: str) -> None:
        failures = self._failures.setdefault(email, deque())
        failures.append(self._clock())
        self._failures.move_to_end(email)
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)

    def succeeded(self, email: str) -> None:
        self._failures.pop(email, None)
