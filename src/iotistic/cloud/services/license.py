"""The instance's licence: which one applies, and what it allows right now.

A licence installed through the API (stored in the database) wins over IOTISTIC_LICENSE_KEY, so billing can
push a new one to a running instance. The evaluated state is cached briefly; every replica re-reads it.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.models import InstalledLicense
from iotistic.core.licensing import LicenseState, evaluate_license

CACHE_SECONDS = 30.0


class LicenseService:
    def __init__(self, public_key_pem: str | None, env_token: str | None) -> None:
        self._public_key = public_key_pem
        self._env_token = env_token
        self._cached: LicenseState | None = None
        self._cached_at = 0.0

    async def current(self, session: AsyncSession) -> LicenseState:
        now = time.monotonic()
        if self._cached is not None and now - self._cached_at < CACHE_SECONDS:
            return self._cached
        installed = await session.scalar(select(InstalledLicense).order_by(InstalledLicense.id.desc()).limit(1))
        token = installed.token if installed is not None else self._env_token
        state = evaluate_license(token, self._public_key)
        if state.expires_at is not None and state.expires_at <= time.time() + CACHE_SECONDS:
            self._cached = None  # about to expire: do not serve it from cache past its end
        else:
            self._cached, self._cached_at = state, now
        return state

    def check(self, token: str) -> LicenseState:
        return evaluate_license(token, self._public_key)

    async def install(self, session: AsyncSession, token: str, installed_by: str) -> LicenseState:
        """Store a licence that verifies; the caller commits. Refuses one that would put us in free mode."""
        state = self.check(token)
        if state.mode != "licensed":
            raise ValueError(state.reason or "licence invalid")
        session.add(InstalledLicense(token=token, installed_by=installed_by))
        self._cached = None
        return state

    def forget_cache(self) -> None:
        self._cached = None
