"""Provisioning keys: secret shown once and stored hashed, revocation, expiry, fleets, and atomic maxDevices."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import uuid as uuidlib
from typing import Any

from sqlalchemy import func, select, update

from iotistic.cloud.models import Device, MqttAccount, ProvisioningKey


def registration(device_uuid: str | None = None) -> dict[str, Any]:
    device_uuid = device_uuid or uuidlib.uuid4().hex
    return {"uuid": device_uuid, "deviceName": f"dev-{device_uuid[:6]}", "deviceType": "raspberrypi4",
            "deviceApiKey": secrets.token_urlsafe(32)}


async def register(client: Any, key: str | None, body: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return await client.post("/api/v1/device/register", json=body or registration(), headers=headers)


def assert_error(r: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if error is not None:
        assert body["error"] == error, body
    return body


async def listed(api: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = await api.client.get("/api/v1/provisioning-keys", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def key_row(app: Any, key_id: str) -> ProvisioningKey:
    async with app.state.ctx.sessions() as session:
        row = await session.get(ProvisioningKey, key_id)
        assert row is not None
        return row


async def count(app: Any, model: Any) -> int:
    async with app.state.ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# Creation and storage -----------------------------------------------------------------------------------------

async def test_create_shows_the_secret_once(api, owner):
    created = await api.provisioning_key(owner, maxDevices=5, description="line 3")
    secret = created["key"]
    assert secret.startswith("pk_") and len(secret) >= 40
    assert created["maxDevices"] == 5
    assert created["devicesRegistered"] == 0
    assert created["description"] == "line 3"
    assert created["fleet"] is None and created["expiresAt"] is None and created["revokedAt"] is None
    assert created["keyPrefix"] == secret[:len(created["keyPrefix"])]
    assert len(created["keyPrefix"]) < len(secret) // 2  # a hint to recognise it, not the secret

    r = await api.client.get("/api/v1/provisioning-keys", headers=owner)
    assert r.status_code == 200
    (item,) = r.json()
    assert item["id"] == created["id"]
    assert "key" not in item
    assert secret not in r.text
    assert not any("hash" in k.lower() for k in item)

    # Each key is a new secret.
    other = await api.provisioning_key(owner)
    assert other["key"] != secret and other["id"] != created["id"]


async def test_key_is_stored_only_as_a_sha256_hash(api, owner, app):
    created = await api.provisioning_key(owner, description="hashed")
    secret = created["key"]
    row = await key_row(app, created["id"])
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    for column in ProvisioningKey.__table__.columns:
        value = getattr(row, column.key)
        if isinstance(value, str):
            assert secret not in value, column.key
    assert len(row.key_prefix) < len(secret) // 2


async def test_create_validation(api, owner):
    c = api.client
    for body in ({"maxDevices": 0}, {"maxDevices": -1}, {"maxDevices": "many"}, {"unknown": 1},
                 {"expiresAt": "not a date"}, {"expiresAt": "2099-01-01T00:00:00"}, {"description": "x" * 501}):
        r = await c.post("/api/v1/provisioning-keys", headers=owner, json=body)
        assert_error(r, 422)
    assert await listed(api, owner) == []


async def test_registration_needs_a_valid_key(api, owner):
    await api.provisioning_key(owner)
    assert_error(await register(api.client, None), 401)
    assert_error(await register(api.client, "pk_garbage"), 401)
    assert_error(await register(api.client, ""), 401)
    r = await api.client.get("/api/v1/devices", headers=owner)
    assert r.json()["total"] == 0


# Revocation ---------------------------------------------------------------------------------------------------

async def test_revoked_key_cannot_register(api, owner, app):
    created = await api.provisioning_key(owner, maxDevices=10)
    _, device_key = await api.register(created["key"])

    r = await api.client.delete(f"/api/v1/provisioning-keys/{created['id']}", headers=owner)
    assert r.status_code == 204, r.text
    assert_error(await register(api.client, created["key"]), 401)

    # Revoked keys leave the default list but stay visible on request.
    assert await listed(api, owner) == []
    (item,) = await listed(api, owner, include_revoked="true")
    assert item["id"] == created["id"] and item["revokedAt"] is not None
    revoked_at = item["revokedAt"]
    # Revoking again is harmless and keeps the first time.
    assert (await api.client.delete(f"/api/v1/provisioning-keys/{created['id']}", headers=owner)).status_code == 204
    assert (await listed(api, owner, include_revoked="true"))[0]["revokedAt"] == revoked_at

    # Devices already registered with it keep working: they use their own API key.
    device_uuid = (await api.client.get("/api/v1/devices", headers=owner)).json()["items"][0]["uuid"]
    r = await api.client.get(f"/api/v1/device/{device_uuid}/state", headers={"X-Device-API-Key": device_key})
    assert r.status_code == 200, r.text
    assert await count(app, Device) == 1

    assert_error(await api.client.delete(f"/api/v1/provisioning-keys/{uuidlib.uuid4()}", headers=owner), 404)

    # Both actions are in the audit log, without the secret.
    r = await api.client.get("/api/v1/audit", headers=owner)
    assert r.status_code == 200
    events = [(e["action"], e["targetId"]) for e in r.json()]
    assert ("provisioning_key.created", created["id"]) in events
    assert ("provisioning_key.revoked", created["id"]) in events
    assert created["key"] not in r.text


# Expiry -------------------------------------------------------------------------------------------------------

async def test_expires_at_in_the_past_is_refused(api, owner):
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    body = assert_error(await api.client.post("/api/v1/provisioning-keys", headers=owner, json={"expiresAt": past}),
                        400)
    assert body["message"] == "expiresAt must be in the future"
    # The field is named as in a validation error, so a form shows the message next to it.
    assert body["details"] == [{"loc": ["body", "expiresAt"], "msg": "must be in the future"}]
    assert await listed(api, owner, include_revoked="true") == []


async def test_expired_key_cannot_register(api, owner, app):
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    created = await api.provisioning_key(owner, expiresAt=future.isoformat())
    assert dt.datetime.fromisoformat(created["expiresAt"].replace("Z", "+00:00")) == future
    await api.register(created["key"])  # valid until it expires

    async with app.state.ctx.sessions() as session:
        await session.execute(update(ProvisioningKey).where(ProvisioningKey.id == created["id"])
                              .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        await session.commit()
    body = assert_error(await register(api.client, created["key"]), 401)
    assert "expired" in body["message"]
    assert await count(app, Device) == 1


# Fleets -------------------------------------------------------------------------------------------------------

async def test_fleet_scoped_key_puts_devices_in_its_fleet(api, owner):
    c = api.client
    r = await c.post("/api/v1/fleets", headers=owner, json={"name": "greenhouse"})
    assert r.status_code == 201, r.text
    fleet = r.json()
    r = await c.post("/api/v1/fleets", headers=owner, json={"name": "warehouse"})
    assert r.status_code == 201, r.text

    by_name = await api.provisioning_key(owner, fleet="greenhouse")
    assert by_name["fleet"] == {"id": fleet["id"], "name": "greenhouse"}
    by_id = await api.provisioning_key(owner, fleet=fleet["id"])
    assert by_id["fleet"]["name"] == "greenhouse"
    unscoped = await api.provisioning_key(owner)

    first, _ = await api.register(by_name["key"])
    second, _ = await api.register(by_id["key"])
    loose, _ = await api.register(unscoped["key"])
    assert first["fleet"] == {"id": fleet["id"], "name": "greenhouse"}
    assert second["fleet"]["name"] == "greenhouse"
    assert loose["fleet"] is None

    r = await c.get(f"/api/v1/devices/{first['uuid']}", headers=owner)
    assert r.json()["fleet"]["name"] == "greenhouse"
    r = await c.get("/api/v1/devices", headers=owner, params={"fleet": "greenhouse"})
    assert {d["uuid"] for d in r.json()["items"]} == {first["uuid"], second["uuid"]}
    r = await c.get("/api/v1/devices", headers=owner, params={"fleet": "warehouse"})
    assert r.json()["total"] == 0
    r = await c.get(f"/api/v1/fleets/{fleet['id']}", headers=owner)
    assert r.json()["deviceCount"] == 2

    # The key decides the fleet, not the device.
    warehouse_id = next(f["id"] for f in (await c.get("/api/v1/fleets", headers=owner)).json()
                        if f["name"] == "warehouse")
    third, _ = await api.register(by_name["key"], applicationId=warehouse_id)
    assert third["fleet"]["id"] == fleet["id"]

    # A key for a fleet that does not exist is refused.
    for unknown in ("nowhere", 424242):
        r = await c.post("/api/v1/provisioning-keys", headers=owner, json={"fleet": unknown})
        assert_error(r, 400, "unknown_fleet")
    assert len(await listed(api, owner)) == 3


async def test_max_devices_is_enforced(api, owner, app):
    created = await api.provisioning_key(owner, maxDevices=2)
    first = registration()
    assert (await register(api.client, created["key"], first)).status_code == 201
    assert (await register(api.client, created["key"])).status_code == 201
    body = assert_error(await register(api.client, created["key"]), 403, "provisioning_key_exhausted")
    assert "2" in body["message"]
    (item,) = await listed(api, owner)
    assert item["devicesRegistered"] == 2

    # The same device coming back is idempotent, uses no new slot, and is allowed on an exhausted key.
    again = {**first, "deviceApiKey": secrets.token_urlsafe(32)}
    r = await register(api.client, created["key"], again)
    assert r.status_code == 200, r.text
    assert r.json()["uuid"] == first["uuid"]
    assert (await listed(api, owner))[0]["devicesRegistered"] == 2
    assert await count(app, Device) == 2

    # Another key is unaffected.
    other = await api.provisioning_key(owner, maxDevices=1)
    assert (await register(api.client, other["key"])).status_code == 201


async def test_concurrent_registrations_cannot_exceed_max_devices(api, owner, app):
    created = await api.provisioning_key(owner, maxDevices=3)
    results = await asyncio.gather(*(register(api.client, created["key"]) for _ in range(20)))
    statuses = [r.status_code for r in results]
    assert statuses.count(201) == 3, statuses
    assert statuses.count(403) == 17, statuses
    for r in results:
        if r.status_code == 403:
            assert r.json()["error"] == "provisioning_key_exhausted", r.text

    (item,) = await listed(api, owner)
    assert item["devicesRegistered"] == 3
    row = await key_row(app, created["id"])
    assert row.devices_registered == 3
    # Nothing half-written for the refused ones.
    assert await count(app, Device) == 3
    assert await count(app, MqttAccount) == 3
    registered = {r.json()["uuid"] for r in results if r.status_code == 201}
    r = await api.client.get("/api/v1/devices", headers=owner)
    assert {d["uuid"] for d in r.json()["items"]} == registered


async def test_unlimited_key_registers_many_concurrently(api, owner, app):
    created = await api.provisioning_key(owner)
    results = await asyncio.gather(*(register(api.client, created["key"]) for _ in range(10)))
    assert [r.status_code for r in results] == [201] * 10, [r.text for r in results if r.status_code != 201]
    assert (await listed(api, owner))[0]["devicesRegistered"] == 10
    assert await count(app, Device) == 10


# Audit --------------------------------------------------------------------------------------------------------
