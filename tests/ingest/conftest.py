"""An ingest worker against the test's private Mosquitto and cloud database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from iotistic.core.db import make_engine
from iotistic.ingest.live import InProcessBus
from iotistic.ingest.service import IngestService
from tests.mqtt_env import Broker, add_service_account

INGEST_USER = "svc-ingest"
INGEST_PASSWORD = "ingest-password-0123456789"

StartIngest = Callable[..., Awaitable[IngestService]]


@pytest.fixture
async def ingest_account(app: Any, broker: Broker) -> tuple[str, str]:
    await add_service_account(app, INGEST_USER, INGEST_PASSWORD, ("iot/device/+/#", "read"))
    await broker.connect(INGEST_USER, INGEST_PASSWORD)  # the sync has made the broker know it
    return INGEST_USER, INGEST_PASSWORD


@pytest.fixture
async def start_ingest(app: Any, broker: Broker, ingest_account: tuple[str, str]) -> AsyncIterator[StartIngest]:
    """Starts ingest workers (stopped at the end); keyword arguments go to IngestService."""
    engine = make_engine(app.state.ctx.settings.sqlalchemy_url)
    settings = app.state.ctx.settings.model_copy(update={
        "mqtt_broker_url": f"mqtt://127.0.0.1:{broker.mosquitto.port}", "ingest_flush_ms": 50})
    started: list[IngestService] = []

    async def start(**kwargs: Any) -> IngestService:
        kwargs.setdefault("client_id", "ingest-test-1")
        live = kwargs.pop("live", None) or InProcessBus()
        service = IngestService(kwargs.pop("settings", None) or settings, engine, live, username=ingest_account[0],
                                password=ingest_account[1], **kwargs)
        await service.start()
        await service.wait_connected(5)
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            await service.stop()
        await engine.dispose()
