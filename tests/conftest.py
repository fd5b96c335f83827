"""Test fixtures: the cloud API on a real SQLite file and a real PostgreSQL database.

Every API test runs twice, once per backend (`db_url` is parametrised). Each backend's database is migrated
once per session with the project's own Alembic migrations; tables are emptied after every test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from iotistic.cloud.app import create_app
from iotistic.cloud.migrate import upgrade
from iotistic.cloud.models import Base, Role
from iotistic.cloud.services import users
from iotistic.core.licensing import generate_keypair, issue_license
from iotistic.core.settings import CloudSettings, load_cloud_settings

# A real Docker engine for the agent's tests and tests/e2e (one per session, shared by both).
pytest_plugins = ["tests.docker_engine", "tests.mqtt_env"]

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct-horse-battery-staple"


@dataclass(frozen=True)
class LicenseKeys:
    private_pem: str
    public_pem: str

    def token(self, plan: str = "enterprise", days: int = 30, **kwargs: Any) -> str:
        return issue_license(self.private_pem, customer_id="cust_test", plan=plan, days=days, **kwargs)


@pytest.fixture(scope="session")
def license_keys() -> LicenseKeys:
    private_pem, public_pem = generate_keypair()
    return LicenseKeys(private_pem, public_pem)


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}".replace("postgresql://", "postgresql+asyncpg://", 1)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    name = f"iotistic_test_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    upgrade(url)
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "iotistic.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def make_settings(db_url: str, data_dir: Path, license_keys: LicenseKeys, **env: Any) -> CloudSettings:
    values: dict[str, Any] = {
        "DATABASE_URL": db_url,
        "JWT_SECRET": "test-secret-" + "x" * 40,
        "IOTISTIC_DATA_DIR": str(data_dir),
        "LICENSE_PUBLIC_KEY": license_keys.public_pem,
        "IOTISTIC_LICENSE_KEY": license_keys.token("enterprise"),
        "METRICS_TOKEN": "metrics-token-0123456789",
        # The API tests log in a lot: real Argon2id at its smallest cost (production cost: tests/core).
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_KIB": 64,
        "ARGON2_PARALLELISM": 1,
    }
    values.update(env)
    return load_cloud_settings(**values)


async def _empty_tables(app: Any) -> None:
    engine = app.state.ctx.engine
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))
    await engine.dispose()


@pytest.fixture
def settings_env() -> dict[str, Any]:
    """Override in a test module (or parametrize indirectly) to change the app's environment."""
    return {}


@pytest.fixture
async def app(db_url: str, tmp_path: Path, license_keys: LicenseKeys, settings_env: dict[str, Any]
              ) -> AsyncIterator[Any]:
    application = create_app(make_settings(db_url, tmp_path, license_keys, **settings_env))
    # Run the app's lifespan as a server would: presence flushing and, on PostgreSQL, the change listener.
    async with application.router.lifespan_context(application):
        listener = application.state.ctx.device_listener
        if listener is not None:
            await asyncio.wait_for(listener.connected.wait(), 10)
        yield application
    await _empty_tables(application)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class Api:
    """Small helpers over the HTTP API, so tests read as the steps a user takes."""

    def __init__(self, client: httpx.AsyncClient, app: Any) -> None:
        self.client = client
        self.app = app

    async def create_user(self, email: str, role: Role = Role.owner, password: str = PASSWORD) -> None:
        async with self.app.state.ctx.sessions() as session:
            await users.create_user(session, email=email, password=password, role=role)
            await session.commit()

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        r = await self.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return r.json()

    async def headers_for(self, role: Role) -> dict[str, str]:
        email = f"{role.value}-{uuid.uuid4().hex[:8]}@example.com"
        await self.create_user(email, role)
        tokens = await self.login(email)
        return {"Authorization": f"Bearer {tokens['access_token']}"}

    async def provisioning_key(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        r = await self.client.post("/api/v1/provisioning-keys", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()

    async def register(self, key: str, device_uuid: str | None = None, **extra: Any) -> tuple[dict[str, Any], str]:
        """Registers a device; returns (response body, device API key)."""
        device_uuid = device_uuid or uuid.uuid4().hex
        api_key = secrets.token_urlsafe(32)
        body = {"uuid": device_uuid, "deviceName": f"dev-{device_uuid[:6]}", "deviceType": "raspberrypi4",
                "deviceApiKey": api_key, **extra}
        r = await self.client.post("/api/v1/device/register", json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 201, r.text
        return r.json(), api_key


@pytest.fixture
async def api(client: httpx.AsyncClient, app: Any) -> Api:
    return Api(client, app)


@pytest.fixture
async def owner(api: Api) -> dict[str, str]:
    return await api.headers_for(Role.owner)
