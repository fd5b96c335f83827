"""When each device was last heard from, written to the database in batches.

Noting contact in memory and flushing every few seconds turns one write per poll into one statement per
interval for the whole fleet, and keeps the state-poll hot path free of writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncEngine

from iotistic.cloud.models import Device
from iotistic.core.db import utcnow
from iotistic.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_table = Device.__table__
assert isinstance(_table, Table)
_UPDATE_SEEN = (
    update(_table).where(_table.c.id == bindparam("device_id")).values(last_seen_at=bindparam("seen"))
)
_UPDATE_SEEN_AND_IP = (
    update(_table).where(_table.c.id == bindparam("device_id"))
    .values(last_seen_at=bindparam("seen"), ip_address=bindparam("ip"))
)


class PresenceTracker:
    def __init__(self, engine: AsyncEngine, interval: float = 2.0) -> None:
        self.engine = engine
        self.interval = interval
        self._seen: dict[int, tuple[dt.datetime, str | None]] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, device_id: int, ip: str | None = None) -> None:
        self._seen[device_id] = (utcnow(), ip)

    async def flush(self) -> int:
        if not self._seen:
            return 0
        batch, self._seen = self._seen, {}
        with_ip = [{"device_id": i, "seen": t, "ip": ip} for i, (t, ip) in batch.items() if ip]
        without_ip = [{"device_id": i, "seen": t} for i, (t, ip) in batch.items() if not ip]
        try:
            async with self.engine.begin() as conn:
                if with_ip:
                    await conn.execute(_UPDATE_SEEN_AND_IP, with_ip)
                if without_ip:
                    await conn.execute(_UPDATE_SEEN, without_ip)
        except Exception:
            # Put them back (newer contacts win) and try again next interval; presence is not worth a crash.
            for device_id, value in batch.items():
                self._seen.setdefault(device_id, value)
            raise
        return len(batch)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="presence-flush")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception as exc:  # database briefly away: keep the data, try next time
                log.warning("presence flush failed: %s", type(exc).__name__)
