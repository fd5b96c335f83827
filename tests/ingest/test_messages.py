"""Decoding device messages (pure): the device comes from the topic, every channel's payload is checked."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from iotistic.core import topics
from iotistic.core.schemas.telemetry import BadPayload
from iotistic.ingest.messages import (
    LogsMessage,
    MetricsMessage,
    SensorMessage,
    StateMessage,
    StatusMessage,
    decode,
)

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
U = "device-0001"


def test_sensor_readings_belong_to_the_topic_device() -> None:
    message = decode(topics.sensor_topic(U, "temperature"), b'{"value": 21}', NOW)
    assert isinstance(message, SensorMessage)
    assert message.device_uuid == U
    assert [(r.metric, r.value) for r in message.readings] == [("temperature", 21.0)]


def test_agent_metrics_and_state() -> None:
    metrics = decode(topics.metrics_topic(U), b'{"cpu": 12.5, "memory": 1000, "recordedAt": "2026-11-27T11:00:00Z"}',
                     NOW)
    assert isinstance(metrics, MetricsMessage) and metrics.metrics.cpu == 12.5
    state = decode(topics.state_topic(U), json.dumps({"status": "idle", "appliedVersion": 3}).encode(), NOW)
    assert isinstance(state, StateMessage) and state.report.applied_version == 3


def test_logs_take_the_service_from_the_topic() -> None:
    line = {"timestamp": "2026-11-27T11:00:00Z", "message": "hello", "serviceName": "other"}
    one = decode(topics.logs_topic(U, "web"), json.dumps(line).encode(), NOW)
    many = decode(topics.logs_topic(U, "web"), json.dumps([line, {**line, "message": "again"}]).encode(), NOW)
    assert isinstance(one, LogsMessage) and [x.service_name for x in one.lines] == ["web"]
    assert isinstance(many, LogsMessage) and [x.message for x in many.lines] == ["hello", "again"]


def test_a_log_line_without_zone_is_utc() -> None:
    message = decode(topics.logs_topic(U, "web"), b'{"timestamp": "2026-11-27T11:00:00", "message": "x"}', NOW)
    assert isinstance(message, LogsMessage)
    assert message.lines[0].timestamp == dt.datetime(2026, 11, 27, 11, tzinfo=dt.UTC)


@pytest.mark.parametrize(("payload", "online"), [(b"online", True), (b"offline", False), (b'"online"', True),
                                                  (b"OFFLINE\n", False)])
def test_status(payload: bytes, online: bool) -> None:
    message = decode(topics.status_topic(U), payload, NOW)
    assert message == StatusMessage(U, online)


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("iot/other/x/sensor/t", b"1", "not a device topic"),
    ("iot/device//sensor/t", b"1", "not a device topic"),
    (f"iot/device/{U}/sensor", b"1", "without a sensor name"),
    (f"iot/device/{U}/jobs", b"{}", "unknown channel"),
    (f"iot/device/{U}/jobs/1", b"{}", "unexpected topic level"),
    (f"iot/device/{U}/metrics/extra", b"{}", "unexpected topic level"),
    (f"iot/device/{U}/status", b"maybe", "online' or 'offline"),
    (f"iot/device/{U}/metrics", b'{"cpu": 250}', "cpu"),
    (f"iot/device/{U}/metrics", b'{"cpu": 1, "recordedAt": "2026-11-28T12:00:00Z"}', "future"),
    (f"iot/device/{U}/metrics", b"[]", "payload"),
    (f"iot/device/{U}/state", b'{"apps": 5}', "apps"),
    (f"iot/device/{U}/state", b'{"metrics": {"recordedAt": "2026-11-28T12:00:00Z"}}', "future"),
    (f"iot/device/{U}/logs", b"{}", "logs/<service>"),
    (f"iot/device/{U}/logs/web", b"[]", "empty"),
    (f"iot/device/{U}/logs/web", b"[1]", "JSON object"),
    (f"iot/device/{U}/logs/web", b'{"timestamp": "2026-11-27T11:00:00Z", "message": "a\\u0000b"}', "NUL"),
    (f"iot/device/{U}/logs/web", b'{"message": "no time"}', "timestamp"),
    (f"iot/device/{U}/state", b"{" + b" " * 600_000 + b"}", "larger than"),
])
def test_what_is_refused(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(BadPayload, match=reason):
        decode(topic, payload, NOW)


def test_parse_device_topic() -> None:
    assert topics.parse_device_topic("iot/device/u1/sensor/a/b") == topics.DeviceTopic("u1", "sensor", "a/b")
    assert topics.parse_device_topic("iot/device/u1/status") == topics.DeviceTopic("u1", "status", "")
    assert topics.parse_device_topic("iot/device/u1") is None
    assert topics.parse_device_topic("iot/devices/u1/status") is None
