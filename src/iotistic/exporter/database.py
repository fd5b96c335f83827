"""What the instance's database says about usage: devices (total and online) and storage used.

Devices online are counted by the cloud API's own filter (`devices.list_devices` with `online=True`), so the
exporter and the device list can never disagree on who is online. Storage is measured the way each backend
can: PostgreSQL reports relation sizes (cheap: file sizes, no scan); SQLite reports its file size and, through
the `dbstat` virtual table, the pages of the telemetry table and its indexes (a walk over those pages, which is
why scrapes are cached).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from iotistic.cloud.models import Device, Telemetry
from iotistic.cloud.services import devices

log = logging.getLogger(__name__)

TELEMETRY_TABLE = Telemetry.__tablename__


@dataclass(frozen=True)
class DatabaseUsage:
    devices_total: int
    devices_online: int
    database_bytes: int
    telemetry_bytes: int | None  # None: this SQLite build has no dbstat (not guessed)


async def count_devices(session: AsyncSession, offline_after_seconds: int) -> tuple[int, int]:
    """(every registered device, the devices online by the API's rule). Disabled devices count: the licence's
    device limit counts them too."""
    total = int(await session.scalar(select(func.count()).select_from(Device)) or 0)
    _rows, online = await devices.list_devices(session, devices.DeviceFilter(online=True), limit=0, offset=0,
                                               offline_after_seconds=offline_after_seconds)
    return total, online


async def postgresql_storage(conn: AsyncConnection) -> tuple[int, int]:
    """(the database's size, the telemetry table's size with every partition, index and TOAST table)."""
    database = await conn.scalar(text("SELECT pg_database_size(current_database())"))
    # pg_partition_tree lists the parent and every partition (a table that is not partitioned lists itself).
    telemetry = await conn.scalar(text(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(CAST(:t AS regclass))"
    ), {"t": TELEMETRY_TABLE})
    return int(database or 0), int(telemetry or 0)


async def sqlite_storage(conn: AsyncConnection) -> tuple[int, int | None]:
    """(the database file plus its write-ahead log, the telemetry table's pages and its indexes' via dbstat)."""
    rows = (await conn.execute(text("PRAGMA database_list"))).all()
    path = next((row[2] for row in rows if row[1] == "main"), "")
    if path:
        size = await asyncio.to_thread(_files_size, path, path + "-wal")
    else:  # an in-memory database: its pages are all it has
        page_size = int(await conn.scalar(text("PRAGMA page_size")) or 0)
        size = page_size * int(await conn.scalar(text("PRAGMA page_count")) or 0)
    try:
        # dbstat(schema, 1): one row per table or index, pages already summed.
        telemetry = await conn.scalar(text(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat('main', 1) "
            "WHERE name IN (SELECT name FROM sqlite_schema WHERE tbl_name = :t)"
        ), {"t": TELEMETRY_TABLE})
    except OperationalError as exc:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
        log.warning("telemetry size unavailable on this SQLite build: %s", exc.orig)
        return size, None
    return size, int(telemetry or 0)


def _files_size(*paths: str) -> int:
    size = 0
    for path in paths:
        try:
            size += os.stat(path).st_size
        except FileNotFoundError:  # no write-ahead log right now
            pass
    return size


async def read_usage(session: AsyncSession, offline_after_seconds: int) -> DatabaseUsage:
    total, online = await count_devices(session, offline_after_seconds)
    conn = await session.connection()
    telemetry_bytes: int | None
    if conn.dialect.name == "postgresql":
        database_bytes, telemetry_bytes = await postgresql_storage(conn)
    else:
        database_bytes, telemetry_bytes = await sqlite_storage(conn)
    return DatabaseUsage(total, online, database_bytes, telemetry_bytes)
