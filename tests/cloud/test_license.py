"""The licence as the cloud API sees it: GET/PUT /api/v1/license, free mode, and maxDevices at registration."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
import uuid as uuidlib
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from iotistic.cloud.app import create_app
from iotistic.cloud.models import Device, InstalledLicense, Role
from iotistic.core.licensing import build_claims, generate_keypair, issue_license, sign_license
from iotistic.core.plans import FREE, STARTER
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def other_keys() -> tuple[str, str]:
    return generate_keypair()


def licence_for(kind: str, license_keys: Any, other_keys: tuple[str, str]) -> str | None:
    return {
        "enterprise": lambda: license_keys.token("enterprise"),
        "starter": lambda: license_keys.token("starter"),
        "none": lambda: None,
        "garbage": lambda: "garbage-not-a-licence",
        "expired": lambda: license_keys.token("enterprise", days=-1),
        "wrong-key": lambda: issue_license(other_keys[0], customer_id="cust_test", plan="enterprise", days=30),
        "canceled": lambda: license_keys.token("enterprise", subscription_status="canceled"),
        "past_due": lambda: license_keys.token("professional", subscription_status="past_due"),
    }[kind]()


@pytest.fixture
def settings_env(request: pytest.FixtureRequest, license_keys: Any, other_keys: tuple[str, str]) -> dict[str, Any]:
    """The licence the instance starts with; choose one with `@pytest.mark.parametrize(..., indirect=True)`."""
    kind = getattr(request, "param", "enterprise")
    return {"IOTISTIC_LICENSE_KEY": licence_for(kind, license_keys, other_keys)}


def starting_with(*kinds: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("settings_env", kinds, indirect=True)


def registration() -> dict[str, Any]:
    device_uuid = uuidlib.uuid4().hex
    return {"uuid": device_uuid, "deviceName": f"dev-{device_uuid[:6]}", "deviceType": "raspberrypi4",
            "deviceApiKey": secrets.token_urlsafe(32)}


async def register(client: Any, key: str, body: dict[str, Any] | None = None) -> Any:
    return await client.post("/api/v1/device/register", json=body or registration(),
                             headers={"Authorization": f"Bearer {key}"})


async def get_license(api: Any, headers: dict[str, str]) -> dict[str, Any]:
    r = await api.client.get("/api/v1/license", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def device_count(app: Any) -> int:
    async with app.state.ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Device)) or 0)


def assert_limit_error(r: Any, limit: int) -> None:
    assert r.status_code == 402, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == "device_limit_reached", body
    assert str(limit) in body["message"], body


# GET /api/v1/license ------------------------------------------------------------------------------------------

async def test_enterprise_licence_is_reported(api):
    viewer = await api.headers_for(Role.viewer)  # any user may read it
    lic = await get_license(api, viewer)
    assert lic["mode"] == "licensed"
    assert lic["plan"] == "enterprise"
    assert lic["customerId"] == "cust_test"
    assert lic["reason"] is None
    assert lic["features"]["maxDevices"] is None
    assert lic["features"]["hasDedicatedPrometheus"] is True
    assert lic["subscription"]["status"] == "active"
    assert lic["trial"]["isTrial"] is False
    assert lic["usage"] == {"devices": 0, "maxDevices": None}
    expires = dt.datetime.fromisoformat(lic["expiresAt"].replace("Z", "+00:00"))
    assert abs((expires - dt.datetime.now(dt.UTC)) - dt.timedelta(days=30)) < dt.timedelta(minutes=5)


@pytest.mark.parametrize(("settings_env", "reason"), [
    ("none", "no licence"),
    ("garbage", "invalid"),
    ("expired", "expired"),
    ("wrong-key", "invalid"),
    ("canceled", "canceled"),
], indirect=["settings_env"])
async def test_no_or_bad_licence_is_free_mode_with_a_reason(api, owner, reason):
    lic = await get_license(api, owner)
    assert lic["mode"] == "free"
    assert lic["plan"] == "free"
    assert lic["customerId"] is None
    assert reason in lic["reason"]
    assert lic["features"]["maxDevices"] == FREE.max_devices == 3
    assert lic["limits"]["maxDevices"] == FREE.max_devices
    assert lic["usage"] == {"devices": 0, "maxDevices": FREE.max_devices}
    assert lic["expiresAt"] is None


@starting_with("past_due")
async def test_past_due_subscription_keeps_the_plan(api, owner):
    lic = await get_license(api, owner)
    assert (lic["mode"], lic["plan"]) == ("licensed", "professional")
    assert lic["subscription"]["status"] == "past_due"
    assert lic["usage"]["maxDevices"] == 50


# maxDevices at registration -----------------------------------------------------------------------------------

@starting_with("none")
async def test_free_mode_allows_three_devices(api, owner, app):
    key = await api.provisioning_key(owner)
    for _ in range(FREE.max_devices):
        r = await register(api.client, key["key"])
        assert r.status_code == 201, r.text
    assert_limit_error(await register(api.client, key["key"]), FREE.max_devices)
    # Manual creation by a user counts against the same limit.
    assert_limit_error(await api.client.post("/api/v1/devices", headers=owner, json={"name": "by-hand"}),
                       FREE.max_devices)
    assert await device_count(app) == FREE.max_devices
    lic = await get_license(api, owner)
    assert lic["usage"] == {"devices": 3, "maxDevices": 3}
    # The refused registrations did not use up slots of the key.
    r = await api.client.get("/api/v1/provisioning-keys", headers=owner)
    assert r.json()[0]["devicesRegistered"] == 3


@starting_with("none")
async def test_known_device_may_re_register_at_the_limit(api, owner):
    key = await api.provisioning_key(owner)
    bodies = [registration() for _ in range(FREE.max_devices)]
    for body in bodies:
        assert (await register(api.client, key["key"], body)).status_code == 201
    again = {**bodies[0], "deviceApiKey": secrets.token_urlsafe(32)}
    r = await register(api.client, key["key"], again)
    assert r.status_code == 200, r.text


@starting_with("starter")
async def test_starter_licence_refuses_the_eleventh_device(api, owner, app):
    assert STARTER.max_devices == 10
    key = await api.provisioning_key(owner)
    for _ in range(STARTER.max_devices):
        r = await register(api.client, key["key"])
        assert r.status_code == 201, r.text
    r = await register(api.client, key["key"])
    assert_limit_error(r, 10)
    assert "starter" in r.json()["message"]
    assert await device_count(app) == 10


@starting_with("none")
async def test_concurrent_registrations_cannot_overshoot_the_licence(api, owner, app):
    key = await api.provisioning_key(owner)
    results = await asyncio.gather(*(register(api.client, key["key"]) for _ in range(12)))
    statuses = [r.status_code for r in results]
    assert statuses.count(201) == FREE.max_devices, statuses
    assert statuses.count(402) == 12 - FREE.max_devices, statuses
    for r in results:
        if r.status_code == 402:
            assert r.json()["error"] == "device_limit_reached"
    assert await device_count(app) == FREE.max_devices


@starting_with("starter")
async def test_concurrent_registrations_across_keys_cannot_overshoot(api, owner, app):
    """Different keys (no shared key row to serialise on) still cannot exceed the licence together."""
    keys = [await api.provisioning_key(owner) for _ in range(4)]
    results = await asyncio.gather(*(register(api.client, keys[i % 4]["key"]) for i in range(16)))
    statuses = [r.status_code for r in results]
    assert statuses.count(201) == 10, statuses
    assert statuses.count(402) == 6, statuses
    assert await device_count(app) == 10


# PUT /api/v1/license --------------------------------------------------------------------------------------------

@starting_with("none")
async def test_installing_a_licence_applies_at_once(api, owner, license_keys):
    key = await api.provisioning_key(owner)
    for _ in range(3):
        assert (await register(api.client, key["key"])).status_code == 201
    assert_limit_error(await register(api.client, key["key"]), 3)

    r = await api.client.put("/api/v1/license", headers=owner, json={"token": license_keys.token("professional")})
    assert r.status_code == 200, r.text
    assert (r.json()["mode"], r.json()["plan"]) == ("licensed", "professional")
    assert r.json()["usage"] == {"devices": 3, "maxDevices": 50}
    lic = await get_license(api, owner)
    assert (lic["mode"], lic["plan"], lic["reason"]) == ("licensed", "professional", None)
    assert (await register(api.client, key["key"])).status_code == 201

    r = await api.client.get("/api/v1/audit", headers=owner, params={"action": "license.installed"})
    assert [e["details"]["plan"] for e in r.json()] == ["professional"]


async def test_installed_licence_overrides_the_environment(api, owner, license_keys, app):
    assert (await get_license(api, owner))["plan"] == "enterprise"
    r = await api.client.put("/api/v1/license", headers=owner, json={"token": license_keys.token("starter")})
    assert r.status_code == 200, r.text
    lic = await get_license(api, owner)
    assert lic["plan"] == "starter" and lic["usage"]["maxDevices"] == 10
    key = await api.provisioning_key(owner)
    for _ in range(10):
        assert (await register(api.client, key["key"])).status_code == 201
    assert_limit_error(await register(api.client, key["key"]), 10)


async def test_invalid_licence_is_refused_and_nothing_changes(api, owner, license_keys, other_keys, app):
    before = await get_license(api, owner)
    for bad in ("garbage", "expired", "wrong-key", "canceled"):
        token = licence_for(bad, license_keys, other_keys)
        r = await api.client.put("/api/v1/license", headers=owner, json={"token": token})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"] == "invalid_license"
        assert r.json()["message"]
        assert await get_license(api, owner) == before
    async with app.state.ctx.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(InstalledLicense)) == 0


async def test_only_an_owner_installs_a_licence(api, owner, license_keys, app):
    for role in (Role.admin, Role.operator, Role.viewer):
        headers = await api.headers_for(role)
        r = await api.client.put("/api/v1/license", headers=headers, json={"token": license_keys.token("starter")})
        assert r.status_code == 403, (role, r.text)
        assert r.json()["error"] == "forbidden"
    assert (await get_license(api, owner))["plan"] == "enterprise"
    async with app.state.ctx.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(InstalledLicense)) == 0


@starting_with("none")
async def test_installed_licence_survives_a_restart(api, owner, license_keys, db_url, tmp_path):
    r = await api.client.put("/api/v1/license", headers=owner, json={"token": license_keys.token("professional")})
    assert r.status_code == 200, r.text
    # A second instance on the same database, started without IOTISTIC_LICENSE_KEY (another replica, or this
    # one restarted), uses the installed licence.
    other = create_app(make_settings(db_url, tmp_path, license_keys, IOTISTIC_LICENSE_KEY=None))
    try:
        transport = httpx.ASGITransport(app=other, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            r = await client.get("/api/v1/license", headers=owner)
            assert r.status_code == 200, r.text
            assert (r.json()["mode"], r.json()["plan"]) == ("licensed", "professional")
    finally:
        await other.state.ctx.engine.dispose()


async def test_licence_that_expires_while_running_drops_to_free_mode(api, owner, license_keys):
    # Valid for about two more seconds.
    expires = int(time.time()) + 2
    claims = build_claims(customer_id="cust_test", plan=STARTER, days=30, now=expires - 30 * 86400)
    r = await api.client.put("/api/v1/license", headers=owner,
                             json={"token": sign_license(claims, license_keys.private_pem)})
    assert r.status_code == 200, r.text
    assert (await get_license(api, owner))["mode"] == "licensed"
    await asyncio.sleep(max(0.0, expires + 0.2 - time.time()))
    lic = await get_license(api, owner)
    assert lic["mode"] == "free"
    assert "expired" in lic["reason"]
    assert lic["usage"]["maxDevices"] == FREE.max_devices


async def test_licence_install_validation(api, owner):
    for body in ({}, {"token": "short"}, {"token": 12345678901}, {"token": "x" * 20, "extra": 1}):
        r = await api.client.put("/api/v1/license", headers=owner, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"] in ("validation_error", "invalid_license")
