"""In-memory cache for the state-poll hot path: device API key hash -> (device id, uuid, status, ETag).

Thousands of devices poll their target state every minute and almost always get `304 Not Modified`; answering
that from memory instead of the database is what lets one API process serve a large fleet.

Correctness rests on invalidation, not on expiry:
- every transaction that changes a cached field (api key, status, uuid, target ETag) or deletes a device is
  seen by the session hooks in `install_invalidation`, which evict those devices after the commit;
- on PostgreSQL the same transaction sends `NOTIFY iotistic_device_changed`, so every replica evicts too
  (`DeviceChangeListener`); while a replica's listener is down its cache is switched off, never stale;
- a fill that raced with an eviction is discarded (the generation check in `put`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.orm import Session

from iotistic.cloud.models import Device, DeviceTarget
from iotistic.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHANNEL = "iotistic_device_changed"
_CACHED_DEVICE_FIELDS = ("api_key_hash", "status", "uuid")


@dataclass(frozen=True, slots=True)
class CachedDevice:
    device_id: int
    uuid: str
    status: str
    etag: str


class DeviceAuthCache:
    def __init__(self, max_entries: int = 200_000, *, enabled: bool = True) -> None:
        self.max_entries = max_entries
        self.enabled = enabled
        self._by_key: OrderedDict[str, CachedDevice] = OrderedDict()
        self._key_of: dict[int, str] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key_hash: str) -> CachedDevice | None:
        if not self.enabled:
            return None
        return self._by_key.get(key_hash)

    def put(self, key_hash: str, entry: CachedDevice, generation_at_read: int) -> None:
        """Store what was read from the database, unless an eviction happened since the read began."""
        if not self.enabled or generation_at_read != self._generation:
            return
        old_key = self._key_of.get(entry.device_id)
        if old_key is not None and old_key != key_hash:
            self._by_key.pop(old_key, None)
        self._by_key[key_hash] = entry
        self._key_of[entry.device_id] = key_hash
        while len(self._by_key) > self.max_entries:
            _, dropped = self._by_key.popitem(last=False)
            self._key_of.pop(dropped.device_id, None)

    def evict(self, device_ids: set[int]) -> None:
        self._generation += 1
        for device_id in device_ids:
            key = self._key_of.pop(device_id, None)
            if key is not None:
                self._by_key.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._by_key.clear()
        self._key_of.clear()


def _changed_device_ids(session: Session) -> set[int]:
    ids: set[int] = set()
    for obj in session.deleted:
        if isinstance(obj, Device):
            ids.add(obj.id)
        elif isinstance(obj, DeviceTarget):
            ids.add(obj.device_id)
    for obj in session.dirty:
        if isinstance(obj, Device):
            state = inspect(obj)
            if any(state.attrs[name].history.has_changes() for name in _CACHED_DEVICE_FIELDS):
                ids.add(obj.id)
        elif isinstance(obj, DeviceTarget) and inspect(obj).attrs["etag"].history.has_changes():
            ids.add(obj.device_id)
    return ids


def install_invalidation(session_class: type[Session], cache: DeviceAuthCache, *, notify: bool) -> None:
    """Hook a Session subclass so committed device changes evict the cache (and notify other replicas)."""

    @event.listens_for(session_class, "after_flush")
    def _collect(session: Session, _context: Any) -> None:
        changed = _changed_device_ids(session)
        if changed:
            session.info.setdefault("changed_devices", set()).update(changed)

    @event.listens_for(session_class, "before_commit")
    def _notify(session: Session) -> None:
        session.flush()  # make sure the last changes were collected
        changed = session.info.get("changed_devices")
        if changed and notify:
            payload = ",".join(str(i) for i in sorted(changed))
            session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})

    @event.listens_for(session_class, "after_commit")
    def _evict(session: Session) -> None:
        changed = session.info.pop("changed_devices", None)
        if changed:
            cache.evict(changed)

    @event.listens_for(session_class, "after_rollback")
    def _forget(session: Session) -> None:
        session.info.pop("changed_devices", None)


class DeviceChangeListener:
    """LISTENs on PostgreSQL for other replicas' device changes. The cache is enabled only while listening."""

    def __init__(self, dsn: str, cache: DeviceAuthCache, retry_seconds: float = 2.0) -> None:
        self.dsn = dsn
        self.cache = cache
        self.retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self.cache.enabled = False
        self._task = asyncio.create_task(self._run(), name="device-change-listener")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            ids = {int(p) for p in payload.split(",") if p}
        except ValueError:
            self.cache.clear()
            return
        self.cache.evict(ids)

    async def _run(self) -> None:
        import asyncpg

        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self.cache.clear()  # anything cached before we listened may be stale
                self.cache.enabled = True
                self.connected.set()
                try:
                    await lost.wait()
                finally:
                    self.cache.enabled = False
                    self.connected.clear()
                    if not conn.is_closed():
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("device change listener: %s; retrying", type(exc).__name__)
            self.cache.enabled = False
            self.cache.clear()
            await asyncio.sleep(self.retry_seconds)
