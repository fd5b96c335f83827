"""Telemetry read back: downsampled or raw series, each device's metrics, latest values of many devices."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated

from fastapi import APIRouter, Query

from iotistic.cloud.deps import Session, Viewer
from iotistic.cloud.schemas import UUID_PATTERN
from iotistic.cloud.services import devices, telemetry
from iotistic.cloud.services.telemetry import invalid
from iotistic.cloud.telemetry_schemas import (
    TelemetryBucket,
    TelemetryLatestItem,
    TelemetryLatestOut,
    TelemetryMetric,
    TelemetryPoint,
    TelemetrySeries,
)
from iotistic.core.db import utcnow

router = APIRouter(prefix="/api/v1", tags=["telemetry"])

MAX_POINTS = 5000
MAX_LATEST_DEVICES = 1000
MAX_LATEST_METRICS = 100
_UUID = re.compile(UUID_PATTERN)

Metric = Annotated[str, Query(min_length=1, max_length=128)]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Query times without a zone are taken as UTC."""
    if value is None:
        return None
    try:
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    except (OverflowError, ValueError):
        raise invalid("time out of range") from None


@router.get("/devices/{uuid}/telemetry", response_model=TelemetrySeries, response_model_exclude_none=True)
async def get_series(
    uuid: str, _: Viewer, session: Session, metric: Metric,
    from_: Annotated[dt.datetime | None, Query(alias="from", description="inclusive; default to - 24 h")] = None,
    to: Annotated[dt.datetime | None, Query(description="exclusive; default now")] = None,
    bucket: Annotated[int | None, Query(ge=0, le=int(telemetry.MAX_RANGE.total_seconds()),
                                        description="seconds; 0 for raw readings; default: chosen from "
                                                    "maxPoints")] = None,
    max_points: Annotated[int, Query(alias="maxPoints", ge=2, le=MAX_POINTS)] = 500,
    limit: Annotated[int, Query(ge=1, le=10_000, description="raw mode: readings returned at most")] = 1000,
    newest: Annotated[bool, Query(description="raw mode: the range's newest `limit` readings rather than its "
                                              "oldest (still oldest first), e.g. to start a live chart")] = False,
) -> TelemetrySeries:
    """Per time bucket avg, min, max and count of one metric over [from, to); or raw readings with bucket=0."""
    window = telemetry.resolve_range(_utc(from_), _utc(to), utcnow())
    device = await devices.get_device(session, uuid)
    out = TelemetrySeries(device=uuid, metric=metric, from_=window.start, to=window.end, bucket=0)
    if bucket == 0:
        points, truncated = await telemetry.raw(session, device, metric, window, limit, newest=newest)
        out.readings = [TelemetryPoint(ts=p.ts, value=p.value) for p in points]
        out.truncated = truncated
        return out
    if bucket is None:
        bucket = telemetry.auto_bucket(window.seconds, max_points)
    elif window.seconds / bucket + 1 > MAX_POINTS:
        raise invalid(f"bucket too small for this range: at most {MAX_POINTS} buckets "
                      f"(use at least {math.ceil(window.seconds / (MAX_POINTS - 1))} s)")
    out.bucket = bucket
    out.buckets = [TelemetryBucket(ts=b.start, avg=b.avg, min=b.min, max=b.max, count=b.count)
                   for b in await telemetry.series(session, device, metric, window, bucket)]
    return out


@router.get("/devices/{uuid}/telemetry/metrics", response_model=list[TelemetryMetric])
async def get_device_metrics(uuid: str, _: Viewer, session: Session) -> list[TelemetryMetric]:
    """The device's metrics with their latest value."""
    device = await devices.get_device(session, uuid)
    return [TelemetryMetric.model_validate(row) for row in await telemetry.device_metrics(session, device)]


@router.get("/telemetry/latest", response_model=TelemetryLatestOut)
async def get_latest(
    _: Viewer, session: Session,
    device: Annotated[list[str], Query(description=f"device uuid, repeatable (up to {MAX_LATEST_DEVICES})")],
    metric: Annotated[list[str] | None, Query(description="only these metrics, repeatable")] = None,
) -> TelemetryLatestOut:
    """Latest values of many devices at once (one query)."""
    uuids = list(dict.fromkeys(device))  # distinct, in the order asked
    if len(uuids) > MAX_LATEST_DEVICES:
        raise invalid(f"at most {MAX_LATEST_DEVICES} devices per request")
    bad = next((u for u in uuids if not _UUID.match(u)), None)
    if bad is not None:
        raise invalid(f"device {bad[:70]!r} is not a device uuid")
    metrics = list(dict.fromkeys(metric or ()))
    if len(metrics) > MAX_LATEST_METRICS or any(not 0 < len(m) <= 128 for m in metrics):
        raise invalid(f"at most {MAX_LATEST_METRICS} metrics, each 1 to 128 characters")
    items, unknown = await telemetry.latest(session, uuids, metrics)
    return TelemetryLatestOut(
        items=[TelemetryLatestItem(device=i.device_uuid, metric=i.metric, ts=i.ts, value=i.value, unit=i.unit)
               for i in items],
        unknown_devices=unknown,
    )
