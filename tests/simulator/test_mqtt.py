"""Simulated devices against real brokers: the project's Mosquitto (kept in line with the database by
`iotistic broker sync --once`) and the embedded broker (amqtt, MQTT 3.1.1), read by a service account."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from iotistic.broker.testing import PrivateMosquitto, until
from iotistic.core.schemas.telemetry import parse_sensor_payload
from iotistic.core.topics import parse_device_topic, status_topic
from iotistic.simulator.bme688 import METRICS, UNITS
from iotistic.simulator.run import (
    Counters,
    DeviceClient,
    MqttVersion,
    SimulatorError,
    publish_burst,
    run_simulation,
)
from iotistic.simulator.wire import parse_broker_url
from tests.conftest import Api
from tests.simulator.conftest import Provision, add_reader, broker_sync_once


def readings_by_device(messages: list[tuple[str, bytes]]) -> dict[str, list[tuple[str, Any]]]:
    """Sensor messages parsed as ingest parses them, per device uuid: [(metric, Reading)]."""
    now = dt.datetime.now(dt.UTC)
    found: dict[str, list[tuple[str, Any]]] = {}
    for topic, payload in messages:
        parts = parse_device_topic(topic)
        assert parts is not None, topic
        if parts.channel != "sensor":
            continue
        [reading] = parse_sensor_payload(parts.rest, payload, now)
        found.setdefault(parts.device_uuid, []).append((parts.rest, reading))
    return found


@pytest.fixture
async def running_mosquitto(app: Any, api: Api, owner: dict[str, str], provision: Provision,
                            mosquitto: PrivateMosquitto, tmp_path: Path):
    """Three provisioned devices and the reader account, enforced by a started private Mosquitto."""
    devices = await provision(3)
    await add_reader(api, owner)
    out = broker_sync_once(app, mosquitto, tmp_path / "data")
    assert "4 MQTT account(s)" in out  # three devices and the reader
    mosquitto.start()
    return devices, f"mqtt://127.0.0.1:{mosquitto.port}"


@pytest.mark.parametrize("version", [MqttVersion.v5, MqttVersion.v311], ids=["mqtt5", "mqtt311"])
async def test_devices_publish_readings_that_ingest_can_parse(running_mosquitto, subscribers, mosquitto, version):
    devices, broker = running_mosquitto
    reader = await subscribers(mosquitto.port)
    connected: list[DeviceClient] = []
    counters = await run_simulation(devices, 0.1, duration_s=1.0, broker_url=broker, version=version,
                                    on_connected=connected.extend)

    assert [c.version for c in connected] == [version] * 3
    assert counters.errors == 0, counters.first_error
    assert counters.published >= 3 * 4 * 8  # ~10 ticks of 4 metrics from each of 3 devices in 1 s
    assert counters.acked == counters.published
    assert await until(lambda: len(readings_by_device(reader.received())) == 3
                       and sum(map(len, readings_by_device(reader.received()).values())) == counters.published)
    by_device = readings_by_device(reader.received())
    assert set(by_device) == {d.uuid for d in devices}
    for readings in by_device.values():
        assert Counter(metric for metric, _ in readings) == Counter({m: len(readings) // 4 for m in METRICS})
        for metric, reading in readings:
            assert reading.unit == UNITS[metric]
            assert dt.datetime.now(dt.UTC) - reading.ts < dt.timedelta(seconds=30)
    raw = next(p for t, p in reader.received() if t.endswith("/sensor/temperature"))
    assert json.loads(raw)["ts"].endswith("Z")
    # Staggered: the devices' first readings are spread over the interval, not published at once.
    temperatures = {d.uuid: next(r.ts for m, r in by_device[d.uuid] if m == "temperature") for d in devices}
    assert len(set(temperatures.values())) == 3
    # A clean stop published `offline` itself (a clean DISCONNECT suppresses the will).
    for device in devices:
        assert await until(lambda d=device: reader.received(status_topic(d.uuid))[-1:]
                           == [(status_topic(d.uuid), b"offline")])


async def test_online_is_retained_and_the_will_says_offline_after_an_abrupt_disconnect(
        running_mosquitto, subscribers, mosquitto):
    devices, broker = running_mosquitto
    device = devices[0]
    topic = status_topic(device.uuid)
    client = DeviceClient(device, Counters(), broker=parse_broker_url(broker), version=MqttVersion.v5)
    await client.connect()
    assert await client.drain(5)

    late = await subscribers(mosquitto.port, topic=topic)  # subscribes after `online` was published
    assert await until(lambda: late.received(topic) == [(topic, b"online")])  # only a retained message gets here

    client.kill()  # no DISCONNECT: the broker publishes the will
    assert await until(lambda: late.received(topic)[-1:] == [(topic, b"offline")])
    later = await subscribers(mosquitto.port, topic=topic, v5=False)
    assert await until(lambda: later.received(topic) == [(topic, b"offline")])  # the will was retained too


async def test_a_burst_publishes_every_reading_once_with_distinct_timestamps(running_mosquitto, subscribers,
                                                                             mosquitto):
    devices, broker = running_mosquitto
    reader = await subscribers(mosquitto.port, topic="iot/device/+/sensor/#")
    result = await publish_burst(devices, 250, broker_url=broker, max_unacked=50)

    assert (result.devices, result.published, result.acked, result.errors) == (3, 750, 750, 0), result.first_error
    assert result.rate > 0
    assert await until(lambda: len(reader.received()) == 750, within=10)
    by_device = readings_by_device(reader.received())
    assert {uuid: len(r) for uuid, r in by_device.items()} == {d.uuid: 250 for d in devices}
    for readings in by_device.values():
        keys = [(metric, reading.ts) for metric, reading in readings]
        assert len(set(keys)) == 250  # the readings table's key (device, metric, ts) never collides
        assert max(r.ts for _, r in readings) <= dt.datetime.now(dt.UTC)


async def test_wrong_credentials_and_no_broker_are_clear_errors(running_mosquitto, mosquitto):
    devices, broker = running_mosquitto

    impostor = replace(devices[0], mqtt_password="not-the-password")
    with pytest.raises(SimulatorError, match=r"could not connect.*refused"):
        await run_simulation([impostor], 0.1, duration_s=0.1, broker_url=broker)
    mosquitto.stop()
    with pytest.raises(SimulatorError, match=r"cannot connect to mqtt://127\.0\.0\.1"):
        await run_simulation(devices[:1], 0.1, duration_s=0.1, broker_url=broker)
