"""A real Prometheus scrapes the exporter (bearer token, one-second interval) of an instance on PostgreSQL with a
private Mosquitto, and sees devices, online devices, storage and MQTT messages per customer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from iotistic.core.topics import sensor_topic
from iotistic.exporter.service import RunningExporter
from tests.exporter.env import MakeSettings, Register, running_exporter
from tests.exporter.prometheus import PrivatePrometheus, eventually, value_of
from tests.mqtt_env import Broker

CUSTOMER = "c0123456789ab"
TOKEN = "scrape-token-0123456789"


@pytest.fixture
def db_url(postgresql_url: str) -> str:
    """Production's backend; both backends' database reads are covered by test_database.py."""
    return postgresql_url


@pytest.fixture
async def exporter(exporter_settings: MakeSettings, sys_broker: Broker, exporter_account: tuple[str, str]
                   ) -> AsyncIterator[RunningExporter]:
    settings = exporter_settings(CUSTOMER_ID=CUSTOMER, EXPORTER_TOKEN=TOKEN, EXPORTER_CACHE_SECONDS=0.5,
                                 MQTT_BROKER_URL=f"mqtt://127.0.0.1:{sys_broker.mosquitto.port}",
                                 EXPORTER_MQTT_USERNAME=exporter_account[0], EXPORTER_MQTT_PASSWORD=exporter_account[1])
    async with running_exporter(settings) as running:
        yield running


@pytest.fixture
async def prometheus(exporter: RunningExporter) -> AsyncIterator[PrivatePrometheus]:
    server = await asyncio.to_thread(PrivatePrometheus([f"127.0.0.1:{exporter.port}"], bearer_token=TOKEN).start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


async def test_prometheus_scrapes_usage_per_customer(app, api, prometheus: PrivatePrometheus, sys_broker: Broker,
                                                     register_devices: Register):
    devices = await register_devices(3)
    r = await api.client.get(f"/api/v1/device/{devices[0]['uuid']}/state",
                             headers={"X-Device-API-Key": devices[0]["deviceApiKey"]})
    assert r.status_code == 200
    await app.state.ctx.presence.flush()
    selector = f'{{customer="{CUSTOMER}"}}'

    async def devices_seen() -> bool:
        return (await value_of(prometheus, f"iotistic_devices_registered{selector}") == 3
                and await value_of(prometheus, f"iotistic_devices_online{selector}") == 1)

    assert await eventually(devices_seen), await prometheus.query(f"{{customer=\"{CUSTOMER}\"}}")
    (target,) = await prometheus.targets()
    assert target["health"] == "up" and target["lastError"] == ""
    assert (await value_of(prometheus, f"iotistic_storage_database_bytes{selector}") or 0) > 0
    assert await value_of(prometheus, f"iotistic_storage_telemetry_bytes{selector}") is not None
    assert await value_of(prometheus, f'iotistic_exporter_source_up{{customer="{CUSTOMER}",source="mqtt"}}') == 1

    # MQTT: the counter Prometheus holds moves by exactly what the device published.
    start = await eventually(lambda: value_of(prometheus, f"iotistic_mqtt_messages_received_total{selector}"))
    assert start is not None
    probe = await sys_broker.connect(devices[1]["mqtt"]["username"], devices[1]["mqtt"]["password"])
    for _ in range(12):
        probe.publish(sensor_topic(devices[1]["uuid"], "humidity"), b'{"value": 40}')

    async def counted() -> bool:
        return await value_of(prometheus, f"iotistic_mqtt_messages_received_total{selector}") == start + 12

    assert await eventually(counted), await prometheus.query(f"iotistic_mqtt_messages_received_total{selector}")
