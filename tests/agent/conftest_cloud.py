"""The real cloud API for agent tests: uvicorn on a free loopback port, in a background thread.

Load it with `pytest_plugins = ["tests.agent.conftest_cloud"]`. Each test gets its own copy of a migrated SQLite
database (migrated once per session, with an owner user already in it), a `CloudServer` that can be stopped and
started again on the same port (an outage), a record of every call devices made to it, and `CloudAdmin`, a few
user-side steps over HTTP (provisioning keys, deploys, reading what the cloud received).

The agent itself never imports the cloud; only these tests do, to talk to a real server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from iotistic.agent.identity import provision
from iotistic.agent.settings import AgentSettings, load_agent_settings
from iotistic.agent.store import AgentStore, Identity
from iotistic.cloud.app import create_app
from iotistic.cloud.migrate import upgrade
from iotistic.cloud.models import Role
from iotistic.cloud.services import users
from iotistic.core import security
from iotistic.core.db import make_engine, make_sessionmaker
from iotistic.core.settings import CloudSettings
from tests.conftest import PASSWORD, LicenseKeys, make_settings

OWNER_EMAIL = "owner@example.com"


@dataclass
class Call:
    """One request a device made to the cloud, as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None

    def json(self) -> Any:
        return json.loads(self.body)

    def ndjson(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


class Recorder:
    """ASGI middleware: records the device routes' requests and response statuses, in arrival order."""

    def __init__(self, app: Any, calls: list[Call]) -> None:
        self.app = app
        self.calls = calls

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1/device/"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        recorded: list[bool] = []

        def record(status: int | None) -> None:
            # Recorded before the reply leaves, so a client that got its reply always finds its call here.
            if not recorded:
                recorded.append(True)
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                self.calls.append(Call(scope["method"], scope["path"], headers, b"".join(chunks), status))

        async def recv() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def snd(message: Any) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])
            await send(message)

        try:
            await self.app(scope, recv, snd)
        finally:
            record(None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CloudServer:
    """The cloud API served for real; `stop()` and `start()` again on the same port simulate an outage."""

    def __init__(self, settings: CloudSettings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.calls: list[Call] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout: float = 15.0) -> None:
        assert self._server is None, "already running"
        app = Recorder(create_app(self.settings), self.calls)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"cloud-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the cloud API did not start on port {self.port}")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(15)
        assert not self._thread.is_alive(), "the cloud API did not stop"
        self._server = self._thread = None

    def device_calls(self, method: str, suffix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(suffix)]


class CloudAdmin:
    """What an owner does in the dashboard, over the real HTTP API."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def _ok(self, method: str, url: str, expect: int = 200, **kwargs: Any) -> Any:
        r = await self.client.request(method, url, **kwargs)
        assert r.status_code == expect, f"{method} {url}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    async def provisioning_key(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._ok("POST", "/api/v1/provisioning-keys", 201, json=body)
        return result

    async def revoke_provisioning_key(self, key_id: Any) -> None:
        await self._ok("DELETE", f"/api/v1/provisioning-keys/{key_id}", 204)

    async def slots_used(self, key_id: Any) -> int:
        keys = await self._ok("GET", "/api/v1/provisioning-keys")
        (key,) = [k for k in keys if k["id"] == key_id]
        return int(key["devicesRegistered"])

    async def devices(self) -> list[dict[str, Any]]:
        page = await self._ok("GET", "/api/v1/devices", params={"limit": 500})
        return list(page["items"])

    async def device(self, uuid: str) -> dict[str, Any] | None:
        r = await self.client.get(f"/api/v1/devices/{uuid}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def set_status(self, uuid: str, status: str) -> None:
        await self._ok("PATCH", f"/api/v1/devices/{uuid}", json={"status": status})

    async def delete_device(self, uuid: str) -> None:
        await self._ok("DELETE", f"/api/v1/devices/{uuid}", 204)

    async def deploy(self, uuid: str, target: dict[str, Any]) -> int:
        await self._ok("PUT", f"/api/v1/devices/{uuid}/target-state", json=target)
        out = await self._ok("POST", f"/api/v1/devices/{uuid}/deploy")
        return int(out["version"])

    async def current_state(self, uuid: str) -> dict[str, Any] | None:
        out = await self._ok("GET", f"/api/v1/devices/{uuid}/current-state")
        return out["state"]

    async def logs(self, uuid: str) -> list[dict[str, Any]]:
        return list(await self._ok("GET", f"/api/v1/devices/{uuid}/logs", params={"limit": 5000}))

    async def metrics(self, uuid: str) -> list[dict[str, Any]]:
        return list(await self._ok("GET", f"/api/v1/devices/{uuid}/metrics"))

    async def audit(self, action: str) -> list[dict[str, Any]]:
        return list(await self._ok("GET", "/api/v1/audit", params={"action": action, "limit": 1000}))


# --- fixtures --------------------------------------------------------------------------------------------------
def _run_in_thread(coro: Any) -> None:
    """Run a coroutine to completion on its own loop in another thread (the test's loop may be running)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def cloud_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated cloud database with one owner, copied for every test (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("cloud-template") / "cloud.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)

    async def create_owner() -> None:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                await users.create_user(session, email=OWNER_EMAIL, password=PASSWORD, role=Role.owner)
                await session.commit()
        finally:
            await engine.dispose()

    # The same cheapest Argon2id cost the test cloud servers use (make_settings sets it for them).
    security.configure_password_hashing(time_cost=1, memory_kib=64, parallelism=1)
    _run_in_thread(create_owner())
    return path


@pytest.fixture
def cloud(cloud_template_db: Path, tmp_path: Path, license_keys: LicenseKeys) -> Iterator[CloudServer]:
    """A running cloud API on its own fresh database."""
    data = tmp_path / "cloud"
    data.mkdir()
    db = data / "cloud.db"
    shutil.copy(cloud_template_db, db)
    server = CloudServer(make_settings(f"sqlite+aiosqlite:///{db}", data, license_keys), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def admin(cloud: CloudServer) -> AsyncIterator[CloudAdmin]:
    async with httpx.AsyncClient(base_url=cloud.url, timeout=15) as client:
        r = await client.post("/api/v1/auth/login", json={"email": OWNER_EMAIL, "password": PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield CloudAdmin(client)


@dataclass
class AgentEnv:
    """Builds agent settings against the test cloud, with fast timings."""

    cloud: CloudServer
    data_dir: Path
    defaults: dict[str, Any] = field(default_factory=dict)

    def settings(self, **env: Any) -> AgentSettings:
        values: dict[str, Any] = {
            "CLOUD_API_ENDPOINT": self.cloud.url,
            "AGENT_DATA_DIR": str(self.data_dir),
            "DEVICE_NAME": "test-device",
            "DEVICE_TYPE": "raspberrypi4",
            "POLL_INTERVAL_SECONDS": 1,
            "POLL_JITTER": 0.1,
            "BACKOFF_BASE_SECONDS": 0.05,
            "BACKOFF_MAX_SECONDS": 0.4,
            "REPORT_THROTTLE_SECONDS": 0,
            "METRICS_INTERVAL_SECONDS": 3600,
            "HTTP_TIMEOUT_SECONDS": 3,
            # The test cloud hands out its default broker URL (127.0.0.1:1883), where another broker may answer
            # (the machine's own Mosquitto): reports must reach this cloud over HTTP. test_mqtt.py turns MQTT on
            # with a broker of its own.
            "MQTT_ENABLED": False,
            **self.defaults,
            **env,
        }
        return load_agent_settings(**values)


@pytest.fixture
def agent_env(cloud: CloudServer, tmp_path: Path) -> AgentEnv:
    return AgentEnv(cloud, tmp_path / "agent")


@dataclass
class Device:
    """A provisioned agent's pieces: its settings, open store and identity."""

    settings: AgentSettings
    store: AgentStore
    identity: Identity
    key: dict[str, Any]


@pytest.fixture
async def device(admin: CloudAdmin, agent_env: AgentEnv) -> AsyncIterator[Device]:
    """An agent that completed provisioning against the test cloud."""
    key = await admin.provisioning_key()
    settings = agent_env.settings(PROVISIONING_KEY=key["key"])
    store = AgentStore(settings.store_path)
    identity = await provision(store, settings)
    yield Device(settings, store, identity, key)
    store.close()
