"""Day partitions of the `telemetry` table on PostgreSQL, and retention by plan.

Readings land in one table per UTC day (telemetry_pYYYYMMDD). Retention drops whole days: a DROP TABLE of an
expired partition is instant and leaves nothing to vacuum, where a DELETE of millions of rows would not be.
SQLite (the embedded default) has no partitions; there retention is a DELETE on the (device, metric, ts) key.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from iotistic.cloud.models import TELEMETRY_PARTITION_PREFIX, Telemetry
from iotistic.core.licensing import LicenseState
from iotistic.core.plans import FREE

log = logging.getLogger(__name__)

_NAME = re.compile(rf"^{TELEMETRY_PARTITION_PREFIX}(\d{{8}})$")


def partition_name(day: dt.date) -> str:
    return f"{TELEMETRY_PARTITION_PREFIX}{day:%Y%m%d}"


def partition_day(name: str) -> dt.date | None:
    """The day a partition holds, or None when the name is not one of ours."""
    match = _NAME.match(name)
    if match is None:
        return None
    try:
        return dt.datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        return None


def retention_days(license_state: LicenseState) -> int:
    """Days of readings the plan keeps (the licence's retentionDays; free mode keeps the least)."""
    raw: Any = license_state.features.get("retentionDays", license_state.limits.get("retentionDays"))
    try:
        days = int(raw)
    except (TypeError, ValueError):
        return FREE.retention_days
    return max(days, 1)


def oldest_kept_day(today: dt.date, days: int) -> dt.date:
    """With `days` of retention, today and the days-1 days before it are kept."""
    return today - dt.timedelta(days=days - 1)


def expired(partitions: Iterable[str], today: dt.date, days: int) -> list[str]:
    """The partitions wholly older than the retention window, oldest first."""
    first_kept = oldest_kept_day(today, days)
    found = [(day, name) for name in partitions if (day := partition_day(name)) is not None and day < first_kept]
    return [name for _, name in sorted(found)]


def _create_sql(day: dt.date) -> str:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    # Names and bounds come from a date, never from input: formatting them into DDL is safe.
    return (f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF telemetry "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')")


async def existing_partitions(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'telemetry'"
    ))
    return [row[0] for row in rows]


async def ensure_partitions(conn: AsyncConnection, days: Iterable[dt.date]) -> None:
    """Create the partitions of these days (PostgreSQL; a no-op on SQLite). Safe when several workers race."""
    if conn.dialect.name != "postgresql":
        return
    for day in sorted(set(days)):
        # Two workers creating the same day at once: one wins, the other sees "already exists" and moves on.
        try:
            async with conn.begin_nested():
                await conn.exec_driver_sql(_create_sql(day))
        except DBAPIError as exc:
            if "already exists" not in str(exc) and "duplicate key" not in str(exc):
                raise


async def apply_retention(conn: AsyncConnection, today: dt.date, days: int) -> int:
    """Remove readings older than the retention window; returns partitions dropped (PG) or rows deleted."""
    if conn.dialect.name == "postgresql":
        names = expired(await existing_partitions(conn), today, days)
        for name in names:
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")  # name matched _NAME: safe in DDL
            log.info("retention: dropped %s (keeping %d days)", name, days)
        return len(names)
    cutoff = dt.datetime.combine(oldest_kept_day(today, days), dt.time(), dt.UTC)
    result = await conn.execute(delete(Telemetry).where(Telemetry.ts < cutoff))
    return int(result.rowcount or 0)
