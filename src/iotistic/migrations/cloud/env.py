"""Alembic environment for the cloud API database (async engine, SQLite and PostgreSQL)."""

from __future__ import annotations

from iotistic.cloud.models import Base, managed_by_migrations
from iotistic.migrations.runner import run_environment
from iotistic.twin import models as _twin_models  # noqa: F401  (its tables join Base.metadata)

run_environment(Base.metadata, include_object=managed_by_migrations)
