"""What a simulated device puts on the wire, as pure functions: sensor payloads, their topics, broker addresses."""

from __future__ import annotations

import datetime as dt
import json

from iotistic.core.broker_url import BrokerAddress, parse_broker_url
from iotistic.core.topics import STATUS_OFFLINE, STATUS_ONLINE, sensor_topic, status_topic
from iotistic.simulator.bme688 import UNITS, Sample

__all__ = ["STATUS_OFFLINE", "STATUS_ONLINE", "BrokerAddress", "format_ts", "parse_broker_url", "sample_messages",
           "sensor_payload", "status_topic"]


def format_ts(at: dt.datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a `Z`: `2026-11-27T10:00:00.123Z`."""
    if at.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.astimezone(dt.UTC).microsecond // 1000:03d}Z"


def sensor_payload(metric: str, value: float, at: dt.datetime | str) -> bytes:
    """`{"value": 21.5, "unit": "°C", "ts": "...Z"}` as UTF-8 JSON (see `iotistic.core.topics`); `at` may be
    already formatted by `format_ts` (a sample's metrics share it)."""
    ts = at if isinstance(at, str) else format_ts(at)
    return json.dumps({"value": value, "unit": UNITS[metric], "ts": ts}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def sample_messages(device_uuid: str, sample: Sample, at: dt.datetime) -> list[tuple[str, bytes]]:
    """One (topic, payload) per metric of `sample`, all stamped `at`."""
    ts = format_ts(at)
    return [(sensor_topic(device_uuid, metric), sensor_payload(metric, value, ts))
            for metric, value in sample.values().items()]


# MQTT version detection ------------------------------------------------------------------------------------------

def mqtt5_probe_connect(client_id: str) -> bytes:
    """An MQTT 5 CONNECT packet: clean start, no will, no credentials, no properties, keepalive 10 s."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT" + bytes([5, 0x02, 0, 10, 0]) + len(cid).to_bytes(2, "big") + cid
    if len(body) > 127:
        raise ValueError("client id too long for a probe")
    return bytes([0x10, len(body)]) + body


def version_from_connack(packet: bytes) -> str:
    """"5" or "3.1.1" from the broker's answer to `mqtt5_probe_connect`: a 3.1.1-only broker answers a two-byte
    CONNACK with return code 1 (unacceptable protocol version) or closes the connection (an empty answer)."""
    if len(packet) < 4 or packet[0] != 0x20:
        return "3.1.1"
    if packet[1] == 2 and packet[3] == 1:
        return "3.1.1"
    return "5"
