"""Operations: liveness and readiness, Prometheus metrics, the audit log, and the error shape."""

from __future__ import annotations

import re
import uuid as uuidlib
from typing import Any

import httpx

from iotistic.cloud.app import create_app
from iotistic.cloud.models import Role
from tests.conftest import PASSWORD, make_settings

METRICS_TOKEN = "metrics-token-0123456789"


def _assert_error(r: httpx.Response, status: int, error: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert isinstance(body.get("message"), str) and body["message"]
    if error is not None:
        assert body["error"] == error, body
    return body


async def _user(api: Any, role: Role) -> tuple[str, dict[str, str]]:
    email = f"{role.value}-{uuidlib.uuid4().hex[:8]}@example.com"
    await api.create_user(email, role)
    tokens = await api.login(email)
    return email, {"Authorization": f"Bearer {tokens['access_token']}"}


# Health and readiness -----------------------------------------------------------------------------------------

async def test_health_and_ready_are_open(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


async def test_ready_reports_an_unreachable_database(tmp_path, license_keys):
    for url in (f"sqlite+aiosqlite:///{tmp_path}/missing/dir/db.sqlite",
                "postgresql+asyncpg://postgres@127.0.0.1:1/none"):
        app = create_app(make_settings(url, tmp_path, license_keys))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/health")).status_code == 200
            body = _assert_error(await client.get("/ready"), 503, "not_ready")
            assert "database" in body["message"]
        await app.state.ctx.engine.dispose()


# Prometheus metrics -------------------------------------------------------------------------------------------

async def test_metrics_access(api, client):
    _assert_error(await client.get("/metrics"), 401)
    _assert_error(await client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}), 401)
    r = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    for role in (Role.viewer, Role.operator):
        _, headers = await _user(api, role)
        _assert_error(await client.get("/metrics", headers=headers), 403)
    for role in (Role.admin, Role.owner):
        _, headers = await _user(api, role)
        assert (await client.get("/metrics", headers=headers)).status_code == 200


async def test_metrics_refuse_ended_sessions_and_demoted_users(api, client):
    """/metrics honours the same session checks as every other route: logout and demotion take effect."""
    _, admin = await _user(api, Role.admin)
    assert (await client.get("/metrics", headers=admin)).status_code == 200
    assert (await client.post("/api/v1/auth/logout", headers=admin)).status_code == 204
    _assert_error(await client.get("/metrics", headers=admin), 401)

    _, owner = await _user(api, Role.owner)
    email, demoted = await _user(api, Role.admin)
    users = (await client.get("/api/v1/users", headers=owner)).json()
    (user_id,) = [u["id"] for u in users if u["email"] == email]
    r = await client.patch(f"/api/v1/users/{user_id}", json={"role": "viewer"}, headers=owner)
    assert r.status_code == 200, r.text
    r = await client.get("/metrics", headers=demoted)
    _assert_error(r, r.status_code)  # demotion may end the session (401) or just the right (403): refused
    assert r.status_code in (401, 403)


async def test_metrics_count_requests_by_route_template(api, owner, client):
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"])
    device_uuid = body["uuid"]
    for _ in range(3):
        r = await client.get(f"/api/v1/device/{device_uuid}/state", headers={"X-Device-API-Key": api_key})
        assert r.status_code == 200
    missing = "no-such-path-" + uuidlib.uuid4().hex
    assert (await client.get(f"/api/v1/{missing}")).status_code == 404  # page paths go to the dashboard

    r = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200
    text = r.text
    # Labels come in their declared order: method, route, status.
    match = re.search(r'^http_requests_total\{method="GET",route="/api/v1/device/\{uuid\}/state",status="200"\} '
                      r'(\d+(?:\.\d+)?)$', text, re.MULTILINE)
    assert match, text
    assert float(match.group(1)) == 3
    assert 'http_requests_total{method="POST",route="/api/v1/device/register",status="201"} 1.0' in text
    assert re.search(r'^http_requests_total\{method="GET",route="unmatched",status="404"\} 1\.0$', text, re.MULTILINE)
    assert "http_request_duration_seconds_bucket" in text
    assert device_uuid not in text
    assert missing not in text


# Audit log ----------------------------------------------------------------------------------------------------

async def _audit(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/audit", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json())


async def test_audit_records_security_actions_with_their_actor(api, client):
    owner_email, owner = await _user(api, Role.owner)
    admin_email, admin = await _user(api, Role.admin)

    key = await api.provisioning_key(admin, maxDevices=5)
    assert (await client.delete(f"/api/v1/provisioning-keys/{key['id']}", headers=owner)).status_code == 204
    r = await client.post("/api/v1/users", json={"email": "new.user@example.com", "password": PASSWORD,
                                                 "role": "operator"}, headers=admin)
    assert r.status_code == 201, r.text
    new_user_id = r.json()["id"]

    live_key = await api.provisioning_key(owner)
    body, _ = await api.register(live_key["key"])
    device_uuid = body["uuid"]
    assert (await client.post(f"/api/v1/devices/{device_uuid}/deploy", headers=admin)).status_code == 200
    r = await client.post("/api/v1/releases", json={"name": "r", "target": {"apps": {}}}, headers=owner)
    assert r.status_code == 201
    release_id = r.json()["id"]
    r = await client.post(f"/api/v1/releases/{release_id}/deploy", json={"devices": [device_uuid]}, headers=owner)
    assert r.status_code == 200
    assert (await client.delete(f"/api/v1/devices/{device_uuid}", headers=owner)).status_code == 204

    events = await _audit(client, admin)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_action.setdefault(event["action"], []).append(event)

    def one(action: str, target_id: Any) -> dict[str, Any]:
        matching = [e for e in by_action.get(action, []) if e["targetId"] == str(target_id)]
        assert len(matching) == 1, (action, target_id, events)
        return matching[0]

    created = one("provisioning_key.created", key["id"])
    assert created["actor"] == admin_email and created["targetType"] == "provisioning_key"
    assert created["details"]["maxDevices"] == 5
    assert one("provisioning_key.revoked", key["id"])["actor"] == owner_email
    user_created = one("user.created", new_user_id)
    assert user_created["actor"] == admin_email
    assert user_created["details"]["email"] == "new.user@example.com"
    assert user_created["details"]["role"] == "operator"
    deployed = one("device.deployed", device_uuid)
    assert deployed["actor"] == admin_email and deployed["details"]["version"] == 1
    assert one("release.deployed", release_id)["actor"] == owner_email
    assert one("device.deleted", device_uuid)["actor"] == owner_email
    assert one("device.registered", device_uuid)["actor"] == f"provisioning_key:{live_key['id']}"
    for event in events:
        assert event["at"] and isinstance(event["id"], int)
    # Secrets never end up in the log.
    text = (await client.get("/api/v1/audit", headers=admin)).text
    assert key["key"] not in text and live_key["key"] not in text and PASSWORD not in text
    # Newest first.
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)

    # Filters.
    only = await _audit(client, admin, action="device.deleted")
    assert [e["targetId"] for e in only] == [device_uuid]
    mine = await _audit(client, admin, actor=admin_email)
    assert {e["action"] for e in mine} >= {"provisioning_key.created", "user.created", "device.deployed"}
    assert all(e["actor"] == admin_email for e in mine)
    assert not {"device.deleted", "provisioning_key.revoked", "release.deployed"} & {e["action"] for e in mine}
    assert len(await _audit(client, admin, limit=2)) == 2
    assert await _audit(client, admin, since="2999-01-01T00:00:00Z") == []


async def test_audit_is_for_admins_only(api, client):
    _assert_error(await client.get("/api/v1/audit"), 401)
    for role in (Role.viewer, Role.operator):
        _, headers = await _user(api, role)
        _assert_error(await client.get("/api/v1/audit", headers=headers), 403, "forbidden")
    _, admin = await _user(api, Role.admin)
    assert (await client.get("/api/v1/audit", headers=admin)).status_code == 200
    _assert_error(await client.get("/api/v1/audit", params={"limit": 0}, headers=admin), 422)
    _assert_error(await client.get("/api/v1/audit", params={"since": "soon"}, headers=admin), 422)


# The error shape ----------------------------------------------------------------------------------------------

async def test_errors_are_json_with_error_and_message(client, owner):
    _assert_error(await client.get("/api/no/such/route"), 404, "not_found")  # page paths are the dashboard's
    _assert_error(await client.get("/api/v1/no-such-thing", headers=owner), 404, "not_found")
    _assert_error(await client.get("/api/v1/devices/not-a-device", headers=owner), 404, "not_found")
    _assert_error(await client.delete("/health"), 405, "method_not_allowed")
    _assert_error(await client.put("/api/v1/devices", json={}, headers=owner), 405, "method_not_allowed")
    body = _assert_error(await client.get("/api/v1/devices", params={"limit": "x"}, headers=owner), 422,
                         "validation_error")
    assert "limit" in body["message"]
    _assert_error(await client.post("/api/v1/fleets", content=b"{", headers={**owner,
                                                                           "Content-Type": "application/json"}),
                  422, "validation_error")
    _assert_error(await client.get("/api/v1/fleets/not-a-number", headers=owner), 422, "validation_error")
    _assert_error(await client.get("/api/v1/devices"), 401, "unauthorized")
