"""Reading telemetry back: downsampled series, raw readings, latest values.

Bucketing happens in SQL on both backends, so a year of readings never crosses the wire to be averaged here.
Buckets are aligned to multiples of their size counted from the Unix epoch (a 60 s bucket starts on a whole
minute), so the same bucket means the same interval whatever range a chart asks for.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import ApiError
from iotistic.cloud.models import Device, Telemetry, TelemetryLatest

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DEFAULT_RANGE = dt.timedelta(hours=24)
# Beyond the longest retention (365 days) with some slack; keeps one query's scan bounded.
MAX_RANGE = dt.timedelta(days=400)
# Bucket sizes chosen automatically: round numbers a chart axis can label. Past the last, whole days.
_NICE_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def invalid(message: str) -> ApiError:
    return ApiError(422, "validation_error", message)


@dataclass(frozen=True)
class TimeRange:
    start: dt.datetime  # inclusive
    end: dt.datetime  # exclusive

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def resolve_range(start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime) -> TimeRange:
    """Defaults (to = now, from = to - 24 h) and the limits: from < to, at most MAX_RANGE, not before 1970."""
    try:
        end = end or now
        start = start or end - DEFAULT_RANGE
    except OverflowError:
        raise invalid("time out of range") from None
    if start >= end:
        raise invalid("'from' must be before 'to'")
    if end - start > MAX_RANGE:
        raise invalid(f"the range may span at most {MAX_RANGE.days} days")
    if start < EPOCH:
        raise invalid("'from' must not be before 1970-01-01T00:00:00Z")
    return TimeRange(start, end)


def auto_bucket(span_seconds: float, max_points: int) -> int:
    """The smallest round bucket size (seconds) giving at most `max_points` buckets over a span.

    Aligned buckets overlapping [from, to) number at most span/b + 1 (the first and last may be partial), so
    b >= span / (max_points - 1) guarantees the limit.
    """
    minimum = max(1, math.ceil(span_seconds / (max_points - 1)))
    for size in _NICE_BUCKETS:
        if size >= minimum:
            return size
    return math.ceil(minimum / 86400) * 86400


@dataclass(frozen=True)
class Bucket:
    start: dt.datetime
    avg: float
    min: float
    max: float
    count: int


@dataclass(frozen=True)
class Point:
    ts: dt.datetime
    value: float


def _bucket_start(dialect: str, size: int) -> ColumnElement[int]:
    """Start of the aligned bucket of `telemetry.ts`, in whole seconds since the epoch, exact, per backend.

    `size` is a validated int inlined as a literal: PostgreSQL must see the very same expression in SELECT and
    GROUP BY, which two bind parameters would not be. Times are >= 1970, so integer division floors.
    """
    if dialect == "postgresql":
        seconds = "floor(extract(epoch FROM telemetry.ts))::bigint"
    else:
        # SQLite keeps ts as 'YYYY-MM-DD HH:MM:SS.ffffff' (core.db.UTCDateTime). The first 19 characters are the
        # whole second; julianday() of a whole second is exact to its millisecond resolution and rounding the
        # product removes the float error, so a reading on a boundary never slips into the previous bucket.
        # (unixepoch() would need SQLite 3.38.)
        seconds = "CAST(round((julianday(substr(telemetry.ts, 1, 19)) - 2440587.5) * 86400) AS INTEGER)"
    return literal_column(f"({seconds} / {int(size)} * {int(size)})")


async def series(session: AsyncSession, device: Device, metric: str, window: TimeRange,
                 bucket_seconds: int) -> list[Bucket]:
    bucket = _bucket_start(session.get_bind().dialect.name, bucket_seconds).label("bucket")
    stmt = (
        select(bucket, func.avg(Telemetry.value), func.min(Telemetry.value), func.max(Telemetry.value),
               func.count())
        .where(Telemetry.device_id == device.id, Telemetry.metric == metric,
               Telemetry.ts >= window.start, Telemetry.ts < window.end)
        .group_by(literal_column("bucket"))
        .order_by(literal_column("bucket"))
    )
    rows = (await session.execute(stmt)).all()
    return [Bucket(start=EPOCH + dt.timedelta(seconds=int(b)), avg=float(avg), min=float(lo), max=float(hi),
                   count=int(n)) for b, avg, lo, hi, n in rows]


async def raw(session: AsyncSession, device: Device, metric: str, window: TimeRange,
              limit: int, *, newest: bool = False) -> tuple[list[Point], bool]:
    """The first `limit` readings of the range (the last ones with `newest`), oldest first, and whether more
    remain."""
    stmt = (
        select(Telemetry.ts, Telemetry.value)
        .where(Telemetry.device_id == device.id, Telemetry.metric == metric,
               Telemetry.ts >= window.start, Telemetry.ts < window.end)
        .order_by(Telemetry.ts.desc() if newest else Telemetry.ts)
        .limit(limit + 1)
    )
    rows = (await session.execute(stmt)).all()
    kept = list(rows[:limit])
    if newest:
        kept.reverse()
    return [Point(ts, value) for ts, value in kept], len(rows) > limit


async def device_metrics(session: AsyncSession, device: Device) -> Sequence[TelemetryLatest]:
    stmt = select(TelemetryLatest).where(TelemetryLatest.device_id == device.id).order_by(TelemetryLatest.metric)
    return (await session.scalars(stmt)).all()


@dataclass(frozen=True)
class Latest:
    device_uuid: str
    metric: str
    ts: dt.datetime
    value: float
    unit: str | None


async def latest(session: AsyncSession, device_uuids: Sequence[str],
                 metrics: Sequence[str]) -> tuple[list[Latest], list[str]]:
    """Latest values of many devices in one query; also the uuids that name no device.

    Devices LEFT JOIN latest values: a known device without readings still yields a row (all NULL), so unknown
    uuids are told apart from silent devices without a second query.
    """
    on = TelemetryLatest.device_id == Device.id
    if metrics:
        on = and_(on, TelemetryLatest.metric.in_(metrics))
    stmt = (
        select(Device.uuid, TelemetryLatest.metric, TelemetryLatest.ts, TelemetryLatest.value, TelemetryLatest.unit)
        .outerjoin(TelemetryLatest, on)
        .where(Device.uuid.in_(device_uuids))
        .order_by(Device.uuid, TelemetryLatest.metric)
    )
    found: set[str] = set()
    items: list[Latest] = []
    for uuid, metric, ts, value, unit in (await session.execute(stmt)).all():
        found.add(uuid)
        if metric is not None:
            items.append(Latest(uuid, metric, ts, value, unit))
    return items, [u for u in device_uuids if u not in found]
