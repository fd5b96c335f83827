"""Run the billing database's Alembic migrations from code (`iotistic billing migrate`, `serve` and tests)."""

from __future__ import annotations

import asyncio

from alembic.config import Config

from iotistic.migrations import runner

SCRIPT_LOCATION = runner.HERE / "billing"


def alembic_config(url: str) -> Config:
    return runner.alembic_config(SCRIPT_LOCATION, url)


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate to `revision`. Must not run inside a running event loop (env.py starts its own)."""
    runner.upgrade(SCRIPT_LOCATION, url, revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)
