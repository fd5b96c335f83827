"""Billing fixtures, shared by every billing test (core, Stripe, usage, deployer).

- `billing_db_url`: a migrated billing database, once SQLite and once PostgreSQL (a database of its own per test
  session on the server at 127.0.0.1:5432); tables are emptied after each test that used the app.
- `billing_settings` / `billing_settings_env`: settings with a generated RSA key pair (`license_keys`, from
  tests/conftest.py); override `billing_settings_env` in a module to change the environment.
- `billing_app`, `billing_client` (httpx over ASGI), `billing_api` (signup/login helpers), `billing_sessions`.
- `RecordingDeployer`: an in-memory `Deployer` (our own interface) that records calls and fails on demand.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.billing.app import create_app
from iotistic.billing.deploy.spec import InstanceSpec
from iotistic.billing.migrate import upgrade
from iotistic.billing.models import Base
from iotistic.billing.settings import BillingSettings, load_billing_settings
from tests.conftest import LicenseKeys, _pg_admin, _pg_url

OPERATOR_TOKEN = "operator-" + "t" * 32
BILLING_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="session")
def billing_postgresql_url() -> Iterator[str]:
    """A fresh, migrated billing database on PostgreSQL for this test session, dropped afterwards."""
    name = f"iotistic_billing_test_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    upgrade(url)
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def billing_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('billing') / 'billing.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def billing_db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"billing_{request.param}_url"))


@pytest.fixture
def billing_settings_env() -> dict[str, Any]:
    """Override in a test module to change the billing service's environment."""
    return {}


def make_billing_settings(db_url: str, data_dir: Path, keys: LicenseKeys, **env: Any) -> BillingSettings:
    values: dict[str, Any] = {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_DATA_DIR": str(data_dir),
        "BILLING_PRIVATE_KEY": keys.private_pem,
        "BILLING_JWT_SECRET": "billing-test-secret-" + "x" * 32,
        "BILLING_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "BILLING_INGRESS_DOMAIN": "customers.iotistic.test",
        # Signup and login hash passwords: real Argon2id at its smallest cost (production cost: tests/core).
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_KIB": 64,
        "ARGON2_PARALLELISM": 1,
    }
    values.update(env)
    return load_billing_settings(require_key=True, **values)


@pytest.fixture
def billing_settings(billing_db_url: str, tmp_path: Path, license_keys: LicenseKeys,
                     billing_settings_env: dict[str, Any]) -> BillingSettings:
    return make_billing_settings(billing_db_url, tmp_path, license_keys, **billing_settings_env)


async def empty_billing_tables(url: str) -> None:
    from iotistic.core.db import make_engine

    engine = make_engine(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    await conn.execute(text(f"DELETE FROM {table}"))
    finally:
        await engine.dispose()


@pytest.fixture
async def billing_app(billing_settings: BillingSettings) -> AsyncIterator[Any]:
    application = create_app(billing_settings)
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:
        await empty_billing_tables(billing_settings.sqlalchemy_url)


@pytest.fixture
async def billing_client(billing_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    # As a real server does: an unhandled error is a 500 response (and a logged traceback), not a test crash.
    transport = httpx.ASGITransport(app=billing_app, client=("127.0.0.1", 50000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        yield c


@pytest.fixture
def billing_sessions(billing_app: Any) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = billing_app.state.ctx.sessions
    return sessions


@dataclass
class SignedUp:
    """A customer made through the API: its id, login headers and the signup response body."""

    customer_id: str
    email: str
    headers: dict[str, str]
    body: dict[str, Any]


class BillingApi:
    """Helpers over the billing API, so tests read as the steps a customer or operator takes."""

    operator_headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def signup(self, plan: str = "starter", *, email: str | None = None, company: str = "Acme GmbH",
                     password: str = BILLING_PASSWORD) -> SignedUp:
        email = email or f"owner-{uuid.uuid4().hex[:10]}@example.com"
        r = await self.client.post("/api/customers/signup",
                                   json={"email": email, "password": password, "company": company, "plan": plan})
        assert r.status_code == 201, r.text
        body = r.json()
        customer_id = body["customer"]["id"]
        headers = await self.login(email, password)
        return SignedUp(customer_id=customer_id, email=email, headers=headers, body=body)

    async def login(self, email: str, password: str = BILLING_PASSWORD) -> dict[str, str]:
        r = await self.client.post("/api/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def billing_api(billing_client: httpx.AsyncClient) -> BillingApi:
    return BillingApi(billing_client)


@dataclass
class RecordingDeployer:
    """A `Deployer` that records what it was asked to do. `fail_next(n)` makes the next n calls raise; `gate`
    (when set) holds each call until the test releases it, to observe a job while it runs."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    failures_left: int = 0
    error: str = "helm: cluster unreachable"
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def fail_next(self, n: int, error: str | None = None) -> None:
        self.failures_left = n
        if error is not None:
            self.error = error

    async def _call(self, kind: str, arg: Any) -> None:
        self.calls.append((kind, arg))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RuntimeError(self.error)

    async def apply(self, spec: InstanceSpec) -> None:
        await self._call("apply", spec)

    async def remove(self, customer_id: str) -> None:
        await self._call("remove", customer_id)

    @property
    def applied(self) -> list[InstanceSpec]:
        return [arg for kind, arg in self.calls if kind == "apply"]


@pytest.fixture
def recording_deployer() -> RecordingDeployer:
    return RecordingDeployer()
