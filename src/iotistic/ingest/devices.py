"""Device uuid (from the topic) -> registry id, for every message ingest handles.

The whole registry is read at start and again every `refresh_seconds` (10,000 devices read in a few ms), so
the hot path is a dict lookup. A uuid not yet known (registered after the last read) is looked up once; an
unknown one is remembered for a while so a flood from a deleted device costs no query per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from iotistic.cloud.models import Device, DeviceStatus

log = logging.getLogger(__name__)


class Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()
"""`cached()`'s answer when only the database can tell."""


class DeviceDirectory:
    def __init__(self, engine: AsyncEngine, *, refresh_seconds: float = 30.0, unknown_seconds: float = 10.0) -> None:
        self.engine = engine
        self.refresh_seconds = refresh_seconds
        self.unknown_seconds = unknown_seconds
        self._ids: dict[str, int] = {}
        self._unknown: dict[str, float] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Device.uuid, Device.id).where(Device.status != DeviceStatus.disabled))
            self._ids = {uuid: device_id for uuid, device_id in rows}
        self._unknown.clear()
        self._loaded_at = time.monotonic()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh

    async def _refresh_now(self) -> None:
        try:
            async with self._lock:
                await self.reload()
        except Exception as exc:  # database away: keep answering from the old copy, try again later
            self._loaded_at = time.monotonic()
            log.warning("ingest: reading the device registry failed: %s", type(exc).__name__)
        finally:
            self._refresh = None

    def cached(self, device_uuid: str) -> int | Missing | None:
        """The id if known, None if known not to exist (or disabled), MISSING when `lookup` must ask the database."""
        now = time.monotonic()
        if now - self._loaded_at > self.refresh_seconds and self._refresh is None:
            # Answer from what we have; the fresh copy replaces it when read.
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_now())
        found = self._ids.get(device_uuid)
        if found is not None:
            return found
        if now - self._unknown.get(device_uuid, float("-inf")) < self.unknown_seconds:
            return None
        return MISSING

    async def lookup(self, device_uuid: str) -> int | None:
        """The id of an enabled device with this uuid, or None."""
        now = time.monotonic()
        if now - self._loaded_at > self.refresh_seconds:
            async with self._lock:  # thousands of messages in flight must not each reload
                if time.monotonic() - self._loaded_at > self.refresh_seconds:
                    await self.reload()
        found = self._ids.get(device_uuid)
        if found is not None:
            return found
        if now - self._unknown.get(device_uuid, float("-inf")) < self.unknown_seconds:
            return None
        async with self.engine.connect() as conn:
            found = await conn.scalar(select(Device.id).where(
                Device.uuid == device_uuid, Device.status != DeviceStatus.disabled))
        if found is None:
            self._unknown[device_uuid] = now
        else:
            self._ids[device_uuid] = found
        return found
