"""Alembic environment for the billing database (async engine, SQLite and PostgreSQL)."""

from __future__ import annotations

from iotistic.billing.models import Base
from iotistic.migrations.runner import run_environment

run_environment(Base.metadata)
