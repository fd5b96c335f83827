"""The deployment queue's rules that need no database: retry backoff and leases."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from iotistic.billing.settings import BillingSettings

DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class QueuePolicy:
    """How the worker paces retries and leases. (How many attempts a job gets is the job's own `max_attempts`,
    fixed when it is queued from BILLING_QUEUE_MAX_ATTEMPTS.)"""

    backoff_seconds: float = 10.0  # delay after the first failed attempt; doubled after each further one
    backoff_max_seconds: float = 900.0
    lease_seconds: float = 300.0  # a running job not renewed for this long belongs to a dead worker

    @classmethod
    def from_settings(cls, settings: BillingSettings) -> QueuePolicy:
        return cls(backoff_seconds=settings.queue_backoff_seconds,
                   backoff_max_seconds=settings.queue_backoff_max_seconds,
                   lease_seconds=settings.queue_lease_seconds)

    def backoff(self, attempts: int) -> dt.timedelta:
        """How long to wait before the next attempt, after `attempts` failed ones (exponential, capped)."""
        exponent = max(attempts - 1, 0)
        # Cap the exponent first: 2**exponent must not overflow a float for a large max_attempts.
        seconds = self.backoff_seconds * 2 ** min(exponent, 60)
        return dt.timedelta(seconds=min(seconds, self.backoff_max_seconds))

    def lease_cutoff(self, now: dt.datetime) -> dt.datetime:
        """Running jobs last renewed before this are taken over."""
        return now - dt.timedelta(seconds=self.lease_seconds)

    @property
    def heartbeat_seconds(self) -> float:
        """How often a worker renews the lease of the job it runs: well inside the lease."""
        return max(self.lease_seconds / 3, 0.05)
