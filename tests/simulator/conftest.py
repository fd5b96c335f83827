"""Simulator fixtures: devices provisioned through the real API (ASGI transport), a real Mosquitto made to enforce
the same database by `iotistic broker sync --once`, and a subscriber logged in with a service account."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from iotistic.broker.testing import MqttProbe, PrivateMosquitto, until
from iotistic.simulator.provision import SimulatedDevice, provision_devices
from tests.conftest import Api

API_URL = "http://testserver"  # the ASGI client's base URL
READER = "sim-reader"
READER_PASSWORD = "reader-password-0123456789"

Provision = Callable[..., Awaitable[list[SimulatedDevice]]]


@pytest.fixture
async def provisioning_key(api: Api, owner: dict[str, str]) -> dict[str, Any]:
    return await api.provisioning_key(owner)


@pytest.fixture
def provision(api: Api, provisioning_key: dict[str, Any], tmp_path: Path) -> Provision:
    """`await provision(n, **kwargs)`: n devices registered through the API, saved in tmp_path/devices.json."""

    async def run(count: int, **kwargs: Any) -> list[SimulatedDevice]:
        kwargs.setdefault("state_file", tmp_path / "devices.json")
        return await provision_devices(API_URL, count, kwargs.pop("key", provisioning_key["key"]),
                                       client=api.client, **kwargs)

    return run


async def add_reader(api: Api, owner: dict[str, str]) -> None:
    """A service account that may read every device's topics (as ingest would), created through the API."""
    r = await api.client.post("/api/v1/mqtt/accounts", headers=owner, json={
        "username": READER, "kind": "service", "password": READER_PASSWORD,
        "rules": [{"topic": "iot/device/+/#", "access": "read"}]})
    assert r.status_code == 201, r.text


def broker_sync_once(app: Any, mosquitto: PrivateMosquitto, data_dir: Path) -> str:
    """`iotistic broker sync --once` against the app's database, writing the private Mosquitto's files."""
    target = mosquitto.target
    args = [sys.executable, "-m", "iotistic.cli", "broker", "sync", "--once",
            "--password-file", str(target.password_file), "--acl-file", str(target.acl_file),
            "--pid-file", str(target.pid_file)]
    if target.group is None:
        args += ["--group", ""]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "MOSQUITTO_", "DATABASE_URL"))}
    env.update(DATABASE_URL=app.state.ctx.settings.sqlalchemy_url, IOTISTIC_DATA_DIR=str(data_dir))
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def mosquitto() -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto()
    try:
        yield broker
    finally:
        broker.close()


class Subscriber:
    """A paho probe subscribed to every device's topics with the reader service account."""

    def __init__(self, port: int, *, v5: bool) -> None:
        self.probe = MqttProbe(port, READER, READER_PASSWORD, v5=v5)

    async def start(self, topic: str = "iot/device/+/#") -> Subscriber:
        self.probe.start()
        assert await until(lambda: self.probe.connack is not None), "no CONNACK for the reader"
        assert self.probe.accepted, self.probe.connack
        mid = self.probe.subscribe(topic, qos=1)
        assert await until(lambda: mid in self.probe.subacks)
        return self

    def received(self, topic: str | None = None) -> list[tuple[str, bytes]]:
        return self.probe.received(topic)

    def stop(self) -> None:
        self.probe.stop()


@pytest.fixture
async def subscribers() -> AsyncIterator[Callable[..., Awaitable[Subscriber]]]:
    made: list[Subscriber] = []

    async def make(port: int, *, v5: bool = True, topic: str = "iot/device/+/#") -> Subscriber:
        subscriber = Subscriber(port, v5=v5)
        made.append(subscriber)
        return await subscriber.start(topic)

    yield make
    for subscriber in made:
        await asyncio.to_thread(subscriber.stop)
