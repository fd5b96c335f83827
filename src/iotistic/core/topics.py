"""MQTT topic names of the device <-> cloud contract (all under `iot/device/<uuid>/`).

What a device publishes (payloads are JSON, UTF-8; `iotistic.core.schemas.telemetry` parses them):
- `sensor/<name>`   one reading: a number, or `{"value": 21.5, "unit": "°C", "ts": "2026-11-27T10:00:00Z"}`
                    (`ts`: ISO 8601 with a zone, or Unix seconds; default: when ingest received it), or several
                    readings of one instant: `{"values": {"temperature": 21.5, "humidity": 40}, "ts": ...}`
                    stored as metrics `<name>.temperature`, `<name>.humidity`. `<name>` may have levels (`a/b`).
- `metrics`         the agent's system metrics (`iotistic.core.schemas.reports.Metrics`)
- `state`           the agent's current-state report (`DeviceReport`, same as `PATCH /api/v1/device/state`)
- `logs/<service>`  one log line or a JSON array of them (`LogLine`; the service comes from the topic)
- `status`          `online` (published retained on connect) or `offline` (the agent's last will, retained)
The device id is always taken from the topic, never from a payload.
"""

from __future__ import annotations

from typing import NamedTuple

DEVICE_ROOT = "iot/device"

SENSOR = "sensor"
METRICS = "metrics"
STATE = "state"
LOGS = "logs"
STATUS = "status"

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"

# What ingest subscribes to (each inside a `$share/<group>/` shared subscription on Mosquitto).
INGEST_FILTERS: tuple[str, ...] = (
    f"{DEVICE_ROOT}/+/{SENSOR}/#",
    f"{DEVICE_ROOT}/+/{METRICS}",
    f"{DEVICE_ROOT}/+/{STATE}",
    f"{DEVICE_ROOT}/+/{LOGS}/+",
    f"{DEVICE_ROOT}/+/{STATUS}",
)
# The read rule an ingest service account needs.
INGEST_READ_FILTER = f"{DEVICE_ROOT}/+/#"


def device_prefix(device_uuid: str) -> str:
    return f"{DEVICE_ROOT}/{device_uuid}"


def device_acl_filter(device_uuid: str) -> str:
    """What a device's own account may publish and subscribe to."""
    return f"{device_prefix(device_uuid)}/#"


def sensor_topic(device_uuid: str, name: str) -> str:
    return f"{device_prefix(device_uuid)}/{SENSOR}/{name}"


def metrics_topic(device_uuid: str) -> str:
    return f"{device_prefix(device_uuid)}/{METRICS}"


def state_topic(device_uuid: str) -> str:
    return f"{device_prefix(device_uuid)}/{STATE}"


def logs_topic(device_uuid: str, service: str) -> str:
    return f"{device_prefix(device_uuid)}/{LOGS}/{service}"


def status_topic(device_uuid: str) -> str:
    return f"{device_prefix(device_uuid)}/{STATUS}"


class DeviceTopic(NamedTuple):
    """A topic under `iot/device/<uuid>/` split into its parts: `iot/device/u1/sensor/a/b` -> (u1, sensor, a/b)."""

    device_uuid: str
    channel: str
    rest: str  # what follows the channel ('' when nothing does)


_ROOT_PREFIX = DEVICE_ROOT + "/"


def parse_device_topic(topic: str) -> DeviceTopic | None:
    """The parts of a device topic, or None when the topic is not one (wrong root, empty uuid or channel)."""
    if not topic.startswith(_ROOT_PREFIX):
        return None
    parts = topic[len(_ROOT_PREFIX):].split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return None
    return DeviceTopic(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
