"""Device metrics in the cloud's `Metrics` shape (camelCase keys), read with psutil (imported on first use)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

#: Sensor chips that measure the SoC/CPU, most specific first (Raspberry Pi, Intel, AMD, other ARM, ACPI).
_PREFERRED_CHIPS = ("cpu_thermal", "cpu-thermal", "soc_thermal", "coretemp", "k10temp", "zenpower", "acpitz")


def _existing(path: Path) -> Path:
    """The nearest existing ancestor (the data folder may not exist yet): its filesystem is the one measured."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def read_temperature(sensors: dict[str, list[Any]]) -> float | None:
    """The CPU temperature in degrees Celsius from `psutil.sensors_temperatures()`, or None without a sensor.

    A preferred chip's hottest reading wins; otherwise the hottest reading of any chip. Readings outside
    -100..200 (broken sensors report e.g. -273 or 3000) are ignored.
    """
    def hottest(entries: list[Any]) -> float | None:
        values = [float(e.current) for e in entries
                  if getattr(e, "current", None) is not None and -100 <= float(e.current) <= 200]
        return max(values) if values else None

    for chip in _PREFERRED_CHIPS:
        if chip in sensors and (value := hottest(sensors[chip])) is not None:
            return round(value, 1)
    values = [v for entries in sensors.values() if (v := hottest(entries)) is not None]
    return round(max(values), 1) if values else None


def collect_metrics(data_dir: Path, *, cpu_sample_seconds: float | None = None) -> dict[str, float]:
    """cpu (percent since the previous call, or over `cpu_sample_seconds`), memory and storage used/total
    (bytes; storage of the data folder's filesystem), temperature where the hardware has a sensor, uptime.

    Blocking (psutil reads /proc and /sys): run it in a thread from async code.
    """
    import psutil

    cpu = psutil.cpu_percent(interval=cpu_sample_seconds)
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(_existing(data_dir)))
    metrics: dict[str, float] = {
        "cpu": round(min(max(float(cpu), 0.0), 100.0), 1),
        "memory": float(memory.total - memory.available),
        "memoryTotal": float(memory.total),
        "storage": float(disk.used),
        "storageTotal": float(disk.total),
        "uptime": round(max(time.time() - psutil.boot_time(), 0.0), 1),
    }
    sensors_fn = getattr(psutil, "sensors_temperatures", None)  # absent on macOS and Windows
    if sensors_fn is not None:
        try:
            temperature = read_temperature(sensors_fn())
        except (OSError, RuntimeError):
            temperature = None
        if temperature is not None:
            metrics["temperature"] = temperature
    return metrics
