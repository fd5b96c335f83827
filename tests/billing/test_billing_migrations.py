"""The billing migrations build exactly the schema the models describe, on both backends, and undo cleanly."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from iotistic.billing.migrate import alembic_config, upgrade_async
from iotistic.billing.models import Base
from iotistic.core.db import make_engine
from tests.conftest import _pg_admin, _pg_url


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _schema(url: str) -> tuple[list[object], set[str], str | None]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            version = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    finally:
        await engine.dispose()
    return diff, tables, version


async def test_migrated_schema_matches_models(billing_db_url: str) -> None:
    diff, tables, version = await _schema(billing_db_url)
    assert diff == []
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    head = ScriptDirectory.from_config(alembic_config(billing_db_url)).get_current_head()
    assert version == head


async def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    name = f"iotistic_billing_mig_{secrets.token_hex(4)}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        for url in (f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", _pg_url(name)):
            await upgrade_async(url)
            await asyncio.to_thread(command.downgrade, alembic_config(url), "base")
            _, tables, version = await _schema(url)
            assert tables == {"alembic_version"} and version is None, url
            await upgrade_async(url)
            diff, _, _ = await _schema(url)
            assert diff == [], url
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
