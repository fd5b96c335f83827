"""MQTT topic names of the device <-> cloud contract (all under `iot/device/<uuid>/`)."""

from __future__ import annotations

DEVICE_ROOT = "iot/device"


def device_prefix(device_uuid: str) -> str:
    return f"{DEVICE_ROOT}/{device_uuid}"


def device_acl_filter(device_uuid: str) -> str:
    """What a device's own account may publish and subscribe to."""
    return f"{device_prefix(device_uuid)}/#"
