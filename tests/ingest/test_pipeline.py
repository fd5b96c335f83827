"""The pipeline against the real database, without a broker: acknowledgements follow commits, order is kept."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from sqlalchemy import func, insert, select

from iotistic.broker.testing import until
from iotistic.cloud.models import Device, DeviceLog, DeviceMetric, Telemetry
from iotistic.core import topics
from iotistic.ingest.devices import DeviceDirectory
from iotistic.ingest.live import InProcessBus
from iotistic.ingest.pipeline import IngestPipeline
from iotistic.ingest.store import TelemetryStore


async def _device(app: Any, uuid: str, status: str = "active") -> int:
    async with app.state.ctx.engine.begin() as conn:
        return int((await conn.execute(insert(Device).returning(Device.id), [
            {"uuid": uuid, "name": uuid, "device_type": "t", "status": status}])).scalar_one())


def _reading(uuid: str, i: int) -> tuple[str, bytes]:
    ts = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1) + dt.timedelta(milliseconds=i)).isoformat()
    return topics.sensor_topic(uuid, "t"), json.dumps({"value": i, "ts": ts}).encode()


async def _pipeline(app: Any, **kwargs: Any) -> IngestPipeline:
    directory = DeviceDirectory(app.state.ctx.engine)
    await directory.reload()
    pipeline = IngestPipeline(TelemetryStore(app.state.ctx.engine), directory, kwargs.pop("live", None), **kwargs)
    pipeline.start()
    return pipeline


async def test_a_message_is_acknowledged_only_once_its_batch_is_committed(app: Any) -> None:
    await _device(app, "dev-ack")
    pipeline = await _pipeline(app, batch_size=100, flush_interval=3600)
    acked: list[int] = []
    try:
        for i in range(99):
            pipeline.submit(*_reading("dev-ack", i), lambda i=i: acked.append(i))
        await asyncio.sleep(0.2)
        assert acked == [] and pipeline.pending == 99
        async with app.state.ctx.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Telemetry)) == 0
        pipeline.submit(*_reading("dev-ack", 99), lambda: acked.append(99))  # the batch is full: written now
        assert await until(lambda: len(acked) == 100)
        async with app.state.ctx.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Telemetry)) == 100
    finally:
        await pipeline.close()


async def test_bad_and_unknown_are_acknowledged_at_once_and_counted(app: Any) -> None:
    await _device(app, "dev-disabled", status="disabled")
    pipeline = await _pipeline(app, flush_interval=3600)
    acked: list[str] = []
    try:
        pipeline.submit(topics.sensor_topic("dev-x", "t"), b"oops", lambda: acked.append("bad"))
        pipeline.submit(*_reading("nobody", 1), lambda: acked.append("unknown"))
        pipeline.submit(*_reading("dev-disabled", 1), lambda: acked.append("disabled"))
        assert await until(lambda: len(acked) == 3)
        assert acked[0] == "bad" and set(acked) == {"bad", "unknown", "disabled"}
        assert pipeline.stats.rejected == {"bad_payload": 1, "unknown_device": 2}
    finally:
        await pipeline.close()


async def test_a_device_registered_after_start_keeps_its_order(app: Any) -> None:
    pipeline = await _pipeline(app, flush_interval=0.05)
    live = InProcessBus()
    pipeline.live = live
    try:
        await _device(app, "dev-late")
        async with live.subscribe(["dev-late"]) as readings:
            for i in range(200):
                pipeline.submit(*_reading("dev-late", i), None)
            pipeline.submit(topics.status_topic("dev-late"), b"online", None)
            pipeline.submit(topics.status_topic("dev-late"), b"offline", None)
            got = [await asyncio.wait_for(anext(aiter(readings)), 5) for _ in range(200)]
        assert [r.value for r in got] == [float(i) for i in range(200)]
        assert await until(lambda: pipeline.stats.stored_messages == 202)
        async with app.state.ctx.sessions() as session:
            state = await session.scalar(select(Device.connection_state).where(Device.uuid == "dev-late"))
        assert state == "offline"
    finally:
        await pipeline.close()
        await live.close()


async def test_agent_metrics_state_and_logs_are_stored_like_their_http_reports(app: Any) -> None:
    device_id = await _device(app, "dev-agent")
    pipeline = await _pipeline(app, flush_interval=0.05)
    try:
        pipeline.submit(topics.metrics_topic("dev-agent"), b'{"cpu": 12.5, "memory": 2048}', None)
        pipeline.submit(topics.state_topic("dev-agent"), b'{"status": "idle", "agentVersion": "1.2.3"}', None)
        pipeline.submit(topics.logs_topic("dev-agent", "web"),
                        b'[{"timestamp": "2026-11-27T01:00:00Z", "message": "started"}]', None)
        assert await until(lambda: pipeline.stats.stored_messages == 3)
        async with app.state.ctx.sessions() as session:
            metric = (await session.scalars(select(DeviceMetric))).one()
            log = (await session.scalars(select(DeviceLog))).one()
            device = await session.get(Device, device_id)
        assert (metric.cpu, metric.memory) == (12.5, 2048.0)
        assert (log.service_name, log.message) == ("web", "started")
        assert device is not None and device.agent_version == "1.2.3" and device.last_seen_at is not None
    finally:
        await pipeline.close()


async def test_a_redelivered_reading_is_stored_once(app: Any) -> None:
    await _device(app, "dev-dup")
    pipeline = await _pipeline(app, flush_interval=0.05)
    try:
        messages = [_reading("dev-dup", i) for i in range(60)]
        for message in messages[:50]:
            pipeline.submit(*message, None)
        assert await until(lambda: pipeline.stats.stored_messages == 50)
        for message in messages[40:]:  # 10 of these are stored already (a redelivery after a lost PUBACK)
            pipeline.submit(*message, None)
        assert await until(lambda: pipeline.stats.stored_messages == 70)
        async with app.state.ctx.sessions() as session:
            values = sorted((await session.scalars(select(Telemetry.value))).all())
        assert values == [float(i) for i in range(60)]
    finally:
        await pipeline.close()
