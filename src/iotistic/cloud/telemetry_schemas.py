"""Bodies of the telemetry routes (camelCase on the wire, like `cloud.schemas`)."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from iotistic.cloud.schemas import Wire


class TelemetryBucket(Wire):
    ts: dt.datetime = Field(description="start of the bucket (aligned to a multiple of its size from the epoch)")
    avg: float
    min: float
    max: float
    count: int


class TelemetryPoint(Wire):
    ts: dt.datetime
    value: float


class TelemetrySeries(Wire):
    device: str
    metric: str
    from_: dt.datetime = Field(alias="from", description="inclusive")
    to: dt.datetime = Field(description="exclusive")
    bucket: int = Field(description="bucket size in seconds; 0 for raw readings")
    buckets: list[TelemetryBucket] | None = Field(default=None, description="bucketed mode")
    readings: list[TelemetryPoint] | None = Field(default=None, description="raw mode (bucket=0), oldest first")
    truncated: bool = Field(default=False, description="raw mode: more readings than `limit` in the range (the "
                                                       "newest are left out, or with `newest` the oldest)")


class TelemetryMetric(Wire):
    metric: str
    ts: dt.datetime
    value: float
    unit: str | None


class TelemetryLatestItem(TelemetryMetric):
    device: str


class TelemetryLatestOut(Wire):
    items: list[TelemetryLatestItem]
    unknown_devices: list[str] = Field(description="requested uuids that name no device")
