"""Day partitions and retention: the pure rules, then the real thing on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, insert, select

from iotistic.cloud.models import Device, Telemetry
from iotistic.core.licensing import LicenseState, free_mode
from iotistic.core.plans import FREE, PROFESSIONAL, STARTER
from iotistic.ingest.partitions import (
    apply_retention,
    ensure_partitions,
    existing_partitions,
    expired,
    oldest_kept_day,
    partition_day,
    partition_name,
    retention_days,
)

TODAY = dt.date(2026, 11, 27)


def _licensed(plan: Any) -> LicenseState:
    return LicenseState(mode="licensed", plan=plan.name, features=plan.feature_claims(), limits=plan.limit_claims())


def test_retention_follows_the_plan() -> None:
    assert retention_days(_licensed(STARTER)) == 30
    assert retention_days(_licensed(PROFESSIONAL)) == 90
    assert retention_days(free_mode("no licence")) == FREE.retention_days
    broken = LicenseState(mode="licensed", plan="x", features={"retentionDays": "lots"}, limits={})
    assert retention_days(broken) == FREE.retention_days


def test_names_and_days() -> None:
    assert partition_name(TODAY) == "telemetry_p20261127"
    assert partition_day("telemetry_p20261127") == TODAY
    assert partition_day("telemetry_p20261399") is None
    assert partition_day("telemetry_latest") is None
    assert partition_day("telemetry_p20261127; DROP TABLE devices") is None


def test_only_whole_days_older_than_the_window_expire() -> None:
    assert oldest_kept_day(TODAY, 30) == dt.date(2026, 10, 29)
    names = [partition_name(TODAY - dt.timedelta(days=n)) for n in range(35)] + ["telemetry_latest", "other"]
    assert expired(names, TODAY, 30) == [partition_name(TODAY - dt.timedelta(days=n)) for n in range(34, 29, -1)]
    assert expired(names, TODAY, 365) == []


async def test_retention_drops_old_days_and_keeps_the_rest(app: Any) -> None:
    engine = app.state.ctx.engine
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=n) for n in (0, 29, 30, 31, 45)]
    async with engine.begin() as conn:
        await ensure_partitions(conn, days)
        device_id = (await conn.execute(insert(Device).returning(Device.id), [
            {"uuid": "retention-device", "name": "d", "device_type": "t", "status": "active"}])).scalar_one()
        await conn.execute(insert(Telemetry), [
            {"device_id": device_id, "metric": "t", "value": float(i),
             "ts": dt.datetime.combine(day, dt.time(12), dt.UTC)} for i, day in enumerate(days)])
    async with engine.begin() as conn:
        removed = await apply_retention(conn, today, 30)
    async with engine.connect() as conn:
        left = sorted((await conn.scalars(select(Telemetry.value))).all())
        if conn.dialect.name == "postgresql":
            partitions = set(await existing_partitions(conn))
            assert {partition_name(d) for d in days[:2]} <= partitions
            assert not {partition_name(d) for d in days[2:]} & partitions
            assert removed == 3
        else:
            assert removed == 3  # rows on SQLite
        assert await conn.scalar(select(func.count()).select_from(Telemetry)) == 2
    assert left == [0.0, 1.0]


async def test_making_a_partition_twice_is_harmless(app: Any) -> None:
    engine = app.state.ctx.engine
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)
    async with engine.begin() as conn:
        await ensure_partitions(conn, [day])
        await ensure_partitions(conn, [day, day])
