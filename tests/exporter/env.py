"""Fixtures and helpers for running the exporter against a real cloud database (SQLite and PostgreSQL, the `app`
fixture) and a private Mosquitto running the project's configuration. Used by tests/exporter (conftest.py) and
by billing's usage tests (imported there)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from iotistic.broker.testing import PrivateMosquitto, project_config
from iotistic.core.db import make_engine
from iotistic.exporter.account import create_account
from iotistic.exporter.service import RunningExporter, serve
from iotistic.exporter.settings import ExporterSettings, load_exporter_settings
from tests.mqtt_env import Broker, running_broker

EXPORTER_USER = "exporter"


@pytest.fixture
async def sys_broker(app: Any, tmp_path: Path) -> AsyncIterator[Broker]:
    """The project's Mosquitto configuration with `$SYS` refreshed every second instead of every 10 (the only
    change), enforcing the app's MQTT accounts through the broker sync."""
    config = tmp_path / "mosquitto-sys1.conf"
    config.write_text(project_config().read_text() + "\nsys_interval 1\n")
    async with running_broker(app, PrivateMosquitto(config)) as env:
        yield env


@pytest.fixture
async def exporter_account(app: Any, sys_broker: Broker) -> tuple[str, str]:
    """The exporter's MQTT account, made by the exporter's own code and known to the broker."""
    engine = make_engine(app.state.ctx.settings.sqlalchemy_url)
    try:
        password = await create_account(engine, EXPORTER_USER)
    finally:
        await engine.dispose()
    (await sys_broker.connect(EXPORTER_USER, password)).stop()  # waits until the sync has told the broker
    return EXPORTER_USER, password


MakeSettings = Callable[..., ExporterSettings]


@pytest.fixture
def exporter_settings(app: Any) -> MakeSettings:
    """ExporterSettings for the app's database and licence; keyword arguments are environment names."""
    cloud = app.state.ctx.settings

    def make(**env: Any) -> ExporterSettings:
        values: dict[str, Any] = {
            "DATABASE_URL": cloud.sqlalchemy_url, "LICENSE_PUBLIC_KEY": cloud.license_public_key,
            "IOTISTIC_LICENSE_KEY": cloud.license_key, "IOTISTIC_DATA_DIR": str(cloud.data_dir),
            "EXPORTER_HOST": "127.0.0.1", "EXPORTER_PORT": 0,
            "EXPORTER_CACHE_SECONDS": 0,
        }
        values.update(env)
        return load_exporter_settings(**values)

    return make


Register = Callable[[int], Awaitable[list[dict[str, Any]]]]


@pytest.fixture
async def register_devices(api: Any, owner: dict[str, str]) -> Register:
    """Registers n devices through the API; returns their registration bodies (uuid, MQTT credentials...)."""
    key = (await api.provisioning_key(owner))["key"]

    async def register(n: int) -> list[dict[str, Any]]:
        bodies = []
        for _ in range(n):
            body, api_key = await api.register(key)
            bodies.append({**body, "deviceApiKey": api_key})
        return bodies

    return register


@asynccontextmanager
async def running_exporter(settings: ExporterSettings) -> AsyncIterator[RunningExporter]:
    """`serve` in the test's event loop until the block ends."""
    stop = asyncio.Event()
    ready: asyncio.Future[RunningExporter] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop, on_ready=ready.set_result))
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
