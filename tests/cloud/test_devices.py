"""The device registry as users see it: listing and filters, one device, status, deletion, tags, online."""

from __future__ import annotations

import datetime as dt
import json
import uuid as uuidlib
from typing import Any

import pytest
from sqlalchemy import func, select, update

from iotistic.cloud.models import (
    Device,
    DeviceCurrentState,
    DeviceLog,
    DeviceMetric,
    DeviceTag,
    DeviceTarget,
    MqttAccount,
    MqttAclRule,
    Role,
    TargetDeployment,
)

OFFLINE_AFTER = 60


@pytest.fixture
def settings_env() -> dict[str, Any]:
    return {"DEVICE_OFFLINE_AFTER_SECONDS": str(OFFLINE_AFTER)}


def _dev(key: str) -> dict[str, str]:
    return {"X-Device-API-Key": key}


async def _count(app: Any, model: Any, *where: Any) -> int:
    async with app.state.ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _set_last_seen(app: Any, device_uuid: str, when: dt.datetime | None) -> None:
    async with app.state.ctx.sessions() as session:
        await session.execute(update(Device).where(Device.uuid == device_uuid).values(last_seen_at=when))
        await session.commit()


async def _create(api: Any, headers: dict[str, str], name: str, **extra: Any) -> dict[str, Any]:
    r = await api.client.post("/api/v1/devices", json={"name": name, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _list(api: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await api.client.get("/api/v1/devices", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _names(page: dict[str, Any]) -> set[str]:
    return {d["name"] for d in page["items"]}


# Listing ------------------------------------------------------------------------------------------------------

async def test_list_paginates(api, owner):
    created = [await _create(api, owner, f"device-{i}") for i in range(5)]
    page = await _list(api, owner)
    assert page["total"] == 5 and page["limit"] == 50 and page["offset"] == 0
    assert [d["uuid"] for d in page["items"]] == [d["uuid"] for d in created]

    seen = []
    for offset in (0, 2, 4):
        page = await _list(api, owner, limit=2, offset=offset)
        assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == offset
        assert len(page["items"]) == (2 if offset < 4 else 1)
        seen += [d["uuid"] for d in page["items"]]
    assert seen == [d["uuid"] for d in created]

    page = await _list(api, owner, limit=2, offset=10)
    assert page["items"] == [] and page["total"] == 5

    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "many"}, {"status": "sleepy"},
                {"online": "perhaps"}):
        r = await api.client.get("/api/v1/devices", params=bad, headers=owner)
        assert r.status_code == 422, (bad, r.text)
        assert set(r.json()) >= {"error", "message"}


async def test_list_needs_a_user(api, owner):
    r = await api.client.get("/api/v1/devices")
    assert r.status_code == 401
    viewer = await api.headers_for(Role.viewer)
    await _create(api, owner, "seen-by-viewer")
    assert _names(await _list(api, viewer)) == {"seen-by-viewer"}


async def test_filter_by_status(api, owner):
    key = await api.provisioning_key(owner)
    a, key_a = await api.register(key["key"])
    b, _ = await api.register(key["key"])
    c, _ = await api.register(key["key"])
    r = await api.client.post(f"/api/v1/device/{a['uuid']}/key-exchange", headers=_dev(key_a))
    assert r.status_code == 200
    r = await api.client.patch(f"/api/v1/devices/{c['uuid']}", json={"status": "disabled"}, headers=owner)
    assert r.status_code == 200

    def uuids(page: dict[str, Any]) -> set[str]:
        return {d["uuid"] for d in page["items"]}

    active = await _list(api, owner, status="active")
    assert uuids(active) == {a["uuid"]} and active["total"] == 1
    assert uuids(await _list(api, owner, status="registered")) == {b["uuid"]}
    assert uuids(await _list(api, owner, status="disabled")) == {c["uuid"]}


async def test_filter_by_online_uses_last_contact(api, owner, app):
    assert app.state.ctx.settings.device_offline_after_seconds == OFFLINE_AFTER
    now = dt.datetime.now(dt.UTC)
    fresh = await _create(api, owner, "fresh")
    stale = await _create(api, owner, "stale")
    await _create(api, owner, "never")
    await _set_last_seen(app, fresh["uuid"], now - dt.timedelta(seconds=10))
    # Would be online with the default threshold (180 s); the configured 60 s makes it offline.
    await _set_last_seen(app, stale["uuid"], now - dt.timedelta(seconds=2 * OFFLINE_AFTER))

    online = await _list(api, owner, online="true")
    assert _names(online) == {"fresh"} and online["total"] == 1
    assert all(d["online"] for d in online["items"])
    offline = await _list(api, owner, online="false")
    assert _names(offline) == {"stale", "never"} and offline["total"] == 2
    assert not any(d["online"] for d in offline["items"])

    r = await api.client.get(f"/api/v1/devices/{stale['uuid']}", headers=owner)
    assert r.json()["online"] is False
    r = await api.client.get(f"/api/v1/devices/{fresh['uuid']}", headers=owner)
    assert r.json()["online"] is True


async def test_filter_by_tag_key_and_value(api, owner):
    a = await _create(api, owner, "a")
    b = await _create(api, owner, "b")
    await _create(api, owner, "c")
    for device, tags in ((a, {"site": "berlin", "floor": "2"}), (b, {"site": "paris"})):
        r = await api.client.put(f"/api/v1/devices/{device['uuid']}/tags", json=tags, headers=owner)
        assert r.status_code == 200, r.text

    assert _names(await _list(api, owner, tag="site")) == {"a", "b"}
    assert _names(await _list(api, owner, tag="site:berlin")) == {"a"}
    assert _names(await _list(api, owner, tag="site:paris")) == {"b"}
    assert _names(await _list(api, owner, tag="floor")) == {"a"}
    assert _names(await _list(api, owner, tag="site:london")) == set()
    assert _names(await _list(api, owner, tag="nothing")) == set()
    page = await _list(api, owner, tag="site", status="registered")
    assert page["total"] == 2
    r = await api.client.get("/api/v1/devices", params={"tag": ":berlin"}, headers=owner)
    assert r.status_code == 400


async def test_filter_by_text_is_case_insensitive_and_literal(api, owner):
    names = ["Alpha_Sensor", "alphaXsensor", "100% humid", "100x humid", "Other"]
    created = {n: await _create(api, owner, n, uuid=f"dev{i:02d}" + uuidlib.uuid4().hex[:12])
               for i, n in enumerate(names)}

    assert _names(await _list(api, owner, text="ALPHA")) == {"Alpha_Sensor", "alphaXsensor"}
    assert _names(await _list(api, owner, text="a_s")) == {"Alpha_Sensor"}
    assert _names(await _list(api, owner, text="_")) == {"Alpha_Sensor"}
    assert _names(await _list(api, owner, text="100%")) == {"100% humid"}
    assert _names(await _list(api, owner, text="%")) == {"100% humid"}
    assert _names(await _list(api, owner, text="humid")) == {"100% humid", "100x humid"}
    assert _names(await _list(api, owner, text="nope")) == set()
    # A uuid substring, in any case.
    other = created["Other"]["uuid"]
    assert _names(await _list(api, owner, text=other[5:13].upper())) == {"Other"}
    assert _names(await _list(api, owner, text="\\")) == set()


async def test_filter_by_fleet(api, owner):
    r = await api.client.post("/api/v1/fleets", json={"name": "north"}, headers=owner)
    assert r.status_code == 201
    north = r.json()
    await _create(api, owner, "n1", fleet="north")
    await _create(api, owner, "n2", fleet=north["id"])
    await _create(api, owner, "loose")
    assert _names(await _list(api, owner, fleet="north")) == {"n1", "n2"}
    assert _names(await _list(api, owner, fleet=str(north["id"]))) == {"n1", "n2"}
    r = await api.client.get("/api/v1/devices", params={"fleet": "south"}, headers=owner)
    assert r.status_code == 400
    assert set(r.json()) >= {"error", "message"}


# One device ---------------------------------------------------------------------------------------------------

async def test_get_patch_delete_device(api, owner):
    device = await _create(api, owner, "kitchen")
    path = f"/api/v1/devices/{device['uuid']}"
    r = await api.client.get(path, headers=owner)
    assert r.status_code == 200
    got = r.json()
    assert got["name"] == "kitchen" and got["uuid"] == device["uuid"] and got["id"] == device["id"]
    assert "deviceApiKey" not in got

    r = await api.client.post("/api/v1/fleets", json={"name": "home"}, headers=owner)
    fleet_id = r.json()["id"]
    r = await api.client.patch(path, json={"name": "kitchen-2", "deviceType": "pi5", "fleet": "home"},
                               headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "kitchen-2" and r.json()["deviceType"] == "pi5"
    assert r.json()["fleet"] == {"id": fleet_id, "name": "home"}
    r = await api.client.patch(path, json={"fleet": None}, headers=owner)
    assert r.status_code == 200 and r.json()["fleet"] is None
    assert r.json()["name"] == "kitchen-2"

    for bad in ({"name": ""}, {"name": "a/b"}, {"status": "sleeping"}, {"unknown": 1}, {"fleet": "nowhere"}):
        r = await api.client.patch(path, json=bad, headers=owner)
        assert r.status_code in (400, 422), (bad, r.text)
        assert set(r.json()) >= {"error", "message"}
    r = await api.client.get(path, headers=owner)
    assert r.json()["name"] == "kitchen-2"

    r = await api.client.delete(path, headers=owner)
    assert r.status_code == 204
    for method in ("GET", "PATCH", "DELETE"):
        r = await api.client.request(method, path, headers=owner, json={} if method == "PATCH" else None)
        assert r.status_code == 404, method
        assert r.json()["error"] == "not_found"


async def test_device_routes_enforce_roles(api, owner):
    device = await _create(api, owner, "guarded")
    path = f"/api/v1/devices/{device['uuid']}"
    viewer = await api.headers_for(Role.viewer)
    operator = await api.headers_for(Role.operator)
    assert (await api.client.get(path, headers=viewer)).status_code == 200
    assert (await api.client.patch(path, json={"name": "x"}, headers=viewer)).status_code == 403
    assert (await api.client.put(f"{path}/tags", json={"a": "b"}, headers=viewer)).status_code == 403
    assert (await api.client.post("/api/v1/devices", json={"name": "v"}, headers=viewer)).status_code == 403
    assert (await api.client.patch(path, json={"name": "by-operator"}, headers=operator)).status_code == 200
    assert (await api.client.delete(path, headers=operator)).status_code == 403
    assert (await api.client.delete(path, headers=viewer)).status_code == 403
    r = await api.client.get(path, headers=owner)
    assert r.status_code == 200 and r.json()["name"] == "by-operator"


async def test_manual_preregistration(api, owner, app):
    r = await api.client.post("/api/v1/devices", json={"name": "manual", "deviceType": "gateway"}, headers=owner)
    assert r.status_code == 201, r.text
    created = r.json()
    api_key = created["deviceApiKey"]
    assert api_key and created["name"] == "manual" and created["deviceType"] == "gateway"
    assert created["status"] == "registered"
    # Shown once: not in any later read.
    r = await api.client.get(f"/api/v1/devices/{created['uuid']}", headers=owner)
    assert api_key not in r.text
    assert api_key not in (await api.client.get("/api/v1/devices", headers=owner)).text

    r = await api.client.get(f"/api/v1/device/{created['uuid']}/state", headers=_dev(api_key))
    assert r.status_code == 200, r.text
    assert r.json()[created["uuid"]]["version"] == 0
    assert await _count(app, MqttAccount, MqttAccount.username == created["uuid"]) == 1

    chosen = "chosen-uuid-" + uuidlib.uuid4().hex[:8]
    r = await api.client.post("/api/v1/devices", json={"name": "m2", "uuid": chosen}, headers=owner)
    assert r.status_code == 201 and r.json()["uuid"] == chosen
    r = await api.client.post("/api/v1/devices", json={"name": "m3", "uuid": chosen}, headers=owner)
    assert r.status_code == 409
    r = await api.client.post("/api/v1/devices", json={"name": "m4", "uuid": "bad/uuid#1"}, headers=owner)
    assert r.status_code == 422
    assert await _count(app, Device) == 2


# Status -------------------------------------------------------------------------------------------------------

async def test_disable_refuses_credentials_and_reenable_restores_them(api, owner, app):
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"])
    device_uuid = body["uuid"]
    path = f"/api/v1/devices/{device_uuid}"

    r = await api.client.patch(path, json={"status": "disabled"}, headers=owner)
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    r = await api.client.get(f"/api/v1/device/{device_uuid}/state", headers=_dev(api_key))
    assert r.status_code == 401
    r = await api.client.post(f"/api/v1/device/{device_uuid}/key-exchange", headers=_dev(api_key))
    assert r.status_code == 401
    r = await api.client.patch("/api/v1/device/state", json={device_uuid: {"status": "idle"}},
                               headers=_dev(api_key))
    assert r.status_code == 401
    async with app.state.ctx.sessions() as session:
        account = await session.scalar(select(MqttAccount).where(MqttAccount.username == device_uuid))
        assert account is not None and account.is_active is False

    r = await api.client.patch(path, json={"status": "active"}, headers=owner)
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = await api.client.get(f"/api/v1/device/{device_uuid}/state", headers=_dev(api_key))
    assert r.status_code == 200
    async with app.state.ctx.sessions() as session:
        account = await session.scalar(select(MqttAccount).where(MqttAccount.username == device_uuid))
        assert account is not None and account.is_active is True

    r = await api.client.patch(path, json={"status": "registered"}, headers=owner)
    assert r.status_code == 422
    r = await api.client.get(path, headers=owner)
    assert r.json()["status"] == "active"


# Deletion -----------------------------------------------------------------------------------------------------

async def test_delete_revokes_every_credential_and_removes_its_data(api, owner, app):
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"])
    keep, keep_key = await api.register(key["key"])
    device_uuid, device_id = body["uuid"], body["id"]

    # Give the device tags, a deployed target, a report with metrics and logs.
    r = await api.client.put(f"/api/v1/devices/{device_uuid}/tags", json={"site": "x"}, headers=owner)
    assert r.status_code == 200
    target = {"apps": {"1": {"appId": 1, "appName": "web", "services": [
        {"serviceId": 1, "serviceName": "nginx", "config": {"image": "nginx:1.27"}}]}}}
    r = await api.client.put(f"/api/v1/devices/{device_uuid}/target-state", json=target, headers=owner)
    assert r.status_code == 200, r.text
    r = await api.client.post(f"/api/v1/devices/{device_uuid}/deploy", headers=owner)
    assert r.status_code == 200
    r = await api.client.patch("/api/v1/device/state", json={device_uuid: {"status": "idle", "metrics": {"cpu": 5}}},
                               headers=_dev(api_key))
    assert r.status_code == 204
    line = json.dumps({"timestamp": "2026-01-01T00:00:00Z", "message": "hello"})
    r = await api.client.post(f"/api/v1/device/{device_uuid}/logs", content=line + "\n", headers=_dev(api_key))
    assert r.status_code == 200

    owned = (DeviceTag, DeviceTarget, TargetDeployment, DeviceCurrentState, DeviceMetric, DeviceLog)
    for model in owned:
        assert await _count(app, model, model.device_id == device_id) >= 1, model.__name__
    assert await _count(app, MqttAccount, MqttAccount.device_id == device_id) == 1

    r = await api.client.delete(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.status_code == 204

    r = await api.client.get(f"/api/v1/device/{device_uuid}/state", headers=_dev(api_key))
    assert r.status_code == 401
    r = await api.client.post(f"/api/v1/device/{device_uuid}/key-exchange", headers=_dev(api_key))
    assert r.status_code == 401
    assert await _count(app, Device, Device.uuid == device_uuid) == 0
    assert await _count(app, MqttAccount, MqttAccount.username == device_uuid) == 0
    assert await _count(app, MqttAclRule, MqttAclRule.topic == f"iot/device/{device_uuid}/#") == 0
    for model in owned:
        assert await _count(app, model, model.device_id == device_id) == 0, model.__name__
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.status_code == 404
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/tags", headers=owner)
    assert r.status_code == 404

    # The other device is untouched.
    r = await api.client.get(f"/api/v1/device/{keep['uuid']}/state", headers=_dev(keep_key))
    assert r.status_code == 200
    assert await _count(app, MqttAccount) == 1 and await _count(app, MqttAclRule) == 1


# Tags ---------------------------------------------------------------------------------------------------------

async def test_tags_put_replaces_all(api, owner):
    device = await _create(api, owner, "tagged")
    path = f"/api/v1/devices/{device['uuid']}/tags"
    r = await api.client.get(path, headers=owner)
    assert r.status_code == 200 and r.json() == {}

    r = await api.client.put(path, json={"site": "berlin", "role": "gateway"}, headers=owner)
    assert r.status_code == 200 and r.json() == {"role": "gateway", "site": "berlin"}
    r = await api.client.put(path, json={"site": "paris", "env": ""}, headers=owner)
    assert r.status_code == 200
    r = await api.client.get(path, headers=owner)
    assert r.json() == {"site": "paris", "env": ""}
    r = await api.client.get(f"/api/v1/devices/{device['uuid']}", headers=owner)
    assert r.json()["tags"] == {"site": "paris", "env": ""}
    assert _names(await _list(api, owner, tag="role")) == set()

    r = await api.client.put(path, json={}, headers=owner)
    assert r.status_code == 200
    assert (await api.client.get(path, headers=owner)).json() == {}


async def test_invalid_tags_are_refused_and_keep_the_old_ones(api, owner):
    device = await _create(api, owner, "tagged")
    path = f"/api/v1/devices/{device['uuid']}/tags"
    r = await api.client.put(path, json={"site": "berlin"}, headers=owner)
    assert r.status_code == 200
    for bad in ({"bad key": "x"}, {"": "x"}, {"k" * 65: "x"}, {"a/b": "x"}, {"ok": 5}, {"ok": None},
                {"ok": "v" * 257}, ["site", "x"], "site"):
        r = await api.client.put(path, json=bad, headers=owner)
        assert r.status_code == 422, (bad, r.text)
        assert set(r.json()) >= {"error", "message"}
    assert (await api.client.get(path, headers=owner)).json() == {"site": "berlin"}
    r = await api.client.put("/api/v1/devices/nosuchdevice/tags", json={"a": "b"}, headers=owner)
    assert r.status_code == 404


# Online -------------------------------------------------------------------------------------------------------

async def test_poll_updates_last_seen_and_online(api, owner, app):
    device = await _create(api, owner, "poller")
    device_uuid = device["uuid"]
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.json()["online"] is False and r.json()["lastSeenAt"] is None

    before = dt.datetime.now(dt.UTC)
    r = await api.client.get(f"/api/v1/device/{device_uuid}/state", headers=_dev(device["deviceApiKey"]))
    assert r.status_code == 200
    etag = r.headers["etag"]
    # Contact is noted in memory and written in batches (every 2 s); flush now instead of waiting.
    assert await app.state.ctx.presence.flush() == 1
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    got = r.json()
    assert got["online"] is True
    seen = dt.datetime.fromisoformat(got["lastSeenAt"])
    assert seen.tzinfo is not None and seen >= before - dt.timedelta(seconds=1)
    assert _names(await _list(api, owner, online="true")) == {"poller"}

    # Silence for longer than the threshold: offline; the next poll (even a 304) brings it back.
    await _set_last_seen(app, device_uuid, before - dt.timedelta(seconds=OFFLINE_AFTER + 30))
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.json()["online"] is False
    assert _names(await _list(api, owner, online="false")) == {"poller"}
    r = await api.client.get(f"/api/v1/device/{device_uuid}/state",
                             headers={**_dev(device["deviceApiKey"]), "If-None-Match": etag})
    assert r.status_code == 304
    assert await app.state.ctx.presence.flush() == 1
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.json()["online"] is True


async def test_every_accepted_tag_key_can_be_queried(api, owner):
    """`tag=key:value` splits on the first ':', so a key containing one could never be found: refused."""
    device = await _create(api, owner, "colon")
    path = f"/api/v1/devices/{device['uuid']}/tags"
    r = await api.client.put(path, json={"zone:a": "1"}, headers=owner)
    assert r.status_code == 422
    r = await api.client.put(path, json={"zone.a-b_c": "1:2"}, headers=owner)
    assert r.status_code == 200
    assert _names(await _list(api, owner, tag="zone.a-b_c")) == {"colon"}
    assert _names(await _list(api, owner, tag="zone.a-b_c:1:2")) == {"colon"}


async def test_fleet_filter_with_out_of_range_or_odd_ids(api, owner):
    for fleet in (str(2**63), "\u00b2", "\u0661", "0"):
        r = await api.client.get("/api/v1/devices", params={"fleet": fleet}, headers=owner)
        assert r.status_code == 400, (fleet, r.text)
        assert r.json()["error"] == "unknown_fleet"
    r = await api.client.post("/api/v1/devices", json={"name": "x", "fleet": 2**63}, headers=owner)
    assert r.status_code in (400, 422)
