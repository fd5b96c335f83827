"""MQTT messages received, read from a real Mosquitto (the project's configuration) with the exporter's own
service account, enforced by the broker sync."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import select

from iotistic.cloud.models import MqttAccount
from iotistic.core.broker_url import BrokerAddress
from iotistic.core.topics import sensor_topic
from iotistic.exporter.account import LOCAL_ACCOUNT, PASSWORD_FILE
from iotistic.exporter.broker import BrokerReadError, read_publish_counter
from tests.exporter.env import MakeSettings, Register, running_exporter
from tests.mqtt_env import Broker


@pytest.fixture
def db_url(postgresql_url: str) -> str:
    """The broker does not depend on the backend: PostgreSQL (production) only."""
    return postgresql_url


def _read(broker: Broker, username: str, password: str) -> float:
    return read_publish_counter(BrokerAddress("127.0.0.1", broker.mosquitto.port, False), username, password,
                                timeout=5)


async def test_counts_every_publish_the_broker_accepted(sys_broker: Broker, exporter_account: tuple[str, str],
                                                        register_devices: Register):
    user, password = exporter_account
    (device,) = await register_devices(1)
    probe = await sys_broker.connect(device["mqtt"]["username"], device["mqtt"]["password"])
    start = await asyncio.to_thread(_read, sys_broker, user, password)
    assert start >= 0
    mids = [probe.publish(sensor_topic(device["uuid"], "temperature"), b'{"value": 21.5}') for _ in range(25)]
    deadline = time.monotonic() + 10
    while not all(mid in probe.pubacks for mid in mids):
        assert time.monotonic() < deadline, "the broker did not acknowledge every publish"
        await asyncio.sleep(0.02)
    # $SYS is refreshed every second here (every 10 s with the shipped configuration).
    value = start
    while value < start + 25 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        value = await asyncio.to_thread(_read, sys_broker, user, password)
    assert value == start + 25
    # Reading it publishes nothing: a later read (after another $SYS refresh) shows the same count.
    await asyncio.sleep(1.2)
    assert await asyncio.to_thread(_read, sys_broker, user, password) == start + 25


async def test_a_wrong_password_is_a_clear_error(sys_broker: Broker, exporter_account: tuple[str, str]):
    with pytest.raises(BrokerReadError, match="refused the exporter's login"):
        await asyncio.to_thread(_read, sys_broker, exporter_account[0], "not-the-password-0123")


async def test_an_account_that_may_not_read_sys_gets_no_count(sys_broker: Broker, register_devices: Register):
    (device,) = await register_devices(1)
    await sys_broker.connect(device["mqtt"]["username"], device["mqtt"]["password"])  # known to the broker now
    with pytest.raises(BrokerReadError, match=r"refused the subscription|sent no \$SYS"):
        await asyncio.to_thread(_read, sys_broker, device["mqtt"]["username"], device["mqtt"]["password"])


async def test_a_broker_that_is_not_there_is_a_clear_error():
    from iotistic.broker.testing import free_port

    address = BrokerAddress("127.0.0.1", free_port(), False)
    with pytest.raises(BrokerReadError, match="cannot connect"):
        await asyncio.to_thread(read_publish_counter, address, "exporter", "x" * 20, timeout=2)


async def test_without_configured_credentials_the_exporter_keeps_its_own_account(
        app, sys_broker: Broker, exporter_settings: MakeSettings):
    settings = exporter_settings(MQTT_BROKER_URL=f"mqtt://127.0.0.1:{sys_broker.mosquitto.port}")
    async with running_exporter(settings) as exporter, httpx.AsyncClient(timeout=10) as client:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        up = 'iotistic_exporter_source_up{customer="cust_test",source="mqtt"} 1.0'
        deadline = time.monotonic() + 10
        while up not in (text := (await client.get(url)).text).splitlines():  # until the sync told the broker
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.2)
        assert any(line.startswith('iotistic_mqtt_messages_received_total{customer="cust_test"} ')
                   for line in text.splitlines())
    password_file = settings.data_dir / PASSWORD_FILE
    assert password_file.stat().st_mode & 0o777 == 0o600
    async with app.state.ctx.sessions() as session:
        account = await session.scalar(select(MqttAccount).where(MqttAccount.username == LOCAL_ACCOUNT))
        assert account is not None and account.kind == "service" and account.is_active
        assert [(r.topic, r.access) for r in account.rules] == [("$SYS/broker/#", "read")]
