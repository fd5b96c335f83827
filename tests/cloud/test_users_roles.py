"""Users and roles: the role matrix, user CRUD, owner rules, password rules and storage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from iotistic.cloud.models import Role, User
from iotistic.core.security import verify_password
from tests.conftest import PASSWORD

TARGET = {
    "apps": {
        "1": {"appId": 1, "appName": "web", "services": [
            {"serviceId": 1, "serviceName": "nginx", "config": {"image": "nginx:1.27", "ports": ["8080:80"]}},
        ]},
    },
    "config": {},
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(r: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if error is not None:
        assert body["error"] == error, body
    return body


async def me(api: Any, headers: dict[str, str]) -> dict[str, Any]:
    r = await api.client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def create_user(api: Any, headers: dict[str, str], email: str, role: str = "viewer",
                      password: str = PASSWORD) -> Any:
    return await api.client.post("/api/v1/users", headers=headers,
                                 json={"email": email, "password": password, "role": role})


async def created_user(api: Any, headers: dict[str, str], email: str, role: str = "viewer") -> dict[str, Any]:
    r = await create_user(api, headers, email, role)
    assert r.status_code == 201, r.text
    return r.json()


async def list_emails(api: Any, headers: dict[str, str]) -> set[str]:
    r = await api.client.get("/api/v1/users", headers=headers)
    assert r.status_code == 200, r.text
    return {u["email"] for u in r.json()}


@pytest.fixture
async def device(api, owner) -> dict[str, Any]:
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"])
    return {"uuid": body["uuid"], "api_key": api_key, "key_id": key["id"]}


# Role matrix --------------------------------------------------------------------------------------------------

async def test_viewer_reads_but_cannot_change_anything(api, owner, device):
    viewer = await api.headers_for(Role.viewer)
    c, uuid = api.client, device["uuid"]
    for path in ("/api/v1/devices", f"/api/v1/devices/{uuid}", f"/api/v1/devices/{uuid}/target-state",
                 f"/api/v1/devices/{uuid}/tags", "/api/v1/license", "/api/v1/fleets"):
        r = await c.get(path, headers=viewer)
        assert r.status_code == 200, (path, r.text)
    assert (await c.get("/api/v1/devices", headers=viewer)).json()["total"] == 1

    refused = [
        await c.post("/api/v1/provisioning-keys", headers=viewer, json={}),
        await c.put(f"/api/v1/devices/{uuid}/target-state", headers=viewer, json=TARGET),
        await c.post(f"/api/v1/devices/{uuid}/deploy", headers=viewer),
        await c.patch(f"/api/v1/devices/{uuid}", headers=viewer, json={"name": "renamed"}),
        await c.put(f"/api/v1/devices/{uuid}/tags", headers=viewer, json={"site": "a"}),
        await c.delete(f"/api/v1/devices/{uuid}", headers=viewer),
        await create_user(api, viewer, "new-by-viewer@example.com"),
        await c.put("/api/v1/license", headers=viewer, json={"token": "x" * 20}),
    ]
    for r in refused:
        assert_error(r, 403, "forbidden")
    # Nothing changed.
    r = await c.get(f"/api/v1/devices/{uuid}", headers=owner)
    assert r.json()["name"] != "renamed"
    assert r.json()["tags"] == {}
    assert (await c.get(f"/api/v1/devices/{uuid}/target-state", headers=owner)).json()["version"] == 0
    assert "new-by-viewer@example.com" not in await list_emails(api, owner)
    assert len((await c.get("/api/v1/provisioning-keys", headers=owner)).json()) == 1


async def test_operator_deploys_and_edits_devices_but_manages_no_keys_or_users(api, owner, device):
    operator = await api.headers_for(Role.operator)
    c, uuid = api.client, device["uuid"]

    r = await c.put(f"/api/v1/devices/{uuid}/target-state", headers=operator, json=TARGET)
    assert r.status_code == 200, r.text
    assert r.json()["pending"] is True
    r = await c.post(f"/api/v1/devices/{uuid}/deploy", headers=operator)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    # The device sees what the operator deployed.
    r = await c.get(f"/api/v1/device/{uuid}/state", headers={"X-Device-API-Key": device["api_key"]})
    assert r.status_code == 200, r.text
    state = r.json()[uuid]
    assert state["version"] == 1
    assert state["apps"]["1"]["services"][0]["config"]["image"] == "nginx:1.27"

    r = await c.patch(f"/api/v1/devices/{uuid}", headers=operator, json={"name": "line-3-gateway"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "line-3-gateway"
    r = await c.put(f"/api/v1/devices/{uuid}/tags", headers=operator, json={"site": "plant-1"})
    assert r.status_code == 200, r.text

    refused = [
        await c.post("/api/v1/provisioning-keys", headers=operator, json={"maxDevices": 5}),
        await c.get("/api/v1/provisioning-keys", headers=operator),
        await c.delete(f"/api/v1/provisioning-keys/{device['key_id']}", headers=operator),
        await create_user(api, operator, "new-by-operator@example.com"),
        await c.get("/api/v1/users", headers=operator),
        await c.put("/api/v1/license", headers=operator, json={"token": "x" * 20}),
    ]
    for r in refused:
        assert_error(r, 403, "forbidden")
    keys = (await c.get("/api/v1/provisioning-keys", headers=owner)).json()
    assert len(keys) == 1 and keys[0]["revokedAt"] is None
    assert "new-by-operator@example.com" not in await list_emails(api, owner)


async def test_admin_manages_users_and_keys_but_not_the_licence_or_owners(api, owner, license_keys):
    admin = await api.headers_for(Role.admin)
    c = api.client

    key = await api.provisioning_key(admin, maxDevices=2, description="by admin")
    assert key["createdBy"].startswith("admin-")
    r = await c.get("/api/v1/provisioning-keys", headers=admin)
    assert r.status_code == 200 and [k["id"] for k in r.json()] == [key["id"]]
    assert (await c.delete(f"/api/v1/provisioning-keys/{key['id']}", headers=admin)).status_code == 204

    user = await created_user(api, admin, "operator-by-admin@example.com", "operator")
    assert user["role"] == "operator"
    r = await c.patch(f"/api/v1/users/{user['id']}", headers=admin, json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert (await c.delete(f"/api/v1/users/{user['id']}", headers=admin)).status_code == 204

    # Owner-only actions.
    assert_error(await create_user(api, admin, "owner-by-admin@example.com", "owner"), 403)
    viewer = await created_user(api, admin, "to-promote@example.com", "viewer")
    assert_error(await c.patch(f"/api/v1/users/{viewer['id']}", headers=admin, json={"role": "owner"}), 403)
    my_id = (await me(api, admin))["id"]
    assert_error(await c.patch(f"/api/v1/users/{my_id}", headers=admin, json={"role": "owner"}), 403)
    assert_error(await c.put("/api/v1/license", headers=admin,
                             json={"token": license_keys.token("starter")}), 403)

    # An admin cannot touch an owner.
    owner_id = (await me(api, owner))["id"]
    assert_error(await c.patch(f"/api/v1/users/{owner_id}", headers=admin, json={"isActive": False}), 403)
    assert_error(await c.patch(f"/api/v1/users/{owner_id}", headers=admin,
                               json={"password": "admin-chose-this-1"}), 403)
    assert_error(await c.delete(f"/api/v1/users/{owner_id}", headers=admin), 403)
    assert (await me(api, owner))["role"] == "owner"  # owner's token still works: nothing changed

    users = {u["email"]: u for u in (await c.get("/api/v1/users", headers=owner)).json()}
    assert "owner-by-admin@example.com" not in users
    assert users["to-promote@example.com"]["role"] == "viewer"
    assert (await me(api, admin))["role"] == "admin"


async def test_owner_installs_licence_and_creates_and_promotes_owners(api, owner, license_keys):
    c = api.client
    r = await c.put("/api/v1/license", headers=owner, json={"token": license_keys.token("professional")})
    assert r.status_code == 200, r.text
    assert r.json()["plan"] == "professional"

    second = await created_user(api, owner, "second-owner@example.com", "owner")
    assert second["role"] == "owner"
    admin = await created_user(api, owner, "will-be-owner@example.com", "admin")
    r = await c.patch(f"/api/v1/users/{admin['id']}", headers=owner, json={"role": "owner"})
    assert r.status_code == 200 and r.json()["role"] == "owner"
    tokens = await api.login("will-be-owner@example.com")
    assert (await me(api, bearer(tokens["access_token"])))["role"] == "owner"


# Owners -------------------------------------------------------------------------------------------------------

async def test_last_owner_cannot_be_demoted_disabled_or_deleted(api, owner):
    c = api.client
    owner_id = (await me(api, owner))["id"]
    assert_error(await c.patch(f"/api/v1/users/{owner_id}", headers=owner, json={"role": "admin"}), 409)
    assert_error(await c.patch(f"/api/v1/users/{owner_id}", headers=owner, json={"isActive": False}), 409)
    assert_error(await c.delete(f"/api/v1/users/{owner_id}", headers=owner), 409)
    info = await me(api, owner)  # still an active owner with a working session
    assert info["role"] == "owner" and info["isActive"] is True


async def test_an_owner_can_step_down_when_another_remains(api, owner):
    c = api.client
    owner_id = (await me(api, owner))["id"]
    other = await created_user(api, owner, "other-owner@example.com", "owner")
    other_headers = bearer((await api.login("other-owner@example.com"))["access_token"])

    r = await c.patch(f"/api/v1/users/{owner_id}", headers=owner, json={"role": "admin"})
    assert r.status_code == 200, r.text
    # Now `other` is the last owner and cannot leave.
    assert_error(await c.patch(f"/api/v1/users/{other['id']}", headers=other_headers, json={"role": "admin"}), 409)
    assert_error(await c.delete(f"/api/v1/users/{other['id']}", headers=other_headers), 409)
    assert (await me(api, other_headers))["role"] == "owner"


async def test_a_disabled_owner_does_not_count_and_can_be_removed(api, owner):
    """With one active owner and one disabled owner, the disabled one may be demoted or deleted."""
    c = api.client
    first = await created_user(api, owner, "disabled-owner-1@example.com", "owner")
    second = await created_user(api, owner, "disabled-owner-2@example.com", "owner")
    for user in (first, second):
        r = await c.patch(f"/api/v1/users/{user['id']}", headers=owner, json={"isActive": False})
        assert r.status_code == 200, r.text
    r = await c.patch(f"/api/v1/users/{first['id']}", headers=owner, json={"role": "viewer"})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "viewer"
    r = await c.delete(f"/api/v1/users/{second['id']}", headers=owner)
    assert r.status_code == 204, r.text
    # The active owner is still protected.
    owner_id = (await me(api, owner))["id"]
    assert_error(await c.patch(f"/api/v1/users/{owner_id}", headers=owner, json={"role": "admin"}), 409)


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(api, owner):
    c = api.client
    owner_id = (await me(api, owner))["id"]
    other = await created_user(api, owner, "rival-owner@example.com", "owner")
    other_headers = bearer((await api.login("rival-owner@example.com"))["access_token"])
    results = await asyncio.gather(
        c.patch(f"/api/v1/users/{other['id']}", headers=owner, json={"role": "admin"}),
        c.patch(f"/api/v1/users/{owner_id}", headers=other_headers, json={"role": "admin"}),
    )
    # One wins; the other is refused as the last owner (409), or finds its own session already ended by the
    # winner's demotion (401). Never both: that would leave no owner at all.
    statuses = sorted(r.status_code for r in results)
    assert statuses[0] == 200 and statuses[1] in (401, 409), [r.text for r in results]
    async with api.app.state.ctx.sessions() as session:
        owners = (await session.scalars(select(User.email).where(User.role == "owner"))).all()
    assert len(owners) == 1


async def test_admin_cannot_delete_itself(api, owner):
    admin = await api.headers_for(Role.admin)
    admin_id = (await me(api, admin))["id"]
    assert_error(await api.client.delete(f"/api/v1/users/{admin_id}", headers=admin), 409)
    assert (await me(api, admin))["id"] == admin_id
    # Someone else may.
    assert (await api.client.delete(f"/api/v1/users/{admin_id}", headers=owner)).status_code == 204


# User CRUD ----------------------------------------------------------------------------------------------------

async def test_user_crud(api, owner):
    c = api.client
    r = await create_user(api, owner, "  New.User@Example.com ".strip(), "operator")
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == "new.user@example.com"
    assert user["role"] == "operator"
    assert user["isActive"] is True
    assert isinstance(user["id"], int)
    assert not any("password" in k.lower() for k in user)

    r = await c.get("/api/v1/users", headers=owner)
    assert r.status_code == 200
    listed = {u["email"]: u for u in r.json()}
    assert listed["new.user@example.com"]["id"] == user["id"]
    assert all("passwordHash" not in u and "password" not in u for u in r.json())

    r = await c.patch(f"/api/v1/users/{user['id']}", headers=owner, json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert_error(await c.patch(f"/api/v1/users/{user['id']}", headers=owner, json={"role": "superuser"}), 422)
    assert_error(await c.patch(f"/api/v1/users/{user['id']}", headers=owner, json={"email": "x@example.com"}), 422)

    tokens = await api.login("new.user@example.com")
    r = await c.delete(f"/api/v1/users/{user['id']}", headers=owner)
    assert r.status_code == 204, r.text
    assert "new.user@example.com" not in await list_emails(api, owner)
    assert (await c.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).status_code == 401
    assert (await c.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    r = await c.post("/api/v1/auth/login", json={"email": "new.user@example.com", "password": PASSWORD})
    assert_error(r, 401)

    assert_error(await c.delete(f"/api/v1/users/{user['id']}", headers=owner), 404, "not_found")
    assert_error(await c.patch(f"/api/v1/users/{user['id']}", headers=owner, json={"role": "admin"}), 404)
    assert_error(await c.patch("/api/v1/users/not-a-number", headers=owner, json={}), 422)

    # Security actions on users are audited.
    r = await c.get("/api/v1/audit", headers=owner)
    actions = {e["action"] for e in r.json()}
    assert {"user.created", "user.updated", "user.deleted"} <= actions


async def test_duplicate_or_invalid_email_is_refused(api, owner):
    await created_user(api, owner, "dup@example.com")
    assert_error(await create_user(api, owner, "dup@example.com"), 409, "conflict")
    assert_error(await create_user(api, owner, "DUP@Example.COM", "admin"), 409, "conflict")
    for email in ("not-an-email", "", "a@", "@b.com"):
        assert_error(await create_user(api, owner, email), 422)
    emails = [u["email"] for u in (await api.client.get("/api/v1/users", headers=owner)).json()]
    assert emails.count("dup@example.com") == 1
    assert len(emails) == 2  # the owner and dup


async def test_weak_passwords_are_refused(api, owner):
    before = await list_emails(api, owner)
    for password in ("short", "123456789", "aaaaaaaaaaaaaaaa", "abababababab", " " * 12):
        r = await create_user(api, owner, "weak@example.com", password=password)
        assert r.status_code == 422, (password, r.text)
        assert r.json()["error"] in ("weak_password", "validation_error"), r.text
    assert await list_emails(api, owner) == before  # nothing half-written

    user = await created_user(api, owner, "changer@example.com")
    r = await api.client.patch(f"/api/v1/users/{user['id']}", headers=owner, json={"password": "abc"})
    assert_error(r, 422, "weak_password")
    await api.login("changer@example.com")  # the old password still works


async def test_password_change_ends_sessions_and_swaps_the_password(api, owner):
    user = await created_user(api, owner, "rotate@example.com")
    tokens = await api.login("rotate@example.com")
    r = await api.client.patch(f"/api/v1/users/{user['id']}", headers=owner,
                               json={"password": "a-brand-new-passphrase"})
    assert r.status_code == 200, r.text
    assert (await api.client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).status_code == 401
    r = await api.client.post("/api/v1/auth/login", json={"email": "rotate@example.com", "password": PASSWORD})
    assert_error(r, 401)
    await api.login("rotate@example.com", "a-brand-new-passphrase")


async def test_changing_a_role_ends_the_users_sessions(api, owner, device):
    c = api.client
    user = await created_user(api, owner, "promoted@example.com", "viewer")
    tokens = await api.login("promoted@example.com")
    viewer = bearer(tokens["access_token"])
    assert_error(await c.put(f"/api/v1/devices/{device['uuid']}/target-state", headers=viewer, json=TARGET), 403)

    r = await c.patch(f"/api/v1/users/{user['id']}", headers=owner, json={"role": "operator"})
    assert r.status_code == 200, r.text
    # The old tokens (which name the old role) stop working at once ...
    assert (await c.get("/api/v1/auth/me", headers=viewer)).status_code == 401
    assert (await c.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    # ... and a new login carries the new rights.
    operator = bearer((await api.login("promoted@example.com"))["access_token"])
    assert (await me(api, operator))["role"] == "operator"
    r = await c.put(f"/api/v1/devices/{device['uuid']}/target-state", headers=operator, json=TARGET)
    assert r.status_code == 200, r.text


async def test_demotion_takes_rights_away_at_once(api, owner):
    admin_user = await created_user(api, owner, "demoted@example.com", "admin")
    admin = bearer((await api.login("demoted@example.com"))["access_token"])
    assert (await api.client.get("/api/v1/users", headers=admin)).status_code == 200
    r = await api.client.patch(f"/api/v1/users/{admin_user['id']}", headers=owner, json={"role": "viewer"})
    assert r.status_code == 200
    assert_error(await api.client.get("/api/v1/users", headers=admin), 401)
    viewer = bearer((await api.login("demoted@example.com"))["access_token"])
    assert_error(await api.client.get("/api/v1/users", headers=viewer), 403)


# Password storage ---------------------------------------------------------------------------------------------

async def test_passwords_are_stored_as_argon2id(api, owner, app):
    password = "Stored-Hashed-Passphrase-42"
    await created_user_with_password(api, owner, "hashed@example.com", password)
    async with app.state.ctx.sessions() as session:
        stored = await session.scalar(select(User.password_hash).where(User.email == "hashed@example.com"))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert password not in stored
    assert password.lower() not in stored.lower()
    assert verify_password(stored, password)


async def created_user_with_password(api: Any, headers: dict[str, str], email: str, password: str) -> None:
    r = await create_user(api, headers, email, "viewer", password=password)
    assert r.status_code == 201, r.text
    await api.login(email, password)
