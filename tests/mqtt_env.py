"""A private Mosquitto enforcing the test's cloud database (the `app` fixture) through the broker sync.

Shared by the broker, ingest, simulator and agent tests (registered in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from iotistic.broker.sync import BrokerSync
from iotistic.broker.testing import MqttProbe, PrivateMosquitto, until
from iotistic.cloud.models import MqttAccount, MqttAclRule
from iotistic.core.db import make_engine
from iotistic.core.security import mosquitto_password_hash
from iotistic.embedded_broker import EmbeddedBroker, start_embedded_broker


@dataclass
class Broker:
    mosquitto: PrivateMosquitto
    sync: BrokerSync | None = None  # None: a sync runs elsewhere (e.g. the command)
    probes: list[MqttProbe] = field(default_factory=list)

    def probe(self, username: str | None, password: str | None, **kwargs: Any) -> MqttProbe:
        probe = MqttProbe(self.mosquitto.port, username, password, **kwargs)
        self.probes.append(probe)
        return probe.start()

    async def connack(self, username: str | None, password: str | None, **kwargs: Any) -> MqttProbe:
        """A probe once the broker has answered its CONNECT (accepted or not)."""
        probe = self.probe(username, password, **kwargs)
        assert await until(lambda: probe.connack is not None), f"no CONNACK for {username}"
        return probe

    async def connect(self, username: str, password: str, *, within: float = 5.0, **kwargs: Any) -> MqttProbe:
        """Connect, retrying while the broker does not know the account yet; fails after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            probe = await self.connack(username, password, **kwargs)
            if probe.accepted:
                return probe
            probe.stop()
            if time.monotonic() >= deadline:
                raise AssertionError(f"{username} refused for {within} s: {probe.connack}")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running_broker(app: Any, mosquitto: PrivateMosquitto) -> AsyncIterator[Broker]:
    """`mosquitto` started with the app's MQTT accounts enforced through the broker sync; stopped afterwards."""
    engine = make_engine(app.state.ctx.settings.sqlalchemy_url)
    sync = BrokerSync(engine, mosquitto.target)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    env = Broker(mosquitto, sync)
    try:
        await sync.sync_once()  # as in production: the files exist before the broker starts
        mosquitto.start()
        task = asyncio.create_task(sync.run(stop))
        assert await until(lambda: sync.passes >= 2)
        yield env
    finally:
        for probe in env.probes:
            probe.stop()
        stop.set()
        if task is not None:
            await task
        await engine.dispose()
        mosquitto.close()


@pytest.fixture
async def broker(app: Any) -> AsyncIterator[Broker]:
    async with running_broker(app, PrivateMosquitto()) as env:
        yield env


Devices = Callable[[int], Awaitable[list[tuple[str, str]]]]


@pytest.fixture
async def devices(api: Any, owner: dict[str, str]) -> Devices:
    """Registers n devices through the API; returns their MQTT (username, password)."""
    key = (await api.provisioning_key(owner))["key"]

    async def register(n: int) -> list[tuple[str, str]]:
        made = []
        for _ in range(n):
            body, _api_key = await api.register(key)
            made.append((body["mqtt"]["username"], body["mqtt"]["password"]))
        return made

    return register


async def add_service_account(app: Any, username: str, password: str, *rules: tuple[str, str]) -> None:
    async with app.state.ctx.sessions() as session:
        account = MqttAccount(username=username, password_hash=mosquitto_password_hash(password), kind="service",
                              is_active=True)
        account.rules = [MqttAclRule(topic=topic, access=access) for topic, access in rules]
        session.add(account)
        await session.commit()


@pytest.fixture
async def embedded_broker(app: Any) -> AsyncIterator[EmbeddedBroker]:
    """The in-process broker of the embedded default, on a free port, with the app's accounts."""
    handle = await start_embedded_broker(app.state.ctx.read_sessions, "127.0.0.1", 0)
    try:
        yield handle
    finally:
        await asyncio.wait_for(handle.stop(), 15)
