"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from iotistic.cloud.models import Base, managed_by_migrations
from iotistic.core.db import make_engine
from iotistic.twin import models as _twin_models  # noqa: F401  (its tables join Base.metadata)


def _diff(connection: Connection) -> list[object]:
    opts = {"compare_type": True, "include_object": managed_by_migrations}
    context = MigrationContext.configure(connection, opts=opts)
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            version = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        await engine.dispose()
    assert diff == []
    assert version == "0005"
