"""The live bus: readings fresh from ingest, fanned out to whoever watches them (the cloud API's `/ws`).

Best effort by design. Every reading is already committed to the database before it is published, so the bus
never blocks or fails the ingest: a slow watcher loses its oldest readings, a Redis outage is logged and the
readings are simply not streamed.

Two adapters behind one protocol (ARCHITECTURE.md, "Embedded default vs production"):

- `InProcessBus`: asyncio fan-out inside one process. Ingest must run in the same process and event loop as the
  API (`iotistic up`).
- `RedisBus`: a Redis Stream per device, `metrics:<uuid>`, so ingest workers and API replicas may be separate
  processes. Each entry holds the readings one ingest batch had for that device (field `readings`: a JSON array of
  {metric, ts, value, unit}); the stream is capped at about `LIVE_STREAM_MAXLEN` entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NamedTuple, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from iotistic.core.settings import CloudSettings

log = logging.getLogger(__name__)

# Readings a subscriber may have waiting before the oldest are dropped. A dashboard that cannot keep up wants
# the newest values, not a backlog.
SUBSCRIBER_QUEUE = 10_000
STREAM_PREFIX = "metrics:"


class LiveReading(NamedTuple):  # a tuple: ingest makes one per reading
    device_uuid: str
    metric: str
    ts: dt.datetime  # aware UTC
    value: float
    unit: str | None = None


class Subscription:
    """The readings of a set of devices, oldest first; iterate it. Yielded by `LiveBus.subscribe`.

    The device set can change while iterating (`set_devices`), without losing readings of the devices that stay.
    `dropped` counts readings lost because the consumer was too slow.
    """

    def __init__(self, hub: _FanOut, maxsize: int) -> None:
        self._hub = hub
        self._queue: deque[LiveReading] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._closed = False
        self.devices: frozenset[str] = frozenset()
        self.dropped = 0

    async def set_devices(self, device_uuids: Collection[str]) -> None:
        """Watch exactly these devices from now on."""
        await self._hub.update(self, frozenset(device_uuids))

    def _push(self, reading: LiveReading) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        self._queue.append(reading)
        self._ready.set()

    def _close(self) -> None:
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> LiveReading:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()


class LiveBus(Protocol):
    async def publish(self, readings: Sequence[LiveReading]) -> None:
        """Called by ingest after each committed batch. Never blocks on watchers; never raises for the bus."""
        ...

    def subscribe(self, device_uuids: Collection[str]) -> AbstractAsyncContextManager[Subscription]:
        """Readings of these devices published after subscribing, until the context exits."""
        ...

    async def close(self) -> None: ...


class _FanOut:
    """Device uuid -> subscriptions. Delivery is synchronous (no awaits), so a publisher is never held up."""

    def __init__(self) -> None:
        self.by_device: dict[str, set[Subscription]] = {}
        self.subscriptions: set[Subscription] = set()

    async def update(self, sub: Subscription, devices: frozenset[str]) -> None:
        self.set(sub, devices)

    def set(self, sub: Subscription, devices: frozenset[str]) -> None:
        for uuid in sub.devices - devices:
            watchers = self.by_device.get(uuid)
            if watchers is not None:
                watchers.discard(sub)
                if not watchers:
                    del self.by_device[uuid]
        for uuid in devices - sub.devices:
            self.by_device.setdefault(uuid, set()).add(sub)
        sub.devices = devices

    def deliver(self, reading: LiveReading) -> None:
        for sub in self.by_device.get(reading.device_uuid, ()):
            sub._push(reading)

    def close_all(self) -> None:
        for sub in list(self.subscriptions):
            self.set(sub, frozenset())
            sub._close()
        self.subscriptions.clear()


class InProcessBus:
    """The embedded default: publishers and subscribers share this process and its event loop."""

    def __init__(self, queue_size: int = SUBSCRIBER_QUEUE) -> None:
        self._hub = _FanOut()
        self._queue_size = queue_size

    async def publish(self, readings: Sequence[LiveReading]) -> None:
        deliver = self._hub.deliver
        for reading in readings:
            deliver(reading)

    @asynccontextmanager
    async def subscribe(self, device_uuids: Collection[str]) -> AsyncIterator[Subscription]:
        sub = Subscription(self._hub, self._queue_size)
        self._hub.subscriptions.add(sub)
        self._hub.set(sub, frozenset(device_uuids))
        try:
            yield sub
        finally:
            self._hub.set(sub, frozenset())
            self._hub.subscriptions.discard(sub)
            sub._close()

    async def close(self) -> None:
        self._hub.close_all()


def stream_key(device_uuid: str) -> str:
    return STREAM_PREFIX + device_uuid


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _encode(readings: Sequence[LiveReading]) -> dict[str, bytes]:
    """One stream entry: `readings`, a JSON array of {metric, ts, value, unit?}, oldest first."""
    return {"readings": orjson.dumps([
        {"metric": r.metric, "ts": r.ts, "value": r.value, **({"unit": r.unit} if r.unit is not None else {})}
        for r in readings])}


def _decode(device_uuid: str, fields: dict[str, str]) -> list[LiveReading]:
    try:
        return [LiveReading(device_uuid=device_uuid, metric=str(item["metric"]),
                            ts=dt.datetime.fromisoformat(item["ts"]).astimezone(dt.UTC),
                            value=float(item["value"]), unit=item.get("unit"))
                for item in orjson.loads(fields["readings"])]
    except (KeyError, ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
        return []  # someone else's entry in our key space: skip it rather than kill the reader


class _RedisFanOut(_FanOut):
    """The fan-out of one RedisBus, plus the stream position each subscription starts after.

    A subscription must see only what was published after it subscribed, yet the shared reader's cursor on a
    stream may lag behind (a batch in flight). So when a subscription adds a device, the stream's current last
    entry id is fetched and the subscription skips entries up to it.
    """

    def __init__(self, bus: RedisBus) -> None:
        super().__init__()
        self._bus = bus
        self.starts: dict[tuple[Subscription, str], tuple[int, int]] = {}

    async def update(self, sub: Subscription, devices: frozenset[str]) -> None:
        added = devices - sub.devices
        last_ids = await self._bus._last_ids(added)
        for uuid in added:
            self.starts[(sub, uuid)] = _stream_id(last_ids[uuid])
            self._bus._cursors.setdefault(uuid, last_ids[uuid])
        for uuid in sub.devices - devices:
            self.starts.pop((sub, uuid), None)
        self.set(sub, devices)
        for uuid in list(self._bus._cursors):
            if uuid not in self.by_device:
                del self._bus._cursors[uuid]
        self._bus._wake.set()

    def deliver_entry(self, reading: LiveReading, entry_id: tuple[int, int]) -> None:
        for sub in self.by_device.get(reading.device_uuid, ()):
            start = self.starts.get((sub, reading.device_uuid))
            if start is not None:
                if entry_id <= start:
                    continue
                del self.starts[(sub, reading.device_uuid)]  # past its start: no more checks needed
            sub._push(reading)


class RedisBus:
    """Redis Streams: XADD to `metrics:<uuid>` (approximately capped), XREAD BLOCK to watch.

    One shared reader per bus (per API process), not a connection per subscriber: every WebSocket of this
    process is served by a single blocking XREAD over the union of the watched streams, fanned out in memory
    exactly like the in-process bus. Redis connections then stay constant however many dashboards are open, and
    a stream watched by several WebSockets is read once.
    """

    def __init__(self, url: str, maxlen: int, *, queue_size: int = SUBSCRIBER_QUEUE, block_ms: int = 500,
                 read_count: int = 1000) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._maxlen = maxlen
        self._queue_size = queue_size
        # While XREAD blocks, a newly watched stream waits for the next round (its readings are not lost: the
        # cursor starts at its last id). Short blocks keep that first delay small at a negligible cost.
        self._block_ms = block_ms
        self._read_count = read_count
        self._hub = _RedisFanOut(self)
        self._cursors: dict[str, str] = {}  # device uuid -> last stream id the reader has seen
        self._wake = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def publish(self, readings: Sequence[LiveReading]) -> None:
        if not readings:
            return
        # One entry per device per batch, not per reading: at 20,000 readings/s an XADD each cost ingest more
        # CPU (redis-py builds every command in Python) than storing them. One round trip for the batch; no
        # MULTI (atomicity is not needed and would serialise the server).
        by_device: dict[str, list[LiveReading]] = {}
        for reading in readings:
            by_device.setdefault(reading.device_uuid, []).append(reading)
        pipe = self._redis.pipeline(transaction=False)
        for device_uuid, group in by_device.items():
            pipe.xadd(stream_key(device_uuid), _encode(group),  # type: ignore[arg-type]
                      maxlen=self._maxlen, approximate=True)
        try:
            await pipe.execute()
        except RedisError as exc:
            log.warning("live stream: %d readings not published: %s", len(readings), exc)

    @asynccontextmanager
    async def subscribe(self, device_uuids: Collection[str]) -> AsyncIterator[Subscription]:
        sub = Subscription(self._hub, self._queue_size)
        self._hub.subscriptions.add(sub)
        try:
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_loop(), name="live-redis-reader")
            await sub.set_devices(device_uuids)
            yield sub
        finally:
            await self._hub.update(sub, frozenset())
            self._hub.subscriptions.discard(sub)
            sub._close()

    async def close(self) -> None:
        self._hub.close_all()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._redis.aclose()

    async def _last_ids(self, device_uuids: Iterable[str]) -> dict[str, str]:
        """The id of each stream's newest entry ('0-0' for a stream that does not exist yet)."""
        uuids = list(device_uuids)
        if not uuids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for uuid in uuids:
            pipe.xrevrange(stream_key(uuid), count=1)
        results = await pipe.execute()
        return {uuid: (entries[0][0] if entries else "0-0") for uuid, entries in zip(uuids, results, strict=True)}

    async def _read_loop(self) -> None:
        backoff = 0.5
        while True:
            if not self._cursors:
                self._wake.clear()
                await self._wake.wait()
                continue
            streams = {stream_key(uuid): cursor for uuid, cursor in self._cursors.items()}
            try:
                response: Any = await self._redis.xread(streams, count=self._read_count,  # type: ignore[arg-type]
                                                        block=self._block_ms)
            except RedisError as exc:
                log.warning("live stream: reading from Redis failed (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            # RESP2 answers a list of [key, entries], RESP3 a map.
            items = response.items() if isinstance(response, dict) else (response or ())
            for key, entries in items:
                uuid = key.removeprefix(STREAM_PREFIX)
                if uuid not in self._cursors:
                    continue  # unwatched while we were blocked
                for entry_id, fields in entries:
                    self._cursors[uuid] = entry_id
                    position = _stream_id(entry_id)
                    for reading in _decode(uuid, fields):
                        self._hub.deliver_entry(reading, position)


def make_live_bus(settings: CloudSettings) -> LiveBus:
    if settings.redis_url:
        return RedisBus(settings.redis_url, settings.live_stream_maxlen)
    return InProcessBus()
