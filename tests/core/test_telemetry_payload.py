"""The sensor payload contract (pure): what ingest stores and what it refuses, with the reason."""

from __future__ import annotations

import datetime as dt

import pytest

from iotistic.core.schemas.telemetry import (
    MAX_PAYLOAD_BYTES,
    MAX_VALUES,
    BadPayload,
    Reading,
    parse_sensor_payload,
    parse_timestamp,
    valid_metric_name,
)

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def test_a_bare_number_is_one_reading_at_receipt_time() -> None:
    assert parse_sensor_payload("temperature", b"21.5", NOW) == [Reading("temperature", NOW, 21.5)]


def test_value_with_unit_and_iso_time() -> None:
    payload = b'{"value": 40, "unit": "%RH", "ts": "2026-11-27T11:59:00Z"}'
    assert parse_sensor_payload("humidity", payload, NOW) == [
        Reading("humidity", dt.datetime(2026, 11, 27, 11, 59, tzinfo=dt.UTC), 40.0, "%RH")]


def test_unix_seconds_and_other_zones_become_utc() -> None:
    assert parse_timestamp(1_700_000_000, NOW) == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert parse_timestamp("2026-11-27T13:00:00+02:00", NOW) == dt.datetime(2026, 11, 27, 11, tzinfo=dt.UTC)


def test_several_values_of_one_instant_become_one_metric_each() -> None:
    payload = b'{"ts": 1764244800, "values": {"temperature": 21.5, "humidity": 40}}'
    readings = parse_sensor_payload("bme688", payload, NOW)
    assert [(r.metric, r.value) for r in readings] == [("bme688.temperature", 21.5), ("bme688.humidity", 40.0)]
    assert {r.ts for r in readings} == {dt.datetime(2025, 11, 27, 12, tzinfo=dt.UTC)}


def test_sensor_names_may_have_levels() -> None:
    assert parse_sensor_payload("floor1/room2/co2", b"420", NOW)[0].metric == "floor1/room2/co2"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b'"hot"', "must be a number"),
    (b"true", "must be a number"),
    (b"NaN", "not JSON"),  # strict JSON: no NaN or Infinity literals
    (b'{"value": 1e999}', "not JSON"),  # overflows to infinity
    (b'{"value": "1"}', "must be a number"),
    (b'{"value": 1, "values": {"a": 1}}', "exactly one of value and values"),
    (b'{"ts": "2026-11-27T11:00:00Z"}', "exactly one of value and values"),
    (b'{"value": 1, "device": "someone-else"}', "unknown field 'device'"),
    (b'{"value": 1, "ts": "2026-11-27T11:00:00"}', "needs a time zone"),
    (b'{"value": 1, "ts": "yesterday"}', "not an ISO 8601 time"),
    (b'{"value": 1, "ts": 1764244800000}', "milliseconds"),
    (b'{"value": 1, "ts": -1}', "out of range"),
    (b'{"value": 1, "ts": true}', "ISO 8601"),
    (b'{"value": 1, "ts": "2026-11-27T12:10:00Z"}', "future"),
    (b'{"value": 1, "unit": 5}', "unit"),
    (b'{"value": 1, "unit": "' + b"u" * 40 + b'"}', "unit"),
    (b'{"values": {}}', "non-empty object"),
    (b'{"values": [1, 2]}', "non-empty object"),
    (b'{"values": {"a/b": 1}}', "not allowed"),
    (b'{"values": {"a b": 1}}', "not allowed"),
    (b'{"values": {"a": null}}', "must be a number"),
])
def test_bad_payloads_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(BadPayload, match=reason):
        parse_sensor_payload("s", payload, NOW)


def test_limits() -> None:
    with pytest.raises(BadPayload, match="larger than"):
        parse_sensor_payload("s", b" " * (MAX_PAYLOAD_BYTES + 1), NOW)
    many = "{" + ",".join(f'"v{i}": {i}' for i in range(MAX_VALUES + 1)) + "}"
    with pytest.raises(BadPayload, match=f"at most {MAX_VALUES}"):
        parse_sensor_payload("s", ('{"values": ' + many + "}").encode(), NOW)


def test_a_clock_a_little_ahead_is_believed() -> None:
    ahead = NOW + dt.timedelta(minutes=4)
    assert parse_timestamp(ahead.isoformat(), NOW) == ahead


@pytest.mark.parametrize(("name", "ok"), [
    ("temperature", True), ("bme688.gas_resistance", True), ("a/b/c", True), ("x-1", True),
    ("", False), ("a//b", False), ("/a", False), ("a/", False), ("a b", False), ("a+b", False), ("#", False),
    ("t" * 128, True), ("t" * 129, False), ("température", False),
])
def test_metric_names(name: str, ok: bool) -> None:
    assert valid_metric_name(name) is ok
    if not ok:
        with pytest.raises(BadPayload):
            parse_sensor_payload(name, b"1", NOW)
