"""Device registration, key exchange, re-registration and key rotation (the device <-> cloud contract)."""

from __future__ import annotations

import hashlib
import secrets
import uuid as uuidlib
from typing import Any

from sqlalchemy import func, select

from iotistic.cloud.models import AuditEvent, Device, MqttAccount, MqttAclRule, ProvisioningKey
from iotistic.core.security import verify_mosquitto_password


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _body(device_uuid: str | None = None, **overrides: Any) -> dict[str, Any]:
    device_uuid = device_uuid or uuidlib.uuid4().hex
    return {"uuid": device_uuid, "deviceName": f"dev-{device_uuid[:6]}", "deviceType": "raspberrypi4",
            "deviceApiKey": secrets.token_urlsafe(32), **overrides}


async def _count(app: Any, model: Any, *where: Any) -> int:
    async with app.state.ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _device_row(app: Any, device_uuid: str) -> Device | None:
    async with app.state.ctx.sessions() as session:
        return await session.scalar(select(Device).where(Device.uuid == device_uuid))


async def _mqtt(app: Any, device_uuid: str) -> tuple[MqttAccount | None, list[MqttAclRule]]:
    async with app.state.ctx.sessions() as session:
        account = await session.scalar(select(MqttAccount).where(MqttAccount.username == device_uuid))
        rules = [] if account is None else list(account.rules)
        return account, rules


async def _poll(client: Any, device_uuid: str, api_key: str) -> int:
    r = await client.get(f"/api/v1/device/{device_uuid}/state", headers={"X-Device-API-Key": api_key})
    return r.status_code


async def _slots_used(api: Any, owner: dict[str, str], key_id: str) -> int:
    r = await api.client.get("/api/v1/provisioning-keys", headers=owner)
    assert r.status_code == 200, r.text
    (key,) = [k for k in r.json() if k["id"] == key_id]
    return int(key["devicesRegistered"])


# Registration ------------------------------------------------------------------------------------------------

async def test_register_returns_device_mqtt_and_vpn(api, owner, app):
    key = await api.provisioning_key(owner, maxDevices=5)
    device_uuid = uuidlib.uuid4().hex
    body, api_key = await api.register(key["key"], device_uuid)

    assert isinstance(body["id"], int)
    assert body["uuid"] == device_uuid
    assert body["status"] == "registered"
    mqtt = body["mqtt"]
    assert mqtt["username"] == device_uuid
    assert isinstance(mqtt["password"], str) and len(mqtt["password"]) >= 20
    assert mqtt["broker"] == app.state.ctx.settings.mqtt_broker_url
    assert "vpn" in body and isinstance(body["vpn"], dict)
    assert await _slots_used(api, owner, key["id"]) == 1
    # The device key works straight away.
    assert await _poll(api.client, device_uuid, api_key) == 200


async def test_credentials_are_stored_hashed(api, owner, app):
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"])
    device_uuid = body["uuid"]

    row = await _device_row(app, device_uuid)
    assert row is not None
    assert row.api_key_hash == hashlib.sha256(api_key.encode()).hexdigest()
    # The clear key is in no column of the device row.
    assert all(api_key not in str(getattr(row, c.key)) for c in Device.__table__.columns)

    account, rules = await _mqtt(app, device_uuid)
    assert account is not None
    password = body["mqtt"]["password"]
    # One PBKDF2 round: the password is 192 random bits (see GENERATED_SECRET_PBKDF2_ITERATIONS).
    assert account.password_hash.startswith("$7$1$")
    assert password not in account.password_hash
    assert verify_mosquitto_password(account.password_hash, password)
    assert not verify_mosquitto_password(account.password_hash, password + "x")
    assert account.kind == "device" and account.is_active
    assert account.device_id == body["id"]
    assert [(r.topic, r.access) for r in rules] == [(f"iot/device/{device_uuid}/#", "readwrite")]
    assert await _count(app, MqttAclRule, MqttAclRule.topic == f"iot/device/{device_uuid}/#",
                        MqttAclRule.access == "readwrite") == 1


async def test_register_records_optional_fields_and_key_fleet(api, owner):
    r = await api.client.post("/api/v1/fleets", json={"name": "greenhouse"}, headers=owner)
    assert r.status_code == 201, r.text
    fleet_id = r.json()["id"]
    key = await api.provisioning_key(owner, fleet="greenhouse")
    body, _ = await api.register(key["key"], osVersion="Debian 12", agentVersion="1.2.3", macAddress="aa:bb")
    assert body["fleet"] == {"id": fleet_id, "name": "greenhouse"}
    r = await api.client.get(f"/api/v1/devices/{body['uuid']}", headers=owner)
    assert r.status_code == 200
    device = r.json()
    assert device["osVersion"] == "Debian 12"
    assert device["agentVersion"] == "1.2.3"
    assert device["fleet"]["name"] == "greenhouse"


async def test_register_needs_a_valid_provisioning_key(api, owner, app):
    body = _body()
    r = await api.client.post("/api/v1/device/register", json=body)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    r = await api.client.post("/api/v1/device/register", json=body, headers=_bearer("pk_not-a-real-key"))
    assert r.status_code == 401
    assert set(r.json()) >= {"error", "message"}
    # A user access token is not a provisioning key.
    r = await api.client.post("/api/v1/device/register", json=body, headers=owner)
    assert r.status_code == 401

    key = await api.provisioning_key(owner)
    r = await api.client.delete(f"/api/v1/provisioning-keys/{key['id']}", headers=owner)
    assert r.status_code == 204
    r = await api.client.post("/api/v1/device/register", json=body, headers=_bearer(key["key"]))
    assert r.status_code == 401
    assert await _count(app, Device) == 0
    assert await _count(app, MqttAccount) == 0


async def test_provisioning_key_max_devices_is_enforced(api, owner, app):
    key = await api.provisioning_key(owner, maxDevices=2)
    await api.register(key["key"])
    await api.register(key["key"])
    r = await api.client.post("/api/v1/device/register", json=_body(), headers=_bearer(key["key"]))
    assert r.status_code == 403
    assert "maxDevices" in r.json()["message"]
    assert await _count(app, Device) == 2
    assert await _count(app, MqttAccount) == 2
    assert await _slots_used(api, owner, key["id"]) == 2


async def test_device_api_key_of_another_device_is_refused(api, owner, app):
    key = await api.provisioning_key(owner)
    _, api_key = await api.register(key["key"])
    r = await api.client.post("/api/v1/device/register", json=_body(deviceApiKey=api_key),
                              headers=_bearer(key["key"]))
    assert r.status_code == 409
    assert await _count(app, Device) == 1
    assert await _slots_used(api, owner, key["id"]) == 1


# Key exchange -------------------------------------------------------------------------------------------------

async def test_key_exchange_activates_the_device(api, owner, app):
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"])
    device_uuid = body["uuid"]
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.json()["status"] == "registered"

    r = await api.client.post(f"/api/v1/device/{device_uuid}/key-exchange", headers=_bearer(api_key))
    assert r.status_code == 200, r.text
    assert r.json()["uuid"] == device_uuid
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.json()["status"] == "active"
    row = await _device_row(app, device_uuid)
    assert row is not None and row.key_exchanged_at is not None

    # The header form works too, and repeating it is harmless.
    r = await api.client.post(f"/api/v1/device/{device_uuid}/key-exchange",
                              headers={"X-Device-API-Key": api_key})
    assert r.status_code == 200
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.json()["status"] == "active"


async def test_key_exchange_for_another_device_is_forbidden(api, owner):
    key = await api.provisioning_key(owner)
    _, key_a = await api.register(key["key"])
    b, _ = await api.register(key["key"])
    r = await api.client.post(f"/api/v1/device/{b['uuid']}/key-exchange", headers=_bearer(key_a))
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    r = await api.client.get(f"/api/v1/devices/{b['uuid']}", headers=owner)
    assert r.json()["status"] == "registered"


async def test_key_exchange_with_a_wrong_key_is_unauthorized(api, owner):
    key = await api.provisioning_key(owner)
    body, _ = await api.register(key["key"])
    r = await api.client.post(f"/api/v1/device/{body['uuid']}/key-exchange", headers=_bearer("wrong" * 10))
    assert r.status_code == 401
    r = await api.client.post(f"/api/v1/device/{body['uuid']}/key-exchange")
    assert r.status_code == 401
    # Nor does the provisioning key authenticate the device.
    r = await api.client.post(f"/api/v1/device/{body['uuid']}/key-exchange", headers=_bearer(key["key"]))
    assert r.status_code == 401
    r = await api.client.get(f"/api/v1/devices/{body['uuid']}", headers=owner)
    assert r.json()["status"] == "registered"


# Re-registration ----------------------------------------------------------------------------------------------

async def test_reregistering_is_idempotent_and_replaces_credentials(api, owner, app):
    key = await api.provisioning_key(owner, maxDevices=3)
    device_uuid = uuidlib.uuid4().hex
    first, old_key = await api.register(key["key"], device_uuid)
    old_password = first["mqtt"]["password"]

    new_body = _body(device_uuid, deviceName="renamed")
    r = await api.client.post("/api/v1/device/register", json=new_body, headers=_bearer(key["key"]))
    assert r.status_code == 200, r.text
    second = r.json()
    new_key = new_body["deviceApiKey"]
    assert second["id"] == first["id"]
    assert second["uuid"] == device_uuid
    assert second["mqtt"]["username"] == device_uuid
    assert second["mqtt"]["password"] != old_password

    assert await _count(app, Device, Device.uuid == device_uuid) == 1
    assert await _count(app, MqttAccount) == 1
    assert await _count(app, MqttAclRule) == 1
    assert await _slots_used(api, owner, key["id"]) == 1

    # Old credentials stop working, new ones work.
    assert await _poll(api.client, device_uuid, old_key) == 401
    assert await _poll(api.client, device_uuid, new_key) == 200
    account, _ = await _mqtt(app, device_uuid)
    assert account is not None
    assert not verify_mosquitto_password(account.password_hash, old_password)
    assert verify_mosquitto_password(account.password_hash, second["mqtt"]["password"])

    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.json()["name"] == "renamed"


async def test_reregistering_with_the_same_api_key_still_works(api, owner, app):
    key = await api.provisioning_key(owner)
    body = _body()
    for expected in (201, 200):
        r = await api.client.post("/api/v1/device/register", json=body, headers=_bearer(key["key"]))
        assert r.status_code == expected, r.text
    assert await _count(app, Device) == 1
    assert await _poll(api.client, body["uuid"], body["deviceApiKey"]) == 200


async def test_reregistering_with_another_provisioning_key_conflicts(api, owner, app):
    key1 = await api.provisioning_key(owner)
    key2 = await api.provisioning_key(owner)
    device_uuid = uuidlib.uuid4().hex
    first, api_key = await api.register(key1["key"], device_uuid)

    r = await api.client.post("/api/v1/device/register", json=_body(device_uuid), headers=_bearer(key2["key"]))
    assert r.status_code == 409
    assert r.json()["error"] == "conflict"
    assert await _slots_used(api, owner, key2["id"]) == 0
    # The first registration is untouched.
    assert await _poll(api.client, device_uuid, api_key) == 200
    account, _ = await _mqtt(app, device_uuid)
    assert account is not None and verify_mosquitto_password(account.password_hash, first["mqtt"]["password"])


async def test_reregistering_with_another_devices_api_key_conflicts(api, owner, app):
    """Taking over the API key of another device must be refused cleanly (not a 500), changing nothing."""
    key = await api.provisioning_key(owner)
    a, key_a = await api.register(key["key"])
    b, key_b = await api.register(key["key"])
    r = await api.client.post("/api/v1/device/register", json=_body(b["uuid"], deviceApiKey=key_a),
                              headers=_bearer(key["key"]))
    assert r.status_code == 409, r.text
    assert set(r.json()) >= {"error", "message"}
    assert await _poll(api.client, a["uuid"], key_a) == 200
    assert await _poll(api.client, b["uuid"], key_b) == 200
    account, _ = await _mqtt(app, b["uuid"])
    assert account is not None and verify_mosquitto_password(account.password_hash, b["mqtt"]["password"])


async def test_reregistering_a_disabled_device_conflicts(api, owner):
    key = await api.provisioning_key(owner)
    body = _body()
    r = await api.client.post("/api/v1/device/register", json=body, headers=_bearer(key["key"]))
    assert r.status_code == 201
    r = await api.client.patch(f"/api/v1/devices/{body['uuid']}", json={"status": "disabled"}, headers=owner)
    assert r.status_code == 200
    again = _body(body["uuid"])
    r = await api.client.post("/api/v1/device/register", json=again, headers=_bearer(key["key"]))
    assert r.status_code == 409
    assert await _poll(api.client, body["uuid"], again["deviceApiKey"]) == 401


# Key rotation -------------------------------------------------------------------------------------------------

async def test_rotate_key_server_generated(api, owner, app):
    key = await api.provisioning_key(owner)
    body, old_key = await api.register(key["key"])
    device_uuid = body["uuid"]
    r = await api.client.post(f"/api/v1/device/{device_uuid}/rotate-key", headers=_bearer(old_key))
    assert r.status_code == 200, r.text
    new_key = r.json()["deviceApiKey"]
    assert new_key and new_key != old_key
    assert await _poll(api.client, device_uuid, old_key) == 401
    assert await _poll(api.client, device_uuid, new_key) == 200
    row = await _device_row(app, device_uuid)
    assert row is not None and row.api_key_hash == hashlib.sha256(new_key.encode()).hexdigest()
    # The old key cannot rotate again either.
    r = await api.client.post(f"/api/v1/device/{device_uuid}/rotate-key", headers=_bearer(old_key))
    assert r.status_code == 401


async def test_rotate_key_device_supplied(api, owner):
    key = await api.provisioning_key(owner)
    body, old_key = await api.register(key["key"])
    device_uuid = body["uuid"]
    chosen = secrets.token_urlsafe(40)
    r = await api.client.post(f"/api/v1/device/{device_uuid}/rotate-key", json={"deviceApiKey": chosen},
                              headers={"X-Device-API-Key": old_key})
    assert r.status_code == 200, r.text
    assert r.json()["deviceApiKey"] == chosen
    assert await _poll(api.client, device_uuid, old_key) == 401
    assert await _poll(api.client, device_uuid, chosen) == 200
    r = await api.client.post(f"/api/v1/device/{device_uuid}/key-exchange", headers=_bearer(chosen))
    assert r.status_code == 200


async def test_rotate_key_refuses_bad_or_taken_keys_and_other_devices(api, owner):
    key = await api.provisioning_key(owner)
    a, key_a = await api.register(key["key"])
    b, key_b = await api.register(key["key"])
    r = await api.client.post(f"/api/v1/device/{a['uuid']}/rotate-key", json={"deviceApiKey": "short"},
                              headers=_bearer(key_a))
    assert r.status_code == 422
    r = await api.client.post(f"/api/v1/device/{a['uuid']}/rotate-key", json={"deviceApiKey": key_b},
                              headers=_bearer(key_a))
    assert r.status_code == 409
    r = await api.client.post(f"/api/v1/device/{b['uuid']}/rotate-key", headers=_bearer(key_a))
    assert r.status_code == 403
    # Nothing changed.
    assert await _poll(api.client, a["uuid"], key_a) == 200
    assert await _poll(api.client, b["uuid"], key_b) == 200


# Bad input ----------------------------------------------------------------------------------------------------

def _bad_bodies() -> list[tuple[str, Any]]:
    good = _body()
    missing = [(f"missing {f}", {k: v for k, v in good.items() if k != f})
               for f in ("uuid", "deviceName", "deviceType", "deviceApiKey")]
    return [
        *missing,
        ("short deviceApiKey", {**good, "deviceApiKey": "abc"}),
        ("deviceApiKey with spaces", {**good, "deviceApiKey": "a " * 20}),
        ("uuid with slash", {**good, "uuid": "abcd/efgh1234"}),
        ("uuid with hash", {**good, "uuid": "abcdefgh#1234"}),
        ("uuid with plus", {**good, "uuid": "abcdefgh+1234"}),
        ("uuid too short", {**good, "uuid": "abc"}),
        ("uuid as number", {**good, "uuid": 123456789}),
        ("deviceName as number", {**good, "deviceName": 42}),
        ("deviceName empty", {**good, "deviceName": ""}),
        ("deviceName with control char", {**good, "deviceName": "bad\nname"}),
        ("deviceType as list", {**good, "deviceType": ["pi"]}),
        ("deviceApiKey as object", {**good, "deviceApiKey": {"k": "v" * 40}}),
        ("unknown field", {**good, "surprise": True}),
        ("list body", [good]),
        ("null body", None),
    ]


async def test_bad_registration_input_is_refused_and_nothing_is_written(api, owner, app):
    key = await api.provisioning_key(owner)
    for name, payload in _bad_bodies():
        r = await api.client.post("/api/v1/device/register", json=payload, headers=_bearer(key["key"]))
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        body = r.json()
        assert isinstance(body["error"], str) and isinstance(body["message"], str) and body["message"], name
    assert await _count(app, Device) == 0
    assert await _count(app, MqttAccount) == 0
    assert await _count(app, AuditEvent, AuditEvent.action.like("device.%")) == 0
    assert await _slots_used(api, owner, key["id"]) == 0


async def test_validation_errors_name_the_field(api, owner):
    key = await api.provisioning_key(owner)
    r = await api.client.post("/api/v1/device/register", json={**_body(), "uuid": "abcd/efgh1234"},
                              headers=_bearer(key["key"]))
    assert r.status_code == 422
    assert r.json()["error"] == "validation_error"
    assert "uuid" in r.json()["message"]
    body = _body()
    del body["deviceApiKey"]
    r = await api.client.post("/api/v1/device/register", json=body, headers=_bearer(key["key"]))
    assert r.status_code == 422
    assert "deviceApiKey" in r.json()["message"]


async def test_non_json_registration_body_is_refused(api, owner, app):
    key = await api.provisioning_key(owner)
    for content, ctype in ((b"{not json", "application/json"), (b"uuid=abc", "application/x-www-form-urlencoded"),
                           (b"", "application/json"), (b"\xff\xfe", "application/json")):
        r = await api.client.post("/api/v1/device/register", content=content,
                                  headers={**_bearer(key["key"]), "Content-Type": ctype})
        assert 400 <= r.status_code < 500, (content, r.status_code, r.text)
        assert set(r.json()) >= {"error", "message"}
    assert await _count(app, Device) == 0
    assert await _count(app, ProvisioningKey, ProvisioningKey.devices_registered > 0) == 0
