"""Pieces the benchmark scripts share (run them from the repository root: `python benchmarks/<name>.py`)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.engine import make_url


@contextlib.asynccontextmanager
async def fresh_database(server_url: str | None, workdir: Path) -> AsyncIterator[str]:
    """A throwaway database: on the PostgreSQL server at `server_url` (dropped afterwards), else SQLite in workdir.
    Yields its async SQLAlchemy URL, not migrated."""
    if server_url is None:
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        return
    import asyncpg

    name = f"iotistic_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(server_url).set(drivername="postgresql+asyncpg", database=name).render_as_string(False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
