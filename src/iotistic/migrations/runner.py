"""What the cloud and billing databases' migrations share: running Alembic from code, and the async environment
their env.py scripts run in (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from iotistic.core.db import make_engine

HERE = Path(__file__).parent


def alembic_config(script_location: Path, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # ConfigParser treats % as interpolation; URLs may contain percent-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(script_location: Path, url: str, revision: str = "head") -> None:
    """Migrate to `revision`. Must not run inside a running event loop (env.py starts its own)."""
    command.upgrade(alembic_config(script_location, url), revision)


def run_environment(target_metadata: MetaData, include_object: Callable[..., bool] | None = None) -> None:
    """The body of an env.py: offline (SQL script) or online through the project's async engine."""
    config = context.config
    options: dict[str, Any] = {"include_object": include_object} if include_object is not None else {}

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things in place
            compare_type=True,
            **options,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_online() -> None:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_online())
