"""Pure timing rules: poll jitter and exponential backoff. Random numbers come from the caller's generator."""

from __future__ import annotations

import random

#: 2**62 seconds is already far beyond any cap; larger exponents would only overflow the float.
_MAX_EXPONENT = 62


def jittered(interval: float, jitter: float, rng: random.Random | None = None) -> float:
    """`interval` spread uniformly over +/- `jitter` (a fraction, 0 <= jitter < 1) of itself.

    The mean stays `interval`, so the cloud sees the configured load, but devices that booted together (a power
    cut, a fleet rollout) drift apart instead of polling in lock-step.
    """
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be a fraction in [0, 1)")
    rng = rng or random.Random()
    return interval * rng.uniform(1 - jitter, 1 + jitter)


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """How long to wait after `failures` consecutive failures: 0 for none, then an exponential ceiling
    `min(cap, base * 2**(failures - 1))`, randomised over its upper half ("equal jitter").

    The lower half is kept so a delay never collapses to almost nothing (the cloud gets real relief), and the
    randomness stops a fleet that lost the cloud at the same moment from retrying at the same moments.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(failures - 1, _MAX_EXPONENT))
    rng = rng or random.Random()
    return rng.uniform(ceiling / 2, ceiling)
