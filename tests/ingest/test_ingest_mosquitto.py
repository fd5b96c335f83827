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
