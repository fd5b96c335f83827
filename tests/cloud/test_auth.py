"""Login, access and refresh tokens, logout, rate limiting of failed logins, and authentication on every route."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid as uuidlib
from typing import Any

import fastapi.routing
import jwt
import pytest
from sqlalchemy import func, select, update

from iotistic.cloud.models import LoginFailure, Role, User, UserSession
from iotistic.core.tokens import AUDIENCE, create_access_token
from tests.conftest import PASSWORD

PUBLIC_ROUTES = {
    "/health", "/ready", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/device/register", "/docs",
    "/openapi.json", "/docs/oauth2-redirect", "/redoc", "/api/v1/setup",
}


@pytest.fixture
def settings_env() -> dict[str, Any]:
    # A small failure limit keeps the rate-limit tests quick; the tests read the limit from the settings.
    return {"LOGIN_MAX_FAILURES": 3, "LOGIN_LOCKOUT_SECONDS": 600}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(r: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if error is not None:
        assert body["error"] == error, body
    return body


async def me_status(client: Any, access_token: str) -> int:
    return (await client.get("/api/v1/auth/me", headers=bearer(access_token))).status_code


async def refresh(client: Any, refresh_token: str) -> Any:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def login(client: Any, email: str, password: str = PASSWORD) -> Any:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


def claims_of(access_token: str) -> dict[str, Any]:
    return jwt.decode(access_token, options={"verify_signature": False})


# Login --------------------------------------------------------------------------------------------------------

async def test_login_returns_a_token_pair_and_me_describes_the_caller(api):
    await api.create_user("Erin.Mixed@Example.com", Role.operator)
    r = await login(api.client, "  ERIN.MIXED@example.COM ")  # emails are compared case-insensitively
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"access_token", "refresh_token", "token_type"} <= set(body)
    assert body["token_type"].lower() == "bearer"
    assert body["access_token"] != body["refresh_token"]
    claims = claims_of(body["access_token"])
    assert claims["role"] == "operator"
    assert 0 < claims["exp"] - claims["iat"] <= 24 * 3600  # short-lived: minutes, not days

    r = await api.client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["email"] == "erin.mixed@example.com"
    assert me["role"] == "operator"
    assert me["isActive"] is True
    assert isinstance(me["id"], int)
    assert me["lastLoginAt"] is not None
    assert not any("password" in k.lower() for k in me)


async def test_wrong_password_and_unknown_email_are_the_same_401(api):
    await api.create_user("dave@example.com")
    wrong_password = assert_error(await login(api.client, "dave@example.com", "nope-nope-nope"), 401)
    assert "access_token" not in wrong_password
    unknown = assert_error(await login(api.client, "nobody@example.com", "nope-nope-nope"), 401)
    assert unknown == wrong_password  # no user enumeration through the response
    # Malformed requests are JSON errors too.
    assert_error(await api.client.post("/api/v1/auth/login", json={"email": "x@example.com"}), 422)
    assert_error(await api.client.post("/api/v1/auth/login", content=b"not json",
                                       headers={"content-type": "application/json"}), 422)


# Refresh rotation ---------------------------------------------------------------------------------------------

async def test_refresh_rotates_and_reuse_ends_the_session(api):
    await api.create_user("frank@example.com")
    first = await api.login("frank@example.com")
    other_session = await api.login("frank@example.com")

    r = await refresh(api.client, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["token_type"].lower() == "bearer"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert await me_status(api.client, second["access_token"]) == 200
    # Same session: the access token names the same session id.
    assert claims_of(second["access_token"])["sid"] == claims_of(first["access_token"])["sid"]

    # The chain keeps rotating.
    r = await refresh(api.client, second["refresh_token"])
    assert r.status_code == 200, r.text
    third = r.json()
    assert await me_status(api.client, third["access_token"]) == 200

    # A spent refresh token presented again: refused, and the whole session is ended.
    assert_error(await refresh(api.client, first["refresh_token"]), 401)
    assert await me_status(api.client, third["access_token"]) == 401
    assert await me_status(api.client, second["access_token"]) == 401
    assert await me_status(api.client, first["access_token"]) == 401
    assert_error(await refresh(api.client, third["refresh_token"]), 401)

    # Another login of the same user is a different session and keeps working.
    assert await me_status(api.client, other_session["access_token"]) == 200
    assert (await refresh(api.client, other_session["refresh_token"])).status_code == 200


async def test_concurrent_refresh_with_one_token_cannot_both_succeed(api):
    await api.create_user("grace@example.com")
    tokens = await api.login("grace@example.com")
    results = await asyncio.gather(*(refresh(api.client, tokens["refresh_token"]) for _ in range(2)))
    assert sorted(r.status_code for r in results) == [200, 401]


async def test_refresh_refuses_anything_but_a_live_refresh_token(api):
    assert_error(await refresh(api.client, "rt_garbage"), 401)
    assert_error(await api.client.post("/api/v1/auth/refresh", json={}), 422)
    await api.create_user("heidi@example.com")
    tokens = await api.login("heidi@example.com")
    assert_error(await refresh(api.client, tokens["access_token"][:512]), 401)
    assert await me_status(api.client, tokens["refresh_token"]) == 401
    # Neither was spent or revoked by the misuse.
    assert await me_status(api.client, tokens["access_token"]) == 200
    assert (await refresh(api.client, tokens["refresh_token"])).status_code == 200


async def test_session_lifetime_ends_both_tokens(api, app):
    await api.create_user("sven@example.com")
    tokens = await api.login("sven@example.com")
    async with app.state.ctx.sessions() as session:
        await session.execute(update(UserSession).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        await session.commit()
    assert await me_status(api.client, tokens["access_token"]) == 401
    assert_error(await refresh(api.client, tokens["refresh_token"]), 401)


# Logout -------------------------------------------------------------------------------------------------------

async def test_logout_revokes_access_and_refresh_tokens(api):
    await api.create_user("ivan@example.com")
    tokens = await api.login("ivan@example.com")
    other = await api.login("ivan@example.com")
    r = await api.client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert r.status_code == 204, r.text
    assert await me_status(api.client, tokens["access_token"]) == 401
    assert_error(await refresh(api.client, tokens["refresh_token"]), 401)
    assert_error(await api.client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"])), 401)
    # Only that session ended.
    assert await me_status(api.client, other["access_token"]) == 200


# Rate limiting of failed logins -------------------------------------------------------------------------------

async def test_failed_logins_are_rate_limited_per_email(api, app):
    limit = app.state.ctx.settings.login_max_failures
    lockout = app.state.ctx.settings.login_lockout_seconds
    await api.create_user("judy@example.com")
    await api.create_user("ken@example.com")
    for _ in range(limit):
        assert_error(await login(api.client, "judy@example.com", "wrong-password-guess"), 401)

    # Locked out now, even with the right password, and whatever the case of the email.
    for email in ("judy@example.com", "JUDY@example.com"):
        r = await login(api.client, email)
        assert_error(r, 429)
        retry_after = r.headers.get("retry-after")
        assert retry_after is not None and retry_after.isdigit()
        assert 0 < int(retry_after) <= lockout

    # Another user (same client address) is not affected.
    r = await login(api.client, "ken@example.com")
    assert r.status_code == 200, r.text
    async with app.state.ctx.sessions() as session:
        recorded = await session.scalar(select(func.count()).select_from(LoginFailure)
                                        .where(LoginFailure.email == "judy@example.com"))
    assert recorded == limit  # the refused (429) attempts are not even checked, let alone counted

    # Guessing at an unknown email is limited the same way.
    for _ in range(limit):
        assert_error(await login(api.client, "ghost@example.com", "guess-guess-guess"), 401)
    assert_error(await login(api.client, "ghost@example.com", "guess-guess-guess"), 429)


async def test_successful_login_resets_the_failure_count(api, app):
    limit = app.state.ctx.settings.login_max_failures
    await api.create_user("leo@example.com")
    for _ in range(limit - 1):
        assert_error(await login(api.client, "leo@example.com", "wrong-password-guess"), 401)
    assert (await login(api.client, "leo@example.com")).status_code == 200
    for _ in range(limit - 1):
        assert_error(await login(api.client, "leo@example.com", "wrong-password-guess"), 401)
    assert (await login(api.client, "leo@example.com")).status_code == 200


async def test_lockout_ends_after_the_window(api, app):
    settings = app.state.ctx.settings
    await api.create_user("mia@example.com")
    for _ in range(settings.login_max_failures):
        assert_error(await login(api.client, "mia@example.com", "wrong-password-guess"), 401)
    assert_error(await login(api.client, "mia@example.com"), 429)
    # Age the recorded failures past the lockout window.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.login_lockout_seconds + 5)
    async with app.state.ctx.sessions() as session:
        await session.execute(update(LoginFailure).values(at=past))
        await session.commit()
    assert (await login(api.client, "mia@example.com")).status_code == 200


# Disabled users -----------------------------------------------------------------------------------------------

async def test_disabled_user_cannot_log_in_and_live_tokens_stop(api, owner):
    r = await api.client.post("/api/v1/users", headers=owner,
                              json={"email": "oscar@example.com", "password": PASSWORD, "role": "operator"})
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    tokens = await api.login("oscar@example.com")
    assert await me_status(api.client, tokens["access_token"]) == 200

    r = await api.client.patch(f"/api/v1/users/{user_id}", headers=owner, json={"isActive": False})
    assert r.status_code == 200, r.text
    assert r.json()["isActive"] is False
    assert await me_status(api.client, tokens["access_token"]) == 401
    assert_error(await refresh(api.client, tokens["refresh_token"]), 401)
    assert_error(await login(api.client, "oscar@example.com"), 401)

    # Enabled again: a fresh login works (the old session stays ended).
    r = await api.client.patch(f"/api/v1/users/{user_id}", headers=owner, json={"isActive": True})
    assert r.status_code == 200, r.text
    assert (await login(api.client, "oscar@example.com")).status_code == 200
    assert await me_status(api.client, tokens["access_token"]) == 401


async def test_user_disabled_in_the_database_is_refused_at_once(api, app):
    """Even without a session revocation, an inactive user's token is refused."""
    await api.create_user("pat@example.com")
    tokens = await api.login("pat@example.com")
    async with app.state.ctx.sessions() as session:
        await session.execute(update(User).where(User.email == "pat@example.com").values(is_active=False))
        await session.commit()
    assert await me_status(api.client, tokens["access_token"]) == 401


# Bad tokens ---------------------------------------------------------------------------------------------------

async def test_expired_access_token_is_401(api, app):
    await api.create_user("quinn@example.com")
    tokens = await api.login("quinn@example.com")
    claims = claims_of(tokens["access_token"])
    expired = create_access_token(app.state.ctx.jwt_secret, user_id=int(claims["sub"]), session_id=claims["sid"],
                                  role=claims["role"], minutes=-1)
    assert_error(await api.client.get("/api/v1/auth/me", headers=bearer(expired)), 401)
    # The same claims with a future expiry work: only the expiry was wrong.
    fresh = create_access_token(app.state.ctx.jwt_secret, user_id=int(claims["sub"]), session_id=claims["sid"],
                                role=claims["role"], minutes=5)
    assert await me_status(api.client, fresh) == 200


async def test_forged_tokens_are_401(api, app):
    await api.create_user("rita@example.com")
    tokens = await api.login("rita@example.com")
    claims = claims_of(tokens["access_token"])
    secret = app.state.ctx.jwt_secret
    now = dt.datetime.now(dt.UTC)
    base = {"sub": claims["sub"], "sid": claims["sid"], "role": "owner", "aud": AUDIENCE, "iat": now,
            "exp": now + dt.timedelta(minutes=5)}
    head, payload, signature = tokens["access_token"].split(".")
    tampered = jwt.utils.base64url_encode(json.dumps({**claims, "role": "owner"}).encode()).decode()
    forged = {
        "wrong signature": jwt.encode(base, "another-secret-" + "y" * 40, algorithm="HS256"),
        "wrong audience": jwt.encode({**base, "aud": "someone-else"}, secret, algorithm="HS256"),
        "no sid": jwt.encode({k: v for k, v in base.items() if k != "sid"}, secret, algorithm="HS256"),
        "unknown session": jwt.encode({**base, "sid": str(uuidlib.uuid4())}, secret, algorithm="HS256"),
        "other user": jwt.encode({**base, "sub": str(int(claims["sub"]) + 999)}, secret, algorithm="HS256"),
        "alg none": jwt.encode(base, None, algorithm="none"),
        "tampered payload": f"{head}.{tampered}.{signature}",
        "truncated signature": f"{head}.{payload}.{signature[:-4]}",
        "garbage": "garbage",
        "empty-ish": "a.b.c",
    }
    for name, token in forged.items():
        r = await api.client.get("/api/v1/auth/me", headers=bearer(token))
        assert r.status_code == 401, (name, r.text)
        assert_error(r, 401)
    # The genuine token still works.
    assert await me_status(api.client, tokens["access_token"]) == 200


async def test_non_bearer_schemes_are_401(api):
    await api.create_user("sam@example.com")
    tokens = await api.login("sam@example.com")
    for header in (f"Basic {tokens['access_token']}", tokens["access_token"], "Bearer", "Bearer "):
        r = await api.client.get("/api/v1/auth/me", headers={"Authorization": header})
        assert_error(r, 401)


async def test_device_api_key_is_not_a_user_token(api, owner):
    key = await api.provisioning_key(owner)
    _, device_key = await api.register(key["key"])
    assert_error(await api.client.get("/api/v1/devices", headers=bearer(device_key)), 401)
    assert_error(await api.client.get("/api/v1/devices", headers={"X-Device-API-Key": device_key}), 401)
    assert_error(await api.client.get("/api/v1/devices", headers=bearer(key["key"])), 401)


# Every non-public route refuses an unauthenticated call ---------------------------------------------------------

def _concrete(path: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return "0123456789abcdef" if name == "uuid" else "1"
    return re.sub(r"{([^}]+)}", value, path)


def _flat_routes(app: Any) -> list[Any]:
    """Every route of the app, including those of included routers (newer FastAPI nests them lazily)."""
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def _protected_routes(app: Any) -> list[tuple[str, str]]:
    routes = []
    for route in _flat_routes(app):
        methods = getattr(route, "methods", None)
        path = getattr(route, "path", None)
        if not methods or path is None or path in PUBLIC_ROUTES:
            continue
        routes += [(method, path) for method in sorted(methods) if method not in ("HEAD", "OPTIONS")]
    return routes


async def test_every_non_public_route_needs_authentication(app, client):
    routes = _protected_routes(app)
    walked = {path for _, path in routes}
    # The walk sees the routes we know must be protected (so it is not vacuous) ...
    for expected in ("/api/v1/auth/me", "/api/v1/auth/logout", "/api/v1/users", "/api/v1/users/{user_id}",
                     "/api/v1/provisioning-keys", "/api/v1/devices", "/api/v1/devices/{uuid}/deploy",
                     "/api/v1/license", "/api/v1/device/{uuid}/state", "/api/v1/device/state", "/metrics"):
        assert expected in walked, expected
    # ... and every path in the OpenAPI document.
    openapi = (await client.get("/openapi.json")).json()
    for path in openapi["paths"]:
        assert path in walked or path in PUBLIC_ROUTES, path

    failures = []
    for method, path in routes:
        url = _concrete(path)
        kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            r = await client.request(method, url, headers=headers, **kwargs)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
            if r.status_code != 401 or not body or not {"error", "message"} <= set(body):
                failures.append((method, path, headers, r.status_code, r.text[:200]))
    assert not failures, failures


async def test_public_routes_answer_without_a_token(client):
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/ready")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200
    # Public does not mean open: these refuse bad credentials, but not with "log in first".
    assert_error(await client.post("/api/v1/auth/login", json={"email": "a@b.co", "password": "x"}), 401)
    assert_error(await client.post("/api/v1/auth/refresh", json={"refresh_token": "x"}), 401)


async def test_concurrent_failed_logins_cannot_outrun_the_limit(api, app):
    """Guessing in parallel must not get more password checks than guessing one after another."""
    limit = app.state.ctx.settings.login_max_failures
    await api.create_user("olga@example.com")
    results = await asyncio.gather(*(login(api.client, "olga@example.com", f"guess-{i}-guess") for i in range(12)))
    statuses = [r.status_code for r in results]
    assert statuses.count(401) == limit, statuses
    assert statuses.count(429) == 12 - limit, statuses
    async with app.state.ctx.sessions() as session:
        recorded = await session.scalar(select(func.count()).select_from(LoginFailure)
                                        .where(LoginFailure.email == "olga@example.com"))
    assert recorded == limit
