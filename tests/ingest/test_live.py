"""The live bus, in-process and on the real Redis at 127.0.0.1:6379.

Every test uses fresh random device uuids, so its streams (`metrics:<uuid>`) are its own; they are deleted after.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from iotistic.ingest.live import InProcessBus, LiveBus, LiveReading, RedisBus, Subscription, make_live_bus, stream_key
from tests.conftest import make_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def reading(device: str, i: int, metric: str = "temp", unit: str | None = "C") -> LiveReading:
    return LiveReading(device_uuid=device, metric=metric, ts=T0 + dt.timedelta(seconds=i), value=i + 0.5, unit=unit)


@dataclass
class Buses:
    """A publishing side and a subscribing side: one bus in-process, two separate RedisBus instances (as ingest
    and the API would be two processes)."""

    publisher: LiveBus
    subscriber: LiveBus
    devices: Callable[[], str]


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(params=["inprocess", "redis"])
async def buses(request: pytest.FixtureRequest, redis_client: aioredis.Redis) -> AsyncIterator[Buses]:
    used: list[str] = []

    def new_device() -> str:
        used.append(uuid.uuid4().hex)
        return used[-1]

    if request.param == "inprocess":
        bus = InProcessBus()
        yield Buses(bus, bus, new_device)
        await bus.close()
    else:
        publisher, subscriber = RedisBus(REDIS_URL, 1000), RedisBus(REDIS_URL, 1000, block_ms=100)
        yield Buses(publisher, subscriber, new_device)
        await publisher.close()
        await subscriber.close()
        if used:
            await redis_client.delete(*(stream_key(d) for d in used))


async def next_reading(sub: Subscription, within: float = 5) -> LiveReading:
    return await asyncio.wait_for(anext(sub), within)


async def assert_nothing_more(sub: Subscription) -> None:
    with pytest.raises(TimeoutError):
        await next_reading(sub, within=0.4)


async def test_subscriber_gets_its_devices_readings_in_order_and_no_others(buses):
    a, b = buses.devices(), buses.devices()
    async with buses.subscriber.subscribe([a]) as sub:
        await buses.publisher.publish([reading(a, 1), reading(b, 2), reading(a, 3, metric="hum", unit=None)])
        assert await next_reading(sub) == reading(a, 1)
        got = await next_reading(sub)
        assert got == reading(a, 3, metric="hum", unit=None)
        assert got.ts.tzinfo is not None and got.ts.utcoffset() == dt.timedelta(0)
        await assert_nothing_more(sub)


async def test_only_readings_published_after_subscribing(buses):
    a = buses.devices()
    await buses.publisher.publish([reading(a, 1), reading(a, 2)])
    async with buses.subscriber.subscribe([a]) as sub:
        await buses.publisher.publish([reading(a, 3)])
        assert await next_reading(sub) == reading(a, 3)
        await assert_nothing_more(sub)


async def test_two_subscribers_of_one_device_both_get_it(buses):
    a = buses.devices()
    async with buses.subscriber.subscribe([a]) as first, buses.subscriber.subscribe([a]) as second:
        await buses.publisher.publish([reading(a, 1)])
        assert await next_reading(first) == reading(a, 1)
        assert await next_reading(second) == reading(a, 1)


async def test_changing_devices_keeps_the_ones_that_stay(buses):
    a, b, c = buses.devices(), buses.devices(), buses.devices()
    async with buses.subscriber.subscribe([a, b]) as sub:
        await sub.set_devices([b, c])
        assert sub.devices == {b, c}
        await buses.publisher.publish([reading(a, 1), reading(b, 2), reading(c, 3)])
        assert {(await next_reading(sub)).device_uuid, (await next_reading(sub)).device_uuid} == {b, c}
        await assert_nothing_more(sub)
        await sub.set_devices([])
        await buses.publisher.publish([reading(b, 4)])
        await assert_nothing_more(sub)


async def test_close_ends_iteration(buses):
    a = buses.devices()
    async with buses.subscriber.subscribe([a]) as sub:
        waiter = asyncio.create_task(anext(sub, None))
        await asyncio.sleep(0.05)
        await buses.subscriber.close()
        assert await asyncio.wait_for(waiter, 5) is None


async def test_slow_subscriber_loses_oldest_and_never_blocks_the_in_process_publisher():
    bus = InProcessBus(queue_size=10)
    async with bus.subscribe(["slow"]) as slow, bus.subscribe(["slow"]) as fast:
        batch = [reading("slow", i) for i in range(20_000)]
        started = time.perf_counter()
        # Nobody reads `slow` while this runs; a blocking publish would hang here.
        await asyncio.wait_for(bus.publish(batch), 2)
        assert time.perf_counter() - started < 1.0
        assert slow.dropped == 20_000 - 10
        kept = [await next_reading(slow) for _ in range(10)]
        assert kept == batch[-10:]  # the newest survive
        assert (await next_reading(fast)) == batch[-10]
    await bus.close()


async def test_redis_streams_stay_near_their_cap(redis_client):
    device = uuid.uuid4().hex
    bus = RedisBus(REDIS_URL, maxlen=1000)
    try:
        for start in range(0, 6000, 2):  # an entry per device per published batch
            await bus.publish([reading(device, i) for i in range(start, start + 2)])
        length = await redis_client.xlen(stream_key(device))
        node = int((await redis_client.config_get("stream-node-max-entries"))["stream-node-max-entries"])
        # MAXLEN ~ trims whole radix-tree nodes only: at least the cap, at most one node more.
        assert 1000 <= length <= 1000 + node, length
        newest = await redis_client.xrevrange(stream_key(device), count=1)
        assert json.loads(newest[0][1]["readings"])[-1]["value"] == 5999.5
    finally:
        await bus.close()
        await redis_client.delete(stream_key(device))


async def test_redis_stream_entry_is_readable_by_other_consumers(redis_client):
    """One entry per device per published batch, its readings as JSON that any consumer can read."""
    device, other = uuid.uuid4().hex, uuid.uuid4().hex
    bus = RedisBus(REDIS_URL, maxlen=1000)
    try:
        await bus.publish([reading(device, 1), reading(device, 2, unit=None), reading(other, 3)])
        entries = await redis_client.xrange(stream_key(device))
        assert [json.loads(fields["readings"]) for _, fields in entries] == [[
            {"metric": "temp", "ts": "2026-11-27T10:00:01+00:00", "value": 1.5, "unit": "C"},
            {"metric": "temp", "ts": "2026-11-27T10:00:02+00:00", "value": 2.5},
        ]]
    finally:
        await bus.close()
        await redis_client.delete(stream_key(device), stream_key(other))


async def test_redis_outage_does_not_fail_the_publisher(caplog):
    bus = RedisBus("redis://127.0.0.1:1/0", maxlen=1000)  # nothing listens on port 1
    try:
        await bus.publish([reading("dev-outage", 1)])
        assert "not published" in caplog.text
    finally:
        await bus.close()


async def test_make_live_bus_picks_redis_only_when_configured(tmp_path, license_keys):
    plain = make_settings("sqlite:///x.db", tmp_path, license_keys)
    assert isinstance(make_live_bus(plain), InProcessBus)
    with_redis = make_settings("sqlite:///x.db", tmp_path, license_keys, REDIS_URL=REDIS_URL, LIVE_STREAM_MAXLEN=50)
    bus = make_live_bus(with_redis)
    assert isinstance(bus, RedisBus) and bus._maxlen == 50
    await bus.close()


async def test_joining_a_watched_device_starts_at_the_join(buses):
    a = buses.devices()
    async with buses.subscriber.subscribe([a]) as first:
        await buses.publisher.publish([reading(a, 1), reading(a, 2)])
        async with buses.subscriber.subscribe([a]) as second:
            await buses.publisher.publish([reading(a, 3)])
            assert await next_reading(second) == reading(a, 3)
            await assert_nothing_more(second)
        assert [await next_reading(first) for _ in range(3)] == [reading(a, 1), reading(a, 2), reading(a, 3)]
