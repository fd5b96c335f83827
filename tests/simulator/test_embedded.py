"""Simulated devices through the embedded broker (amqtt, MQTT 3.1.1 only) of `iotistic up`, on SQLite."""

from __future__ import annotations

import asyncio

import pytest

from iotistic.broker.testing import until
from iotistic.embedded_broker import start_embedded_broker
from iotistic.simulator.run import DeviceClient, MqttVersion, run_simulation
from tests.simulator.conftest import add_reader
from tests.simulator.test_mqtt import readings_by_device


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


async def test_devices_publish_through_the_embedded_broker_with_mqtt_311(app, api, owner, provision, subscribers):
    devices = await provision(2)
    await add_reader(api, owner)
    broker = await start_embedded_broker(app.state.ctx.read_sessions, "127.0.0.1", 0)
    try:
        reader = await subscribers(broker.port, v5=False)
        connected: list[DeviceClient] = []
        counters = await run_simulation(devices, 0.2, duration_s=1.0, broker_url=broker.url,
                                        on_connected=connected.extend)
        assert [c.version for c in connected] == [MqttVersion.v311] * 2  # auto fell back from MQTT 5
        assert counters.errors == 0, counters.first_error
        assert counters.published >= 2 * 4 * 4 and counters.acked == counters.published
        assert await until(lambda: sum(map(len, readings_by_device(reader.received()).values()))
                           == counters.published)
        assert set(readings_by_device(reader.received())) == {d.uuid for d in devices}
    finally:
        await asyncio.wait_for(broker.stop(), 15)
