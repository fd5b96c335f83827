"""What one MQTT message on a device topic means to ingest: pure decoding, no I/O.

`decode` turns (topic, payload) into one of the message types below or raises `BadPayload` with a one-line
reason. The device is always the one named in the topic; a payload cannot speak for another device.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from iotistic.core import topics
from iotistic.core.schemas.reports import DeviceReport, LogLine, Metrics
from iotistic.core.schemas.telemetry import (
    CLOCK_SKEW,
    MAX_PAYLOAD_BYTES,
    BadPayload,
    Reading,
    parse_sensor_payload,
)

MAX_LOG_LINES_PER_MESSAGE = 1000
MAX_STATE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class SensorMessage:
    device_uuid: str
    readings: list[Reading]


@dataclass(frozen=True, slots=True)
class MetricsMessage:
    device_uuid: str
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class StateMessage:
    device_uuid: str
    report: DeviceReport


@dataclass(frozen=True, slots=True)
class LogsMessage:
    device_uuid: str
    lines: list[LogLine]


@dataclass(frozen=True, slots=True)
class StatusMessage:
    device_uuid: str
    online: bool


Message = SensorMessage | MetricsMessage | StateMessage | LogsMessage | StatusMessage


def _json(payload: bytes, limit: int = MAX_PAYLOAD_BYTES) -> object:
    if len(payload) > limit:
        raise BadPayload(f"payload larger than {limit} bytes")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise BadPayload("payload is not JSON") from None


def _validation(exc: ValidationError) -> BadPayload:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return BadPayload(f"{where}: {first['msg']}")


def decode(topic: str, payload: bytes, now: dt.datetime) -> Message:
    """The meaning of one message; `BadPayload` when the topic or the payload is not what the contract says."""
    parts = topics.parse_device_topic(topic)
    if parts is None:
        raise BadPayload(f"not a device topic: {topic[:80]!r}")
    uuid, channel, rest = parts.device_uuid, parts.channel, parts.rest
    if channel == topics.SENSOR:
        if not rest:
            raise BadPayload("sensor topic without a sensor name")
        return SensorMessage(uuid, parse_sensor_payload(rest, payload, now))
    if rest and channel != topics.LOGS:
        raise BadPayload(f"unexpected topic level after {channel!r}")
    if channel == topics.STATUS:
        return StatusMessage(uuid, _status(payload))
    if channel == topics.METRICS:
        try:
            metrics = Metrics.model_validate(_json(payload))
        except ValidationError as exc:
            raise _validation(exc) from None
        _check_recorded_at(metrics, now)
        return MetricsMessage(uuid, metrics)
    if channel == topics.STATE:
        try:
            report = DeviceReport.model_validate(_json(payload, MAX_STATE_BYTES))
        except ValidationError as exc:
            raise _validation(exc) from None
        if report.metrics is not None:
            _check_recorded_at(report.metrics, now)
        return StateMessage(uuid, report)
    if channel == topics.LOGS:
        if not rest or "/" in rest:
            raise BadPayload("logs topic must be logs/<service>")
        return LogsMessage(uuid, _log_lines(rest, payload))
    raise BadPayload(f"unknown channel {channel[:40]!r}")


def _check_recorded_at(metrics: Metrics, now: dt.datetime) -> None:
    if metrics.recorded_at is not None and metrics.recorded_at > now + CLOCK_SKEW:
        raise BadPayload("recordedAt lies in the future; check the device clock")


def _status(payload: bytes) -> bool:
    text = payload.decode("utf-8", errors="replace").strip().strip('"').lower()
    if text == topics.STATUS_ONLINE:
        return True
    if text == topics.STATUS_OFFLINE:
        return False
    raise BadPayload("status must be 'online' or 'offline'")


def _log_lines(service: str, payload: bytes) -> list[LogLine]:
    doc = _json(payload)
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise BadPayload("empty list of log lines")
    if len(items) > MAX_LOG_LINES_PER_MESSAGE:
        raise BadPayload(f"at most {MAX_LOG_LINES_PER_MESSAGE} log lines per message")
    lines = []
    for item in items:
        if not isinstance(item, dict):
            raise BadPayload("a log line must be a JSON object")
        try:
            line = LogLine.model_validate({**item, "serviceName": service})
        except ValidationError as exc:
            raise _validation(exc) from None
        if "\x00" in line.message:  # PostgreSQL text cannot hold NUL
            raise BadPayload("log message contains a NUL character")
        if line.timestamp.tzinfo is None:
            line = line.model_copy(update={"timestamp": line.timestamp.replace(tzinfo=dt.UTC)})
        lines.append(line)
    return lines
