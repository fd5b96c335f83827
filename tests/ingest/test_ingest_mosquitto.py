"""Ingest against a real Mosquitto running the project's config, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from sqlalchemy import func, select

from iotistic.broker.testing import until
from iotistic.cloud.models import Device, Telemetry, TelemetryLatest
from iotistic.core import topics
from tests.ingest.conftest import StartIngest
from tests.mqtt_env import Broker, Devices


async def _count(app: Any) -> int:
    async with app.state.ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Telemetry)) or 0)


async def test_readings_are_stored_with_the_device_from_the_topic(
        app: Any, broker: Broker, devices: Devices, start_ingest: StartIngest) -> None:
    service = await start_ingest()
    (uuid, password), = await devices(1)
    device = await broker.connect(uuid, password)
    t0 = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)
    for i in range(10):
        ts = (t0 + dt.timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        device.publish(topics.sensor_topic(uuid, "temperature"),
                       json.dumps({"value": 20 + i, "unit": "°C", "ts": ts}).encode())
    assert await until(lambda: service.pipeline is not None and service.pipeline.stats.stored_readings >= 10)
    async with app.state.ctx.sessions() as session:
        device_id = await session.scalar(select(Device.id).where(Device.uuid == uuid))
        rows = (await session.execute(select(Telemetry.device_id, Telemetry.metric, Telemetry.value)
                                      .order_by(Telemetry.ts))).all()
        latest = (await session.execute(select(TelemetryLatest))).scalars().all()
    assert rows == [(device_id, "temperature", float(20 + i)) for i in range(10)]
    assert [(x.metric, x.value, x.unit) for x in latest] == [("temperature", 29.0, "°C")]


async def test_bad_payloads_are_counted_and_dropped_and_ingest_goes_on(
        app: Any, broker: Broker, devices: Devices, start_ingest: StartIngest) -> None:
    service = await start_ingest()
    (uuid, password), = await devices(1)
    device = await broker.connect(uuid, password)
    for payload in (b"not json", b'{"value": "hot"}', b'{"value": 1, "ts": "yesterday"}', b"\xff\xfe"):
        device.publish(topics.sensor_topic(uuid, "t"), payload)
    device.publish(topics.sensor_topic(uuid, "t"), b"21.5")
    assert await until(lambda: service.pipeline is not None and service.pipeline.stats.stored_readings == 1)
    assert service.pipeline is not None
    assert service.pipeline.stats.rejected["bad_payload"] == 4
    assert await _count(app) == 1


async def test_status_drives_online_and_offline(
        app: Any, broker: Broker, devices: Devices, start_ingest: StartIngest, api: Any, owner: Any) -> None:
    await start_ingest()
    (uuid, password), = await devices(1)
    device = await broker.connect(uuid, password)
    device.publish(topics.status_topic(uuid), b"online")

    async def state() -> tuple[bool, str | None]:
        body = (await api.client.get(f"/api/v1/devices/{uuid}", headers=owner)).json()
        async with app.state.ctx.sessions() as session:
            conn_state = await session.scalar(select(Device.connection_state).where(Device.uuid == uuid))
        return body["online"], conn_state

    for _ in range(200):
        if await state() == (True, "online"):
            break
        await asyncio.sleep(0.02)
    assert await state() == (True, "online")
    device.publish(topics.status_topic(uuid), b"offline")
    for _ in range(200):
        if await state() == (False, "offline"):
            break
        await asyncio.sleep(0.02)
    assert await state() == (False, "offline")


async def test_the_online_filter_follows_the_last_will(
        app: Any, broker: Broker, devices: Devices, start_ingest: StartIngest, api: Any, owner: Any) -> None:
    await start_ingest()
    (gone, gone_pw), (here, here_pw), (silent, _) = await devices(3)
    for uuid, password in ((gone, gone_pw), (here, here_pw)):
        (await broker.connect(uuid, password)).publish(topics.status_topic(uuid), b"online")

    async def listed(online: bool) -> set[str]:
        body = (await api.client.get("/api/v1/devices", params={"online": online}, headers=owner)).json()
        return {d["uuid"] for d in body["items"]}

    assert await _eventually(lambda: listed(True), {gone, here})
    (await broker.connect(gone, gone_pw)).publish(topics.status_topic(gone), b"offline")
    assert await _eventually(lambda: listed(True), {here})
    assert await listed(False) == {gone, silent}


async def _eventually(probe: Any, expected: object, within: float = 5.0) -> bool:
    for _ in range(int(within / 0.05)):
        if await probe() == expected:
            return True
        await asyncio.sleep(0.05)
    return bool(await probe() == expected)


def _publish_readings(device: Any, uuid: str, start: dt.datetime, n: int, metric: str = "temperature") -> list[int]:
    mids = []
    for i in range(n):
        ts = (start + dt.timedelta(milliseconds=i)).isoformat()
        mids.append(device.publish(topics.sensor_topic(uuid, metric), json.dumps({"value": i, "ts": ts}).encode()))
    return mids


async def _all_acked(device: Any, mids: list[int]) -> bool:
    return await until(lambda: all(mid in device.pubacks for mid in mids), within=10)


async def _stored_values(app: Any) -> list[float]:
    async with app.state.ctx.sessions() as session:
        return sorted((await session.scalars(select(Telemetry.value))).all())


async def test_readings_sent_while_ingest_is_stopped_are_stored_after_it_restarts(
        app: Any, broker: Broker, devices: Devices, start_ingest: StartIngest) -> None:
    first = await start_ingest(client_id="ingest-restart")
    await first.stop()  # its persistent session stays with the broker
    (uuid, password), = await devices(1)
    device = await broker.connect(uuid, password)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    assert await _all_acked(device, _publish_readings(device, uuid, start, 500))
    assert await _count(app) == 0
    second = await start_ingest(client_id="ingest-restart")
    assert await until(lambda: second.pipeline is not None and second.pipeline.stats.stored_readings >= 500, within=10)
    assert await _stored_values(app) == [float(i) for i in range(500)]


async def test_a_crash_mid_batch_loses_nothing_and_stores_nothing_twice(
        app: Any, broker: Broker, devices: Devices, start_ingest: StartIngest) -> None:
    """Ingest dies without writing its pending batch (no PUBACKs sent): the broker redelivers those messages."""
    first = await start_ingest(client_id="ingest-crash", settings=None)
    assert first.pipeline is not None
    first.pipeline.flush_interval = 3600  # nothing gets written until we crash it
    first.pipeline.batch_size = 10**6
    (uuid, password), = await devices(1)
    device = await broker.connect(uuid, password)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    _publish_readings(device, uuid, start, 300)
    assert await until(lambda: first.pipeline is not None and first.pipeline.pending == 300)
    await first.crash()
    assert await _count(app) == 0
    second = await start_ingest(client_id="ingest-crash")
    assert await until(lambda: second.pipeline is not None and second.pipeline.stats.stored_readings >= 300, within=10)
    assert await _stored_values(app) == [float(i) for i in range(300)]


async def test_two_workers_share_the_subscription_and_store_each_reading_once(
        app: Any, broker: Broker, devices: Devices, start_ingest: StartIngest) -> None:
    workers = [await start_ingest(client_id="ingest-a"), await start_ingest(client_id="ingest-b")]
    made = await devices(4)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    for n, (uuid, password) in enumerate(made):
        device = await broker.connect(uuid, password)
        assert await _all_acked(device, _publish_readings(device, uuid, start, 100, metric=f"m{n}"))
    assert await until(lambda: sum(w.pipeline.stats.stored_readings for w in workers if w.pipeline) >= 400,
                       within=10)
    assert all(w.pipeline is not None and w.pipeline.stats.received > 0 for w in workers)
    assert await _count(app) == 400


async def test_each_reading_also_goes_to_the_devices_redis_stream(
        app: Any, broker: Broker, devices: Devices, start_ingest: StartIngest) -> None:
    import redis.asyncio as aioredis

    from iotistic.ingest.live import RedisBus, stream_key

    bus = RedisBus("redis://127.0.0.1:6379/0", maxlen=100)
    await start_ingest(live=bus)
    (uuid, password), = await devices(1)
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    try:
        device = await broker.connect(uuid, password)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        assert await _all_acked(device, _publish_readings(device, uuid, start, 250))

        async def streamed() -> list[float]:
            entries = await r.xrange(stream_key(uuid))
            return [item["value"] for _id, fields in entries for item in json.loads(fields["readings"])]

        for _ in range(200):  # the last batch is committed, then published
            if (await streamed())[-1:] == [249.0]:
                break
            await asyncio.sleep(0.05)
        assert await streamed() == [float(v) for v in range(250)]  # every reading, in order
    finally:
        await r.delete(stream_key(uuid))
        await r.aclose()
        await bus.close()
