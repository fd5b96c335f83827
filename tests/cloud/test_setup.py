"""First run: the one-time setup link creates the first owner (GET/POST /api/v1/setup)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from iotistic.cloud.errors import ApiError
from iotistic.cloud.models import AuditEvent, Role, SetupToken, User
from iotistic.cloud.services.setup import new_setup_link
from iotistic.core.db import utcnow
from tests.cloud.test_auth import assert_error, bearer
from tests.conftest import PASSWORD


@pytest.fixture
def settings_env() -> dict[str, Any]:
    return {"LOGIN_MAX_FAILURES": 3, "LOGIN_LOCKOUT_SECONDS": 600, "SETUP_TOKEN_HOURS": 2}


async def make_link(app: Any) -> str:
    async with app.state.ctx.sessions() as session:
        link = await new_setup_link(session, app.state.ctx.settings.setup_token_hours)
    assert link.url("http://host:3002/") == f"http://host:3002/setup#token={link.token}"
    return link.token


async def setup(client: Any, token: str, email: str = "first@example.com", password: str = PASSWORD) -> Any:
    return await client.post("/api/v1/setup", json={"token": token, "email": email, "password": password})


async def count(app: Any, model: Any) -> int:
    async with app.state.ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_the_link_creates_the_owner_logs_them_in_and_then_setup_is_over(app, client):
    assert (await client.get("/api/v1/setup")).json() == {"needed": True}
    token = await make_link(app)

    r = await setup(client, token, email="  First@Example.com ")
    assert r.status_code == 201, r.text
    tokens = r.json()
    me = await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == "first@example.com" and me.json()["role"] == "owner"
    # A session like a login's: the refresh token rotates.
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    login = await client.post("/api/v1/auth/login", json={"email": "first@example.com", "password": PASSWORD})
    assert login.status_code == 200

    assert (await client.get("/api/v1/setup")).json() == {"needed": False}
    again = assert_error(await setup(client, token, email="second@example.com"), 410, "setup_done")
    assert "log in" in again["message"]
    assert await count(app, User) == 1
    async with app.state.ctx.sessions() as session:
        actions = (await session.scalars(select(AuditEvent.action))).all()
        with pytest.raises(ApiError) as refused:  # no new link once a user exists
            await new_setup_link(session, 1)
    assert refused.value.status == 409
    assert "setup.owner_created" in actions


async def test_only_a_hash_of_the_256_bit_token_is_stored_and_a_new_link_replaces_the_old(app, client):
    old = await make_link(app)
    token = await make_link(app)
    assert len(token.removeprefix("st_")) >= 43  # 32 random bytes, URL-safe base64
    async with app.state.ctx.sessions() as session:
        rows = (await session.scalars(select(SetupToken))).all()
    assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    expected_expiry = utcnow() + dt.timedelta(hours=2)
    assert abs((rows[0].expires_at - expected_expiry).total_seconds()) < 60

    body = assert_error(await setup(client, old), 403, "invalid_setup_token")
    assert "iotistic admin setup-link" in body["message"]
    assert (await setup(client, token)).status_code == 201


async def test_an_expired_link_is_refused_with_410(app, client):
    token = await make_link(app)
    async with app.state.ctx.sessions() as session:
        await session.execute(update(SetupToken).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        await session.commit()
    body = assert_error(await setup(client, token), 410, "setup_token_expired")
    assert "expired" in body["message"]
    assert await count(app, User) == 0


async def test_a_used_link_never_works_again_even_if_the_users_are_gone(app, client):
    token = await make_link(app)
    assert (await setup(client, token)).status_code == 201
    async with app.state.ctx.sessions() as session:
        await session.execute(delete(User))
        await session.commit()
    assert_error(await setup(client, token, email="other@example.com"), 410, "setup_token_used")
    assert await count(app, User) == 0


async def test_bad_input_is_refused_without_spending_the_link(app, client):
    token = await make_link(app)
    weak = assert_error(await setup(client, token, password="short"), 422, "weak_password")
    assert "10 characters" in weak["message"]
    assert_error(await setup(client, token, email="not-an-email"), 422, "validation_error")
    assert_error(await client.post("/api/v1/setup", json={"email": "a@example.com", "password": PASSWORD}), 422)
    assert await count(app, User) == 0
    assert (await setup(client, token)).status_code == 201


async def test_wrong_tokens_are_rate_limited_per_address(app, client):
    token = await make_link(app)
    limit = app.state.ctx.settings.login_max_failures
    for i in range(limit):
        assert_error(await setup(client, f"st_guess{i}"), 403, "invalid_setup_token")
    r = await setup(client, token)
    assert_error(r, 429, "too_many_requests")
    assert int(r.headers["Retry-After"]) == app.state.ctx.settings.login_lockout_seconds
    assert await count(app, User) == 0  # even the right token waits: guessing cannot go on in parallel


async def test_concurrent_uses_of_one_link_create_exactly_one_owner(app, client):
    token = await make_link(app)
    results = await asyncio.gather(*(setup(client, token, email=f"racer{i}@example.com") for i in range(6)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [410] * 5, [(r.status_code, r.text) for r in results]
    async with app.state.ctx.sessions() as session:
        owners = (await session.scalars(select(User.role))).all()
    assert owners == [Role.owner.value]


async def test_an_instance_with_users_needs_no_setup(api, client):
    await api.create_user("existing@example.com", Role.viewer)
    assert (await client.get("/api/v1/setup")).json() == {"needed": False}
    assert_error(await setup(client, "st_anything"), 410, "setup_done")
