"""Service controls (start, stop, pause, restart) from the dashboard: each is a deployment the device polls."""

from __future__ import annotations

from typing import Any

from iotistic.cloud.models import Role


def _target(state: str = "running") -> dict[str, Any]:
    return {"apps": {"1": {"appId": 1, "appName": "web", "services": [
        {"serviceId": 1, "serviceName": "nginx", "state": state, "config": {"image": "nginx:1.27"}},
        {"serviceId": 2, "serviceName": "worker", "config": {"image": "busybox:1"}}]}}, "config": {}}


async def _deployed_device(api: Any, owner: dict[str, str], target: dict[str, Any]) -> tuple[str, str]:
    key = (await api.provisioning_key(owner))["key"]
    body, device_key = await api.register(key)
    uuid = body["uuid"]
    r = await api.client.put(f"/api/v1/devices/{uuid}/target-state", json=target, headers=owner)
    assert r.status_code == 200, r.text
    r = await api.client.post(f"/api/v1/devices/{uuid}/deploy", headers=owner)
    assert r.status_code == 200, r.text
    return uuid, device_key


def _service(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["apps"]["1"]["services"] if s["serviceName"] == name)


async def test_pause_and_start_deploy_a_new_version_the_device_sees(api, owner):
    uuid, device_key = await _deployed_device(api, owner, _target())
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nginx/pause", headers=owner)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["version"] == 2 and t["pending"] is False
    assert _service(t["deployed"], "nginx")["state"] == "paused"
    assert _service(t["deployed"], "worker")["state"] == "running"

    r = await api.client.get(f"/api/v1/device/{uuid}/state", headers={"X-Device-API-Key": device_key})
    doc = r.json()[uuid]
    assert doc["version"] == 2 and _service(doc, "nginx")["state"] == "paused"

    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nginx/start", headers=owner)
    assert r.status_code == 200 and _service(r.json()["deployed"], "nginx")["state"] == "running"
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nginx/stop", headers=owner)
    assert r.status_code == 200 and _service(r.json()["deployed"], "nginx")["state"] == "stopped"

    r = await api.client.get(f"/api/v1/devices/{uuid}/target-state/history", headers=owner)
    assert [d["version"] for d in r.json()] == [4, 3, 2, 1]
    assert r.json()[0]["deployedBy"].startswith("owner-")

    r = await api.client.get("/api/v1/audit", params={"action": "device.service_pause"}, headers=owner)
    assert r.status_code == 200 and r.json()[0]["details"] == {"app_id": 1, "service": "nginx", "version": 2}


async def test_restart_changes_the_config_hash_once_per_request(api, owner):
    uuid, _ = await _deployed_device(api, owner, _target())
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/worker/restart", headers=owner)
    assert r.status_code == 200, r.text
    labels = _service(r.json()["deployed"], "worker")["config"]["labels"]
    assert labels == {"io.iotistic.restart-generation": "1"}
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/worker/restart", headers=owner)
    assert _service(r.json()["deployed"], "worker")["config"]["labels"]["io.iotistic.restart-generation"] == "2"
    assert r.json()["version"] == 3
    assert "labels" not in _service(r.json()["deployed"], "nginx")["config"] or \
        _service(r.json()["deployed"], "nginx")["config"]["labels"] == {}


async def test_pending_staged_edits_survive_with_the_same_change(api, owner):
    uuid, _ = await _deployed_device(api, owner, _target())
    edited = _target()
    edited["apps"]["1"]["services"][0]["config"]["image"] = "nginx:1.28"
    r = await api.client.put(f"/api/v1/devices/{uuid}/target-state", json=edited, headers=owner)
    assert r.json()["pending"] is True
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nginx/stop", headers=owner)
    t = r.json()
    assert _service(t["deployed"], "nginx")["config"]["image"] == "nginx:1.27"
    assert _service(t["deployed"], "nginx")["state"] == "stopped"
    assert _service(t["staged"], "nginx")["config"]["image"] == "nginx:1.28"
    assert _service(t["staged"], "nginx")["state"] == "stopped"
    assert t["pending"] is True


async def test_refusals_are_clear(api, owner):
    uuid, _ = await _deployed_device(api, owner, _target(state="paused"))
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nginx/pause", headers=owner)
    assert r.status_code == 409 and r.json()["message"] == "service 'nginx' is already paused in the target"
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nope/start", headers=owner)
    assert r.status_code == 404 and "'nope' of app 1" in r.json()["message"]
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/9/services/nginx/start", headers=owner)
    assert r.status_code == 404
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nginx/explode", headers=owner)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = await api.client.post(f"/api/v1/devices/{'0' * 32}/apps/1/services/nginx/start", headers=owner)
    assert r.status_code == 404

    viewer = await api.headers_for(Role.viewer)
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nginx/start", headers=viewer)
    assert r.status_code == 403
    operator = await api.headers_for(Role.operator)
    r = await api.client.post(f"/api/v1/devices/{uuid}/apps/1/services/nginx/start", headers=operator)
    assert r.status_code == 200
