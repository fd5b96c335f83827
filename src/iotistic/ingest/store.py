"""Writes one batch of decoded messages to the database.

Readings: on PostgreSQL a binary COPY straight into the partitioned table, inside a savepoint. QoS 1 is
at-least-once, so a batch may repeat readings already stored (a redelivery after a crash or a lost ack); the
primary key then refuses the COPY, and the batch is written again with INSERT ... ON CONFLICT DO NOTHING.
Duplicates are rare, so the common case pays only for the COPY. On SQLite: INSERT OR IGNORE.

The rest (agent metrics, state reports, log lines, online/offline, last contact) is small and goes through
the same services the HTTP API uses, in a second transaction. A batch is acknowledged to the broker only
after both committed; a failed batch is retried whole, which is safe because readings are idempotent and the
second transaction is all-or-nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from iotistic.cloud.models import Device, DeviceMetric, Telemetry, TelemetryLatest
from iotistic.cloud.services import reports
from iotistic.core.schemas.reports import DeviceReport, LogLine, Metrics
from iotistic.ingest.partitions import ensure_partitions

_devices_any = Device.__table__
assert isinstance(_devices_any, Table)
_devices: Table = _devices_any

# (device_id, metric, ts, value)
Row = tuple[int, str, dt.datetime, float]


@dataclass
class Batch:
    """What arrived since the last write. Later messages of a device overwrite earlier ones where one value is kept."""

    readings: list[Row] = field(default_factory=list)
    latest: dict[tuple[int, str], tuple[dt.datetime, float, str | None]] = field(default_factory=dict)
    metrics: list[tuple[int, Metrics, dt.datetime]] = field(default_factory=list)
    states: list[tuple[int, DeviceReport]] = field(default_factory=list)
    logs: list[tuple[int, list[LogLine]]] = field(default_factory=list)
    statuses: dict[int, tuple[bool, dt.datetime]] = field(default_factory=dict)
    seen: dict[int, dt.datetime] = field(default_factory=dict)
    messages: int = 0

    def add_reading(self, device_id: int, metric: str, ts: dt.datetime, value: float, unit: str | None) -> None:
        self.readings.append((device_id, metric, ts, value))
        key = (device_id, metric)
        known = self.latest.get(key)
        if known is None or ts >= known[0]:
            self.latest[key] = (ts, value, unit)

    @property
    def has_other(self) -> bool:
        return bool(self.metrics or self.states or self.logs or self.statuses or self.seen)


_PG_INSERT_IGNORE = (
    "INSERT INTO telemetry (device_id, metric, ts, value) "
    "SELECT * FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::float8[]) "
    "ON CONFLICT DO NOTHING"
)
# Join on devices: a device deleted while its readings were in flight must not fail the batch (foreign key).
_PG_UPSERT_LATEST = (
    "INSERT INTO telemetry_latest (device_id, metric, ts, value, unit) "
    "SELECT u.* FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[]) "
    "AS u(device_id, metric, ts, value, unit) JOIN devices d ON d.id = u.device_id "
    "ON CONFLICT (device_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value, unit = excluded.unit "
    "WHERE excluded.ts >= telemetry_latest.ts"
)


class TelemetryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.on_postgres = engine.dialect.name == "postgresql"
        self._known_days: set[dt.date] = set()
        self.copy_fallbacks = 0  # batches that held a duplicate and took the ON CONFLICT path

    async def write(self, batch: Batch) -> None:
        if batch.readings:
            await self._ensure_days(batch.readings)
            async with self.engine.begin() as conn:
                if self.on_postgres:
                    await self._write_pg(conn, batch)
                else:
                    await self._write_sqlite(conn, batch)
        if batch.has_other:
            async with self.sessions.begin() as session:
                await self._write_other(session, batch)

    async def _ensure_days(self, rows: list[Row]) -> None:
        if not self.on_postgres:
            return
        days = {row[2].date() for row in rows} - self._known_days
        if not days:
            return
        async with self.engine.begin() as conn:
            await ensure_partitions(conn, days)
        self._known_days |= days

    def forget_partitions(self) -> None:
        """Retention dropped some: make the next write check again."""
        self._known_days.clear()

    async def _write_pg(self, conn: AsyncConnection, batch: Batch) -> None:
        await conn.exec_driver_sql("SELECT 1")  # opens the transaction the driver connection then works in
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection
        try:
            async with pg.transaction():  # a savepoint inside the open transaction
                await pg.copy_records_to_table("telemetry", records=batch.readings,
                                               columns=("device_id", "metric", "ts", "value"))
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != "23505":  # unique_violation: a redelivered reading
                raise
            self.copy_fallbacks += 1
            ids, metrics, stamps, values = (list(col) for col in zip(*batch.readings, strict=True))
            await pg.execute(_PG_INSERT_IGNORE, ids, metrics, stamps, values)
        if batch.latest:
            keys = list(batch.latest)
            await pg.execute(
                _PG_UPSERT_LATEST,
                [k[0] for k in keys], [k[1] for k in keys], [batch.latest[k][0] for k in keys],
                [batch.latest[k][1] for k in keys], [batch.latest[k][2] for k in keys],
            )

    async def _write_sqlite(self, conn: AsyncConnection, batch: Batch) -> None:
        await conn.execute(
            insert(Telemetry).prefix_with("OR IGNORE"),
            [{"device_id": d, "metric": m, "ts": t, "value": v} for d, m, t, v in batch.readings],
        )
        if batch.latest:
            stmt = sqlite.insert(TelemetryLatest)
            stmt = stmt.on_conflict_do_update(
                index_elements=["device_id", "metric"],
                set_={"ts": stmt.excluded.ts, "value": stmt.excluded.value, "unit": stmt.excluded.unit},
                where=stmt.excluded.ts >= TelemetryLatest.ts,
            )
            existing = set(await conn.scalars(select(Device.id).where(
                Device.id.in_({k[0] for k in batch.latest}))))
            rows = [{"device_id": d, "metric": m, "ts": t, "value": v, "unit": u}
                    for (d, m), (t, v, u) in batch.latest.items() if d in existing]
            if rows:
                await conn.execute(stmt, rows)

    async def _write_other(self, session: AsyncSession, batch: Batch) -> None:
        ids = set(batch.seen) | set(batch.statuses) | {d for d, *_ in batch.metrics} | \
            {d for d, _ in batch.states} | {d for d, _ in batch.logs}
        devices = {d.id: d for d in await session.scalars(select(Device).where(Device.id.in_(ids)))}
        for device_id, metrics, received in batch.metrics:
            if device_id in devices:
                m = metrics
                session.add(DeviceMetric(
                    device_id=device_id, recorded_at=m.recorded_at or received, cpu=m.cpu, memory=m.memory,
                    memory_total=m.memory_total, storage=m.storage, storage_total=m.storage_total,
                    temperature=m.temperature, uptime=m.uptime))
        for device_id, report in batch.states:
            if device_id in devices:
                # metrics inside a state report arrive on their own topic over MQTT; keep them if sent here too
                await reports.save_report(session, devices[device_id], report)
        for device_id, lines in batch.logs:
            if device_id in devices:
                await reports.save_logs(session, devices[device_id], lines)
        for device_id, (online, at) in batch.statuses.items():
            device = devices.get(device_id)
            # A retained status re-delivered to a new subscription repeats what we know: keep its first time.
            if device is not None and device.connection_state != ("online" if online else "offline"):
                device.connection_state = "online" if online else "offline"
                device.connection_changed_at = at
        await session.flush()
        seen = [{"device_id": i, "seen": t} for i, t in batch.seen.items() if i in devices]
        if seen:
            conn = await session.connection()
            await conn.execute(
                update(_devices).where(_devices.c.id == bindparam("device_id"))
                .where((_devices.c.last_seen_at.is_(None)) | (_devices.c.last_seen_at < bindparam("seen")))
                .values(last_seen_at=bindparam("seen")),
                seen,
            )

