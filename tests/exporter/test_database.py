"""The exporter on a real instance database (SQLite and PostgreSQL), with devices registered through the API and
telemetry written by ingest's own store; scraped over HTTP as Prometheus would."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from iotistic.core.db import make_engine
from iotistic.exporter.database import read_usage
from iotistic.exporter.service import RunningExporter
from iotistic.ingest.store import Batch, TelemetryStore
from tests.exporter.env import MakeSettings, Register, running_exporter

TOKEN = "exporter-token-0123456789"


async def _poll(api: Any, device: dict[str, Any]) -> None:
    r = await api.client.get(f"/api/v1/device/{device['uuid']}/state",
                             headers={"X-Device-API-Key": device["deviceApiKey"]})
    assert r.status_code == 200, r.text


async def _usage(app: Any) -> Any:
    async with app.state.ctx.read_sessions() as session:
        return await read_usage(session, app.state.ctx.settings.device_offline_after_seconds)


async def _write_readings(app: Any, device_id: int, count: int) -> None:
    """`count` readings spread over two days (two partitions on PostgreSQL), written as ingest writes them."""
    engine = make_engine(app.state.ctx.settings.sqlalchemy_url)
    try:
        batch = Batch()
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
        for i in range(count):
            batch.add_reading(device_id, f"sensor_{i % 4}", start + dt.timedelta(seconds=60 * i), float(i), "C")
        await TelemetryStore(engine).write(batch)
    finally:
        await engine.dispose()


async def test_devices_registered_and_online_by_the_apis_own_rule(app, api, owner, register_devices: Register):
    devices = await register_devices(3)
    assert (await _usage(app)).devices_total == 3
    assert (await _usage(app)).devices_online == 0
    for device in devices[:2]:
        await _poll(api, device)
    assert await app.state.ctx.presence.flush() == 2
    usage = await _usage(app)
    assert (usage.devices_total, usage.devices_online) == (3, 2)
    # The device list of the API says the same.
    r = await api.client.get("/api/v1/devices", params={"online": "true"}, headers=owner)
    assert r.json()["total"] == usage.devices_online
    # A disabled device still counts as registered (the licence's device limit counts it too).
    r = await api.client.patch(f"/api/v1/devices/{devices[2]['uuid']}", json={"status": "disabled"}, headers=owner)
    assert r.status_code == 200, r.text
    assert (await _usage(app)).devices_total == 3


async def test_storage_counts_the_telemetry_table_with_its_partitions(app, register_devices: Register):
    (device,) = await register_devices(1)
    before = await _usage(app)
    assert before.database_bytes > 0 and before.telemetry_bytes is not None
    await _write_readings(app, device["id"], 3000)
    after = await _usage(app)
    assert after.telemetry_bytes is not None
    # Each row holds an integer, a name, a time and a float, and is indexed by its key: well over 40 bytes.
    assert after.telemetry_bytes - before.telemetry_bytes >= 3000 * 40
    assert after.database_bytes > before.database_bytes
    assert after.database_bytes >= after.telemetry_bytes  # the table lives in that database


@pytest.fixture
async def exporter(app: Any, exporter_settings: MakeSettings) -> AsyncIterator[RunningExporter]:
    """A bearer token, and no CUSTOMER_ID: the id comes from the instance's licence. No MQTT (its own account
    switched off)."""
    async with running_exporter(exporter_settings(EXPORTER_TOKEN=TOKEN, EXPORTER_MQTT_LOCAL_ACCOUNT="false")
                                ) as running:
        yield running


async def test_metrics_over_http_need_the_token_and_carry_the_customer(app, api, exporter: RunningExporter,
                                                                      register_devices: Register):
    assert exporter.customer_id == "cust_test"  # the customerId of the licence the test instance runs under
    devices = await register_devices(2)
    await _poll(api, devices[0])
    await app.state.ctx.presence.flush()
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, headers={"Authorization": "Bearer wrong-token-0123456789"})).status_code == 401
        r = await client.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert 'iotistic_devices_registered{customer="cust_test"} 2.0' in lines
    assert 'iotistic_devices_online{customer="cust_test"} 1.0' in lines
    assert 'iotistic_exporter_source_up{customer="cust_test",source="database"} 1.0' in lines
    # MQTT switched off: the broker is not asked and no message count is made up.
    assert not any(line.startswith(("iotistic_mqtt_messages_received", 'iotistic_exporter_source_up{customer="cust'
                                                                        '_test",source="mqtt"')) for line in lines)
