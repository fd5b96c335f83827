"""MQTT accounts and ACL rules through the API: roles, validation, passwords shown once and stored as Mosquitto
hashes, device accounts following their device, the audit log, and the snapshot the broker is built from."""

from __future__ import annotations

import secrets
import uuid as uuidlib
from typing import Any

import pytest
from sqlalchemy import func, select

from iotistic.cloud.models import AuditEvent, MqttAccount, MqttAclRule, ProvisioningKey, Role
from iotistic.cloud.services.mqtt_accounts import load_acl_snapshot
from iotistic.core.acl import AccountAcl, AclRule, may_publish, may_subscribe
from iotistic.core.security import verify_mosquitto_password

ACCOUNTS = "/api/v1/mqtt/accounts"
STRONG = "ingest-Secret-2024-xyz"


def assert_error(r: Any, status: int, error: str | None = None, message: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if error is not None:
        assert body["error"] == error, body
    if message is not None:
        assert message in body["message"], body
    return body


async def create(api: Any, headers: dict[str, str], username: str = "ingest", kind: str = "service",
                 **body: Any) -> dict[str, Any]:
    r = await api.client.post(ACCOUNTS, headers=headers, json={"username": username, "kind": kind, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def row(app: Any, account_id: int) -> MqttAccount | None:
    async with app.state.ctx.sessions() as session:
        return await session.get(MqttAccount, account_id)


async def count(app: Any, model: Any, *where: Any) -> int:
    async with app.state.ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def audit_actions(app: Any) -> list[AuditEvent]:
    async with app.state.ctx.sessions() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())


async def register_device(api: Any, owner: dict[str, str]) -> dict[str, Any]:
    key = await api.provisioning_key(owner)
    body, _ = await api.register(key["key"])
    return body


async def device_account(api: Any, headers: dict[str, str], device_uuid: str) -> dict[str, Any]:
    r = await api.client.get(ACCOUNTS, headers=headers, params={"kind": "device", "limit": 500})
    assert r.status_code == 200, r.text
    (account,) = [a for a in r.json()["items"] if a["deviceUuid"] == device_uuid]
    return account


# Creation and passwords ---------------------------------------------------------------------------------------------

async def test_generated_password_is_shown_once_and_stored_as_a_mosquitto_hash(api, owner, app):
    created = await create(api, owner, "ingest", rules=[{"topic": "iot/device/+/#", "access": "read"}])
    password = created["password"]
    assert isinstance(password, str) and len(password) >= 32
    assert created["username"] == "ingest" and created["kind"] == "service" and created["isActive"] is True
    assert created["deviceUuid"] is None
    assert [(r["topic"], r["access"]) for r in created["rules"]] == [("iot/device/+/#", "read")]
    assert not any("hash" in k.lower() for k in created)

    # Never again: not in the account, the list or the audit log.
    for path in (f"{ACCOUNTS}/{created['id']}", ACCOUNTS, f"{ACCOUNTS}/{created['id']}/rules", "/api/v1/audit"):
        r = await api.client.get(path, headers=owner)
        assert r.status_code == 200, r.text
        assert password not in r.text and "$7$" not in r.text
    got = (await api.client.get(f"{ACCOUNTS}/{created['id']}", headers=owner)).json()
    assert "password" not in got

    account = await row(app, created["id"])
    assert account is not None
    assert account.password_hash.startswith("$7$")
    _, kind, iterations, _salt, _digest = account.password_hash.split("$")
    assert kind == "7" and int(iterations) >= 1
    assert verify_mosquitto_password(account.password_hash, password)
    assert not verify_mosquitto_password(account.password_hash, password + "x")
    for column in MqttAccount.__table__.columns:
        value = getattr(account, column.key)
        assert not (isinstance(value, str) and password in value), column.key

    other = await create(api, owner, "ingest-2")
    assert other["password"] != password


async def test_chosen_password_is_checked_and_not_echoed(api, owner, app):
    created = await create(api, owner, "grafana", kind="integration", password=STRONG)
    assert created["password"] is None and created["kind"] == "integration"
    account = await row(app, created["id"])
    assert account is not None and verify_mosquitto_password(account.password_hash, STRONG)

    for password, error, message in [("short-pass", "weak_password", "at least 16 characters"),
                                     ("a" * 20, "weak_password", "too simple"),
                                     ("abababababababababab", "weak_password", "too simple"),
                                     ("good-password-but\ttab", "invalid_password", "control characters")]:
        r = await api.client.post(ACCOUNTS, headers=owner,
                                  json={"username": "weak", "kind": "service", "password": password})
        assert_error(r, 422, error, message)
    r = await api.client.post(ACCOUNTS, headers=owner, json={"username": "weak", "kind": "service",
                                                             "password": "x" * 257})
    assert_error(r, 422, "validation_error", "password")
    assert await count(app, MqttAccount) == 1


@pytest.mark.parametrize("username", ["", "a:b", "a b", "tab\there", "line\nbreak", "nul\x00", "a/b", "a+b", "a#b",
                                      "%u", "x" * 129, "-leading-dash", ".dot", "ümlaut", "semi;colon", "star*",
                                      "quote'"])
async def test_unsafe_usernames_are_refused(api, owner, app, username):
    r = await api.client.post(ACCOUNTS, headers=owner, json={"username": username, "kind": "service"})
    assert_error(r, 422, "validation_error", "body.username")
    assert await count(app, MqttAccount) == 0


async def test_create_validation(api, owner, app):
    c = api.client
    for name in ("a", "svc.ingest-1", "user@example.com", "A_b.c-d@e", "x" * 128):
        await create(api, owner, name)

    r = await c.post(ACCOUNTS, headers=owner, json={"username": "dev", "kind": "device"})
    assert_error(r, 422, "validation_error", "device accounts are created by registering the device")
    for kind in ("admin", "", None, 1):
        assert_error(await c.post(ACCOUNTS, headers=owner, json={"username": "k", "kind": kind}), 422,
                     "validation_error", "body.kind")
    assert_error(await c.post(ACCOUNTS, headers=owner, json={"username": "k"}), 422, "validation_error", "kind")
    assert_error(await c.post(ACCOUNTS, headers=owner, json={"username": "k", "kind": "service", "admin": True}), 422)
    assert_error(await c.post(ACCOUNTS, headers=owner, json={"username": "k", "kind": "service", "rules": [
        {"topic": "a/#/b", "access": "read"}]}), 422, "validation_error", "'#' must be the last level")
    assert_error(await c.post(ACCOUNTS, headers=owner, json={"username": "k", "kind": "service", "rules": [
        {"topic": "a", "access": "all"}]}), 422, "validation_error", "access")

    # Names are unique, also against device uuids (a device account's username).
    assert_error(await c.post(ACCOUNTS, headers=owner, json={"username": "a", "kind": "integration"}), 409,
                 "conflict", "exists")
    device = await register_device(api, owner)
    assert_error(await c.post(ACCOUNTS, headers=owner, json={"username": device["uuid"], "kind": "service"}), 409,
                 "conflict", "uuid of a device")
    assert await count(app, MqttAccount) == 6


async def test_a_device_cannot_take_a_service_accounts_name(api, owner, app):
    taken = "service-" + uuidlib.uuid4().hex[:8]  # also a valid device uuid
    await create(api, owner, taken)
    key = await api.provisioning_key(owner)
    r = await api.client.post("/api/v1/device/register", headers={"Authorization": f"Bearer {key['key']}"}, json={
        "uuid": taken, "deviceName": "d", "deviceType": "pi", "deviceApiKey": secrets.token_urlsafe(32)})
    assert_error(r, 409, "conflict", "already the username of an MQTT")
    r = await api.client.post("/api/v1/devices", headers=owner, json={"name": "d", "uuid": taken})
    assert_error(r, 409, "conflict", "already the username of an MQTT")
    # Nothing of the attempts stayed: no device, no used slot of the key.
    assert (await api.client.get("/api/v1/devices", headers=owner)).json()["total"] == 0
    async with app.state.ctx.sessions() as session:
        assert (await session.get(ProvisioningKey, key["id"])).devices_registered == 0  # type: ignore[union-attr]


# Roles ----------------------------------------------------------------------------------------------------------------

async def test_roles(api, owner):
    created = await create(api, owner, "svc", rules=[{"topic": "a/#", "access": "read"}])
    account_path = f"{ACCOUNTS}/{created['id']}"
    rule_path = f"{account_path}/rules/{created['rules'][0]['id']}"
    writes = [("POST", ACCOUNTS, {"username": "new", "kind": "service"}),
              ("PATCH", account_path, {"isActive": False}),
              ("PATCH", account_path, {"resetPassword": True}),
              ("POST", f"{account_path}/rules", {"topic": "b/#", "access": "write"}),
              ("DELETE", rule_path, None),
              ("DELETE", account_path, None)]
    reads = [ACCOUNTS, account_path, f"{account_path}/rules"]

    for role in (Role.viewer, Role.operator):
        headers = await api.headers_for(role)
        for path in reads:
            r = await api.client.get(path, headers=headers)
            assert r.status_code == 200, (role, path, r.text)
        for method, path, body in writes:
            r = await api.client.request(method, path, headers=headers, json=body)
            assert_error(r, 403, "forbidden", "admin role")
    for path in reads:
        assert_error(await api.client.get(path), 401)
    for method, path, body in writes:
        assert_error(await api.client.request(method, path, json=body), 401)

    # Nothing changed; an admin may do all of it.
    admin = await api.headers_for(Role.admin)
    got = (await api.client.get(account_path, headers=admin)).json()
    assert got["isActive"] is True and len(got["rules"]) == 1
    for method, path, body in writes:
        r = await api.client.request(method, path, headers=admin, json=body)
        assert r.status_code in (200, 201, 204), (method, path, r.text)


# Listing --------------------------------------------------------------------------------------------------------------

async def test_list_pages_and_filters_by_kind(api, owner):
    device = await register_device(api, owner)
    for i in range(3):
        await create(api, owner, f"svc-{i}")
    for i in range(2):
        await create(api, owner, f"int-{i}", kind="integration")

    r = await api.client.get(ACCOUNTS, headers=owner)
    page = r.json()
    assert page["total"] == 6 and page["limit"] == 50 and page["offset"] == 0
    assert [a["username"] for a in page["items"]] == [device["uuid"], "svc-0", "svc-1", "svc-2", "int-0", "int-1"]

    dev = page["items"][0]
    assert dev["kind"] == "device" and dev["deviceUuid"] == device["uuid"] and dev["isActive"] is True
    assert [(x["topic"], x["access"]) for x in dev["rules"]] == [(f"iot/device/{device['uuid']}/#", "readwrite")]

    for kind, names in (("service", ["svc-0", "svc-1", "svc-2"]), ("integration", ["int-0", "int-1"]),
                        ("device", [device["uuid"]])):
        page = (await api.client.get(ACCOUNTS, headers=owner, params={"kind": kind})).json()
        assert [a["username"] for a in page["items"]] == names and page["total"] == len(names)

    page = (await api.client.get(ACCOUNTS, headers=owner, params={"limit": 2, "offset": 3})).json()
    assert [a["username"] for a in page["items"]] == ["svc-2", "int-0"] and page["total"] == 6
    page = (await api.client.get(ACCOUNTS, headers=owner, params={"offset": 100})).json()
    assert page["items"] == [] and page["total"] == 6

    for params in ({"kind": "admin"}, {"limit": 0}, {"limit": 501}, {"offset": -1}):
        assert_error(await api.client.get(ACCOUNTS, headers=owner, params=params), 422, "validation_error")


async def test_unknown_and_invalid_ids(api, owner):
    for path in (f"{ACCOUNTS}/999", f"{ACCOUNTS}/999/rules"):
        assert_error(await api.client.get(path, headers=owner), 404, "not_found", "MQTT account not found")
    assert_error(await api.client.patch(f"{ACCOUNTS}/999", headers=owner, json={}), 404)
    assert_error(await api.client.delete(f"{ACCOUNTS}/999", headers=owner), 404)
    assert_error(await api.client.delete(f"{ACCOUNTS}/999/rules/1", headers=owner), 404)
    for bad in ("0", "-1", "abc", str(2**31)):
        assert_error(await api.client.get(f"{ACCOUNTS}/{bad}", headers=owner), 422, "validation_error")


# Updating -------------------------------------------------------------------------------------------------------------

async def test_disable_enable_and_password_resets(api, owner, app):
    created = await create(api, owner, "svc")
    path = f"{ACCOUNTS}/{created['id']}"
    first = created["password"]

    r = await api.client.patch(path, headers=owner, json={"isActive": False})
    assert r.status_code == 200 and r.json()["isActive"] is False and r.json()["password"] is None
    assert (await row(app, created["id"])).is_active is False  # type: ignore[union-attr]
    r = await api.client.patch(path, headers=owner, json={"isActive": True})
    assert r.json()["isActive"] is True

    r = await api.client.patch(path, headers=owner, json={"resetPassword": True})
    assert r.status_code == 200, r.text
    second = r.json()["password"]
    assert isinstance(second, str) and len(second) >= 32 and second != first
    stored = (await row(app, created["id"])).password_hash  # type: ignore[union-attr]
    assert stored.startswith("$7$") and verify_mosquitto_password(stored, second)
    assert not verify_mosquitto_password(stored, first)
    assert second not in (await api.client.get(path, headers=owner)).text

    r = await api.client.patch(path, headers=owner, json={"password": STRONG})
    assert r.status_code == 200 and r.json()["password"] is None
    stored = (await row(app, created["id"])).password_hash  # type: ignore[union-attr]
    assert verify_mosquitto_password(stored, STRONG) and not verify_mosquitto_password(stored, second)

    assert_error(await api.client.patch(path, headers=owner, json={"password": "short"}), 422, "weak_password")
    assert_error(await api.client.patch(path, headers=owner, json={"password": STRONG, "resetPassword": True}), 422,
                 message="either password or resetPassword")
    assert_error(await api.client.patch(path, headers=owner, json={"isActive": "maybe"}), 422)
    assert_error(await api.client.patch(path, headers=owner, json={"username": "renamed"}), 422)
    # Failed attempts changed nothing.
    stored = (await row(app, created["id"])).password_hash  # type: ignore[union-attr]
    assert verify_mosquitto_password(stored, STRONG)

    before = len(await audit_actions(app))
    r = await api.client.patch(path, headers=owner, json={})
    assert r.status_code == 200 and r.json()["password"] is None
    r = await api.client.patch(path, headers=owner, json={"isActive": True})  # already active
    assert r.status_code == 200
    assert len(await audit_actions(app)) == before  # nothing changed, nothing audited


async def test_device_accounts_follow_their_device(api, owner, app):
    device = await register_device(api, owner)
    account = await device_account(api, owner, device["uuid"])
    path = f"{ACCOUNTS}/{account['id']}"

    # Not managed here: the device's status and registration decide.
    for body in ({"isActive": False}, {"resetPassword": True}, {"password": STRONG}):
        assert_error(await api.client.patch(path, headers=owner, json=body), 409, "conflict", "belongs to a device")
    assert_error(await api.client.delete(path, headers=owner), 409, "conflict", "belongs to a device")
    own_rule = account["rules"][0]
    assert_error(await api.client.delete(f"{path}/rules/{own_rule['id']}", headers=owner), 409, "conflict",
                 "device's own rule")
    # Asking for what already holds is no change, so no conflict.
    assert (await api.client.patch(path, headers=owner, json={"isActive": True})).status_code == 200

    # Extra rules are allowed (e.g. a broadcast topic) and can go again.
    r = await api.client.post(f"{path}/rules", headers=owner, json={"topic": "broadcast/#", "access": "read"})
    assert r.status_code == 201, r.text
    extra = r.json()
    assert (await api.client.delete(f"{path}/rules/{extra['id']}", headers=owner)).status_code == 204

    # Disabling the device disables its account; enabling it enables it again.
    r = await api.client.patch(f"/api/v1/devices/{device['uuid']}", headers=owner, json={"status": "disabled"})
    assert r.status_code == 200
    assert (await api.client.get(path, headers=owner)).json()["isActive"] is False
    r = await api.client.patch(f"/api/v1/devices/{device['uuid']}", headers=owner, json={"status": "active"})
    assert (await api.client.get(path, headers=owner)).json()["isActive"] is True

    # Deleting the device deletes the account and its rules.
    await api.client.post(f"{path}/rules", headers=owner, json={"topic": "broadcast/#", "access": "read"})
    assert (await api.client.delete(f"/api/v1/devices/{device['uuid']}", headers=owner)).status_code == 204
    assert_error(await api.client.get(path, headers=owner), 404)
    assert (await api.client.get(ACCOUNTS, headers=owner)).json()["total"] == 0
    assert await count(app, MqttAclRule) == 0


# Deleting -------------------------------------------------------------------------------------------------------------

async def test_delete_removes_the_account_and_its_rules(api, owner, app):
    keep = await create(api, owner, "keep", rules=[{"topic": "k/#", "access": "read"}])
    gone = await create(api, owner, "gone", rules=[{"topic": "g/#", "access": "read"},
                                                   {"topic": "g/%u/#", "access": "write"}])
    r = await api.client.delete(f"{ACCOUNTS}/{gone['id']}", headers=owner)
    assert r.status_code == 204
    assert_error(await api.client.get(f"{ACCOUNTS}/{gone['id']}", headers=owner), 404)
    assert_error(await api.client.delete(f"{ACCOUNTS}/{gone['id']}", headers=owner), 404)
    assert await count(app, MqttAclRule, MqttAclRule.account_id == gone["id"]) == 0
    assert await count(app, MqttAclRule, MqttAclRule.account_id == keep["id"]) == 1
    # The name is free again.
    await create(api, owner, "gone")


# Rules ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", ["#", "+", "a/+/b/#", "iot/device/%u/#", "clients/%c/in", "%u/%c", "$SYS/broker/#",
                                   "a//b", "/", "100%/x", "ünïcode/€"])
async def test_valid_rules(api, owner, topic):
    created = await create(api, owner, "svc")
    r = await api.client.post(f"{ACCOUNTS}/{created['id']}/rules", headers=owner,
                              json={"topic": topic, "access": "readwrite"})
    assert r.status_code == 201, r.text
    assert r.json()["topic"] == topic and r.json()["access"] == "readwrite"


@pytest.mark.parametrize(("topic", "message"), [
    ("", "must not be empty"),
    ("a/#/b", "'#' must be the last level"),
    ("a#", "'#' must occupy a whole level"),
    ("a/b+", "'+' must occupy a whole level"),
    ("iot/device-%u/#", "%u must occupy a whole level"),
    ("x/%cid", "%c must occupy a whole level"),
    ("$share/group/iot/#", "without the $share"),
    ("a/\x00", "NUL"),
    ("x" * 513, "at most 512"),
])
async def test_invalid_rule_topics_are_refused_with_a_clear_message(api, owner, app, topic, message):
    created = await create(api, owner, "svc")
    r = await api.client.post(f"{ACCOUNTS}/{created['id']}/rules", headers=owner,
                              json={"topic": topic, "access": "read"})
    body = assert_error(r, 422, "validation_error", message)
    assert body["message"].startswith("body.topic: ")
    assert await count(app, MqttAclRule) == 0


async def test_rules_add_list_delete(api, owner, app):
    a = await create(api, owner, "a")
    b = await create(api, owner, "b", rules=[{"topic": "b/#", "access": "read"}])
    rules = f"{ACCOUNTS}/{a['id']}/rules"

    added = []
    for topic, access in (("in/%u/#", "read"), ("out/%u/#", "write"), ("both/#", "readwrite"), ("in/%u/#", "write")):
        r = await api.client.post(rules, headers=owner, json={"topic": topic, "access": access})
        assert r.status_code == 201, r.text
        added.append(r.json())
    assert_error(await api.client.post(rules, headers=owner, json={"topic": "both/#", "access": "readwrite"}), 409,
                 "conflict", "already has the rule")
    for access in ("all", "", "READ", None):
        assert_error(await api.client.post(rules, headers=owner, json={"topic": "x", "access": access}), 422,
                     "validation_error", "body.access")
    assert_error(await api.client.post(rules, headers=owner, json={"topic": "x"}), 422)

    listed = (await api.client.get(rules, headers=owner)).json()
    assert listed == added
    assert (await api.client.get(f"{ACCOUNTS}/{a['id']}", headers=owner)).json()["rules"] == added

    r = await api.client.delete(f"{rules}/{added[1]['id']}", headers=owner)
    assert r.status_code == 204
    assert [x["id"] for x in (await api.client.get(rules, headers=owner)).json()] == \
        [added[0]["id"], added[2]["id"], added[3]["id"]]
    assert_error(await api.client.delete(f"{rules}/{added[1]['id']}", headers=owner), 404, "not_found",
                 "ACL rule not found")
    # A rule is reached only through its own account.
    assert_error(await api.client.delete(f"{rules}/{b['rules'][0]['id']}", headers=owner), 404)
    assert await count(app, MqttAclRule, MqttAclRule.account_id == b["id"]) == 1
    assert_error(await api.client.delete(f"{rules}/0", headers=owner), 422)


# Audit ----------------------------------------------------------------------------------------------------------------

async def test_every_change_is_audited_without_secrets(api, owner, app):
    created = await create(api, owner, "svc", rules=[{"topic": "s/#", "access": "read"}])
    path = f"{ACCOUNTS}/{created['id']}"
    r = await api.client.post(f"{path}/rules", headers=owner, json={"topic": "t/%u", "access": "write"})
    rule_id = r.json()["id"]
    await api.client.delete(f"{path}/rules/{rule_id}", headers=owner)
    await api.client.patch(path, headers=owner, json={"isActive": False})
    reset = (await api.client.patch(path, headers=owner, json={"resetPassword": True})).json()["password"]
    await api.client.patch(path, headers=owner, json={"password": STRONG})
    await api.client.delete(path, headers=owner)

    events = [e for e in await audit_actions(app) if e.target_type == "mqtt_account"]
    assert [e.action for e in events] == ["mqtt_account.created", "mqtt_rule.created", "mqtt_rule.deleted",
                                          "mqtt_account.updated", "mqtt_account.updated", "mqtt_account.updated",
                                          "mqtt_account.deleted"]
    assert all(e.target_id == str(created["id"]) and e.actor.startswith("owner-") and e.ip == "127.0.0.1"
               for e in events)
    assert events[0].details == {"username": "svc", "kind": "service", "rules": ["read s/#"]}
    assert events[1].details == {"username": "svc", "ruleId": rule_id, "topic": "t/%u", "access": "write"}
    assert events[2].details["ruleId"] == rule_id
    assert events[3].details == {"username": "svc", "isActive": False}
    assert events[4].details == {"username": "svc", "password": "generated"}
    assert events[5].details == {"username": "svc", "password": "set"}
    assert events[6].details == {"username": "svc", "kind": "service"}
    text = repr([(e.details, e.target_id) for e in events])
    for secret in (created["password"], reset, STRONG):
        assert secret not in text

    r = await api.client.get("/api/v1/audit", headers=owner, params={"action": "mqtt_account.deleted"})
    assert [e["targetId"] for e in r.json()] == [str(created["id"])]


# The broker's snapshot ------------------------------------------------------------------------------------------------

async def test_load_acl_snapshot(api, owner, app):
    device = await register_device(api, owner)
    ingest = await create(api, owner, "ingest", rules=[{"topic": "iot/device/+/#", "access": "read"},
                                                       {"topic": "iot/device/+/jobs/#", "access": "write"}])
    bare = await create(api, owner, "bare", kind="integration")
    off = await create(api, owner, "off", rules=[{"topic": "x/%u/%c", "access": "readwrite"}])
    await api.client.patch(f"{ACCOUNTS}/{off['id']}", headers=owner, json={"isActive": False})

    async with app.state.ctx.sessions() as session:
        snapshot = await load_acl_snapshot(session)

    assert isinstance(snapshot, list) and all(isinstance(a, AccountAcl) for a in snapshot)
    assert [a.username for a in snapshot] == sorted(["ingest", "bare", "off", device["uuid"]])
    by_name = {a.username: a for a in snapshot}
    assert by_name["ingest"].rules == [AclRule("iot/device/+/#", "read"), AclRule("iot/device/+/jobs/#", "write")]
    assert by_name["bare"].rules == [] and by_name["bare"].is_active is True
    assert by_name["off"].is_active is False and by_name["off"].rules == [("x/%u/%c", "readwrite")]
    dev = by_name[device["uuid"]]
    assert dev.is_active is True and dev.rules == [(f"iot/device/{device['uuid']}/#", "readwrite")]

    # Plain tuples, hashes that verify, rules that drive core.acl directly.
    for username, password_hash, is_active, rules in snapshot:
        assert isinstance(username, str) and password_hash.startswith("$7$") and isinstance(is_active, bool)
        assert all(isinstance(t, str) and a in ("read", "write", "readwrite") for t, a in rules)
    assert verify_mosquitto_password(by_name["ingest"].password_hash, ingest["password"])
    assert verify_mosquitto_password(by_name["bare"].password_hash, bare["password"])
    assert verify_mosquitto_password(dev.password_hash, device["mqtt"]["password"])
    assert may_subscribe(by_name["ingest"].rules, "ingest", "w1", "$share/ingest/iot/device/+/sensor/#")
    assert not may_publish(by_name["ingest"].rules, "ingest", "w1", f"iot/device/{device['uuid']}/sensor/t")
    assert may_publish(by_name["ingest"].rules, "ingest", "w1", f"iot/device/{device['uuid']}/jobs/1")
    assert may_publish(dev.rules, device["uuid"], "c", f"iot/device/{device['uuid']}/sensor/t")
    assert not may_publish(dev.rules, device["uuid"], "c", "iot/device/other/sensor/t")

    # Deleting the device takes its account out of the next snapshot.
    await api.client.delete(f"/api/v1/devices/{device['uuid']}", headers=owner)
    async with app.state.ctx.sessions() as session:
        assert [a.username for a in await load_acl_snapshot(session)] == ["bare", "ingest", "off"]


async def test_load_acl_snapshot_of_an_empty_database(app):
    async with app.state.ctx.sessions() as session:
        assert await load_acl_snapshot(session) == []
