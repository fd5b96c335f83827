"""The embedded default: ingest inside the process, the in-process broker (MQTT 3.1.1, no shared subscriptions)
and the in-process live bus; devices registered through the API."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from iotistic.broker.testing import MqttProbe, until
from iotistic.cloud.models import Telemetry, TelemetryLatest
from iotistic.core import topics
from iotistic.embedded_broker import EmbeddedBroker
from iotistic.ingest.live import InProcessBus, LiveReading
from iotistic.ingest.runner import run_ingest
from tests.conftest import Api


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


async def test_readings_flow_from_a_device_to_the_database_and_the_live_bus(
        app: Any, api: Api, owner: dict[str, str], embedded_broker: EmbeddedBroker) -> None:
    settings = app.state.ctx.settings.model_copy(update={
        "mqtt_broker_url": embedded_broker.url, "ingest_shared_subscription": False, "ingest_flush_ms": 50})
    live = InProcessBus()
    stop, ready = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_ingest(settings, app.state.ctx.engine, live, stop, ready=ready))
    probe: MqttProbe | None = None
    try:
        await asyncio.wait_for(ready.wait(), 20)
        key = (await api.provisioning_key(owner))["key"]
        body, _api_key = await api.register(key)
        uuid, password = body["mqtt"]["username"], body["mqtt"]["password"]
        probe = MqttProbe(embedded_broker.port, uuid, password).start()
        assert await until(lambda: probe is not None and probe.accepted)
        async with live.subscribe([uuid]) as readings:
            ts = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
            probe.publish(topics.sensor_topic(uuid, "humidity"),
                          json.dumps({"value": 41.5, "unit": "%RH", "ts": ts}).encode())
            got: LiveReading = await asyncio.wait_for(anext(aiter(readings)), 10)
        assert (got.device_uuid, got.metric, got.value, got.unit) == (uuid, "humidity", 41.5, "%RH")
        async with app.state.ctx.sessions() as session:
            assert list((await session.scalars(select(Telemetry.value))).all()) == [41.5]
            latest = (await session.scalars(select(TelemetryLatest))).one()
        assert (latest.metric, latest.value, latest.unit) == ("humidity", 41.5, "%RH")
    finally:
        if probe is not None:
            probe.stop()
        stop.set()
        await asyncio.wait_for(worker, 20)
        await live.close()
