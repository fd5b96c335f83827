"""Target state: staging, validation, deploy and history; the device's ETag poll; fleets and releases."""

from __future__ import annotations

import copy
from typing import Any

from iotistic.cloud.models import Role


def _dev(key: str) -> dict[str, str]:
    return {"X-Device-API-Key": key}


def _target(image: str = "nginx:1.27", **service: Any) -> dict[str, Any]:
    return {"apps": {"1": {"appId": 1, "appName": "web", "services": [
        {"serviceId": 1, "serviceName": "nginx", "config": {"image": image}, **service}]}},
        "config": {"LOG_LEVEL": "info"}}


FULL_SERVICE_CONFIG: dict[str, Any] = {
    "image": "registry.example.com/app/api:2.1",
    "command": ["serve", "--port", "8080"],
    "entrypoint": "/entry.sh",
    "environment": {"MODE": "prod", "_PRIVATE": "1"},
    "ports": ["8080:80", "127.0.0.1:9000:9000/udp", "443"],
    "volumes": ["data:/var/lib/data", "/etc/app:/etc/app:ro"],
    "networks": ["backend", "front.end"],
    "restart": "on-failure",
    "labels": {"io.iotistic.tier": "api"},
    "resources": {"cpus": 0.5, "memory": "256m"},
    "probes": {"liveness": {"httpPath": "/health", "port": 8080},
               "readiness": {"command": ["test", "-f", "/ready"], "intervalSeconds": 10}},
}


async def _device(api: Any, owner: dict[str, str], key: str | None = None) -> tuple[str, str]:
    if key is None:
        key = (await api.provisioning_key(owner))["key"]
    body, api_key = await api.register(key)
    return body["uuid"], api_key


async def _poll(api: Any, device_uuid: str, headers: dict[str, str]) -> Any:
    return await api.client.get(f"/api/v1/device/{device_uuid}/state", headers=headers)


async def _version(api: Any, owner: dict[str, str], device_uuid: str) -> int:
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/target-state", headers=owner)
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


# Staging and deploying ----------------------------------------------------------------------------------------

async def test_new_device_has_an_empty_target(api, owner):
    device_uuid, api_key = await _device(api, owner)
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/target-state", headers=owner)
    assert r.status_code == 200
    t = r.json()
    assert t["version"] == 0 and t["pending"] is False
    assert t["staged"] == t["deployed"] == {"apps": {}, "config": {}}
    r = await _poll(api, device_uuid, _dev(api_key))
    assert r.status_code == 200
    assert r.json() == {device_uuid: {"apps": {}, "config": {}, "version": 0}}


async def test_staged_target_is_invisible_until_deploy(api, owner):
    device_uuid, api_key = await _device(api, owner)
    target = _target()
    r = await api.client.put(f"/api/v1/devices/{device_uuid}/target-state", json=target, headers=owner)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["pending"] is True and t["version"] == 0
    assert t["staged"]["apps"]["1"]["services"][0]["config"]["image"] == "nginx:1.27"
    assert t["deployed"] == {"apps": {}, "config": {}}

    r = await _poll(api, device_uuid, _dev(api_key))
    assert r.json()[device_uuid] == {"apps": {}, "config": {}, "version": 0}

    r = await api.client.post(f"/api/v1/devices/{device_uuid}/deploy", headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and r.json()["pending"] is False

    r = await _poll(api, device_uuid, _dev(api_key))
    state = r.json()[device_uuid]
    assert state["version"] == 1
    assert state["config"] == {"LOG_LEVEL": "info"}
    service = state["apps"]["1"]["services"][0]
    assert state["apps"]["1"]["appName"] == "web" and state["apps"]["1"]["appId"] == 1
    assert service["serviceName"] == "nginx" and service["serviceId"] == 1
    assert service["imageName"] == "nginx:1.27"
    assert service["state"] == "running"
    assert service["config"]["image"] == "nginx:1.27"


async def test_deploy_bumps_version_by_one_and_keeps_history(api, owner):
    device_uuid, api_key = await _device(api, owner)
    path = f"/api/v1/devices/{device_uuid}"
    for i, image in enumerate(("nginx:1", "nginx:2", "nginx:3"), start=1):
        r = await api.client.put(f"{path}/target-state", json=_target(image), headers=owner)
        assert r.status_code == 200
        r = await api.client.post(f"{path}/deploy", headers=owner)
        assert r.status_code == 200 and r.json()["version"] == i
        r = await _poll(api, device_uuid, _dev(api_key))
        assert r.json()[device_uuid]["version"] == i
        assert r.json()[device_uuid]["apps"]["1"]["services"][0]["config"]["image"] == image

    r = await api.client.get(f"{path}/target-state/history", headers=owner)
    assert r.status_code == 200
    history = r.json()
    assert [h["version"] for h in history] == [3, 2, 1]
    assert [h["document"]["apps"]["1"]["services"][0]["config"]["image"] for h in history] == \
        ["nginx:3", "nginx:2", "nginx:1"]
    assert all(h["releaseId"] is None and h["deployedBy"].endswith("@example.com") for h in history)
    r = await api.client.get(f"{path}/target-state/history", params={"limit": 1}, headers=owner)
    assert [h["version"] for h in r.json()] == [3]


async def test_full_service_config_round_trips_to_the_device(api, owner):
    device_uuid, api_key = await _device(api, owner)
    target = {"apps": {"7": {"appId": 7, "appName": "stack", "services": [
        {"serviceId": 1, "serviceName": "api", "state": "paused", "config": FULL_SERVICE_CONFIG},
        {"serviceId": 2, "serviceName": "worker", "state": "stopped", "imageName": "w",
         "config": {"image": "worker:1"}}]}}, "config": {}}
    r = await api.client.put(f"/api/v1/devices/{device_uuid}/target-state", json=target, headers=owner)
    assert r.status_code == 200, r.text
    r = await api.client.post(f"/api/v1/devices/{device_uuid}/deploy", headers=owner)
    assert r.status_code == 200
    services = (await _poll(api, device_uuid, _dev(api_key))).json()[device_uuid]["apps"]["7"]["services"]
    api_service, worker = services
    assert api_service["state"] == "paused" and worker["state"] == "stopped"
    assert worker["imageName"] == "w"
    config = api_service["config"]
    for field in ("image", "command", "entrypoint", "environment", "ports", "volumes", "networks", "restart",
                  "labels"):
        assert config[field] == FULL_SERVICE_CONFIG[field], field
    assert config["resources"] == {"cpus": 0.5, "memory": "256m"}
    assert config["probes"]["liveness"]["httpPath"] == "/health"
    assert config["probes"]["readiness"]["command"] == ["test", "-f", "/ready"]
    assert config["probes"]["readiness"]["intervalSeconds"] == 10


async def test_target_state_routes_enforce_roles(api, owner):
    device_uuid, _ = await _device(api, owner)
    path = f"/api/v1/devices/{device_uuid}"
    viewer = await api.headers_for(Role.viewer)
    operator = await api.headers_for(Role.operator)
    assert (await api.client.get(f"{path}/target-state", headers=viewer)).status_code == 200
    assert (await api.client.put(f"{path}/target-state", json=_target(), headers=viewer)).status_code == 403
    assert (await api.client.post(f"{path}/deploy", headers=viewer)).status_code == 403
    assert (await api.client.put(f"{path}/target-state", json=_target(), headers=operator)).status_code == 200
    assert (await api.client.post(f"{path}/deploy", headers=operator)).status_code == 200
    assert (await api.client.get(f"{path}/target-state")).status_code == 401
    assert (await api.client.get("/api/v1/devices/unknown-device/target-state", headers=owner)).status_code == 404
    assert (await api.client.post("/api/v1/devices/unknown-device/deploy", headers=owner)).status_code == 404


# Validation ---------------------------------------------------------------------------------------------------

def _with_service(**changes: Any) -> dict[str, Any]:
    target = _target()
    target["apps"]["1"]["services"][0].update(changes)
    return target


def _with_config(**changes: Any) -> dict[str, Any]:
    target = _target()
    target["apps"]["1"]["services"][0]["config"].update(changes)
    return target


async def _refused(api: Any, owner: dict[str, str], device_uuid: str, body: Any) -> dict[str, Any]:
    r = await api.client.put(f"/api/v1/devices/{device_uuid}/target-state", json=body, headers=owner)
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["error"] == "validation_error" and isinstance(out["message"], str)
    return out


async def test_unknown_fields_are_refused_by_name(api, owner):
    device_uuid, _ = await _device(api, owner)
    out = await _refused(api, owner, device_uuid, {**_target(), "appz": {}})
    assert "appz" in out["message"]
    out = await _refused(api, owner, device_uuid, _with_config(imagee="x"))
    assert "imagee" in out["message"]
    out = await _refused(api, owner, device_uuid, _with_service(restartPolicy="always"))
    assert "restartPolicy" in out["message"]


async def test_invalid_targets_are_refused_and_staged_is_kept(api, owner):
    device_uuid, _ = await _device(api, owner)
    r = await api.client.put(f"/api/v1/devices/{device_uuid}/target-state", json=_target("keep:1"), headers=owner)
    assert r.status_code == 200

    duplicate = _target()
    duplicate["apps"]["1"]["services"].append(
        {"serviceId": 2, "serviceName": "nginx", "config": {"image": "other"}})
    duplicate_id = _target()
    duplicate_id["apps"]["1"]["services"].append(
        {"serviceId": 1, "serviceName": "other", "config": {"image": "other"}})
    wrong_key = _target()
    wrong_key["apps"] = {"2": wrong_key["apps"]["1"]}
    cases: dict[str, tuple[Any, str]] = {
        "port out of range": (_with_config(ports=["99999:80"]), "99999"),
        "port garbage": (_with_config(ports=["eighty"]), "eighty"),
        "host port out of range with ip": (_with_config(ports=["10.0.0.1:70000:80"]), "70000"),
        "ip is not an address": (_with_config(ports=["1.2.3:80:80"]), "1.2.3"),
        "container port zero": (_with_config(ports=["80:0"]), "80:0"),
        "volume without path": (_with_config(volumes=["data"]), "data"),
        "volume relative target": (_with_config(volumes=["data:relative"]), "relative"),
        "volume bad mode": (_with_config(volumes=["data:/d:rx"]), "rx"),
        "duplicate serviceName": (duplicate, "unique"),
        "duplicate serviceId": (duplicate_id, "unique"),
        "apps key is not appId": (wrong_key, "appId"),
        "bad state": (_with_service(state="sleeping"), "state"),
        "empty image": (_with_config(image=""), "image"),
        "image with spaces": (_with_config(image="nginx latest"), "image"),
        "bad restart": (_with_config(restart="sometimes"), "restart"),
        "bad env name": (_with_config(environment={"1BAD": "x"}), "environment"),
        "bad memory": (_with_config(resources={"memory": "lots"}), "memory"),
        "probe with both checks": (_with_config(probes={"liveness": {"command": ["x"], "httpPath": "/"}}), "probe"),
        "http probe without port": (_with_config(probes={"liveness": {"httpPath": "/h"}}), "port"),
        "serviceId zero": (_with_service(serviceId=0), "serviceId"),
        "serviceName with slash": (_with_service(serviceName="a/b"), "serviceName"),
        "apps as list": ({"apps": [], "config": {}}, "apps"),
    }
    for name, (body, mentioned) in cases.items():
        out = await _refused(api, owner, device_uuid, body)
        assert mentioned in out["message"], (name, out["message"])
    for body in ([], "text", None):
        await _refused(api, owner, device_uuid, body)

    r = await api.client.get(f"/api/v1/devices/{device_uuid}/target-state", headers=owner)
    assert r.json()["staged"]["apps"]["1"]["services"][0]["config"]["image"] == "keep:1"
    assert r.json()["version"] == 0


async def test_every_documented_state_is_accepted(api, owner):
    device_uuid, _ = await _device(api, owner)
    for state in ("running", "stopped", "paused"):
        r = await api.client.put(f"/api/v1/devices/{device_uuid}/target-state", json=_with_service(state=state),
                                 headers=owner)
        assert r.status_code == 200, r.text
        assert r.json()["staged"]["apps"]["1"]["services"][0]["state"] == state


# The device's poll --------------------------------------------------------------------------------------------

async def test_etag_and_if_none_match(api, owner):
    device_uuid, api_key = await _device(api, owner)
    r = await _poll(api, device_uuid, _dev(api_key))
    assert r.status_code == 200
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    bare = etag.strip('"')

    for header in (etag, f"W/{etag}", f'"nope", {etag}', f'W/"nope", W/{etag}', "*"):
        r = await _poll(api, device_uuid, {**_dev(api_key), "If-None-Match": header})
        assert r.status_code == 304, header
        assert r.content == b""
        assert r.headers["etag"] == etag
    for header in ('"nope"', f'"{bare}x"', 'W/"nope", "other"', ""):
        r = await _poll(api, device_uuid, {**_dev(api_key), "If-None-Match": header})
        assert r.status_code == 200, header
        assert r.json()[device_uuid]["version"] == 0

    # A new deploy changes the ETag: the old one now gets the new document.
    r = await api.client.put(f"/api/v1/devices/{device_uuid}/target-state", json=_target(), headers=owner)
    assert r.status_code == 200
    r = await _poll(api, device_uuid, {**_dev(api_key), "If-None-Match": etag})
    assert r.status_code == 304, "staging alone must not change what the device sees"
    r = await api.client.post(f"/api/v1/devices/{device_uuid}/deploy", headers=owner)
    assert r.status_code == 200
    r = await _poll(api, device_uuid, {**_dev(api_key), "If-None-Match": etag})
    assert r.status_code == 200
    assert r.json()[device_uuid]["version"] == 1
    new_etag = r.headers["etag"]
    assert new_etag != etag
    r = await _poll(api, device_uuid, {**_dev(api_key), "If-None-Match": new_etag})
    assert r.status_code == 304

    # Redeploying the very same document is still a new version, so a new ETag.
    r = await api.client.post(f"/api/v1/devices/{device_uuid}/deploy", headers=owner)
    assert r.json()["version"] == 2
    r = await _poll(api, device_uuid, {**_dev(api_key), "If-None-Match": new_etag})
    assert r.status_code == 200 and r.json()[device_uuid]["version"] == 2


async def test_bearer_and_header_keys_both_work(api, owner):
    device_uuid, api_key = await _device(api, owner)
    r1 = await _poll(api, device_uuid, _dev(api_key))
    r2 = await _poll(api, device_uuid, {"Authorization": f"Bearer {api_key}"})
    assert r1.status_code == r2.status_code == 200
    assert r1.json() == r2.json()
    assert r1.headers["etag"] == r2.headers["etag"]
    r = await _poll(api, device_uuid, {"Authorization": f"Bearer {api_key}", "If-None-Match": r1.headers["etag"]})
    assert r.status_code == 304


async def test_a_device_reads_only_its_own_state(api, owner):
    key = (await api.provisioning_key(owner))["key"]
    a_uuid, a_key = await _device(api, owner, key)
    b_uuid, b_key = await _device(api, owner, key)
    r = await api.client.put(f"/api/v1/devices/{b_uuid}/target-state", json=_target("secret:1"), headers=owner)
    assert r.status_code == 200
    assert (await api.client.post(f"/api/v1/devices/{b_uuid}/deploy", headers=owner)).status_code == 200

    r = await _poll(api, b_uuid, _dev(a_key))
    assert r.status_code == 403
    assert "secret" not in r.text
    assert r.json()["error"] == "forbidden"
    r = await _poll(api, b_uuid, {"Authorization": f"Bearer {a_key}"})
    assert r.status_code == 403
    # Not with a user token, a wrong key, or no key either.
    for headers in (owner, _dev("x" * 40), {}):
        r = await _poll(api, b_uuid, headers)
        assert r.status_code == 401, headers
        assert set(r.json()) >= {"error", "message"}
    assert (await _poll(api, b_uuid, _dev(b_key))).json()[b_uuid]["version"] == 1
    assert (await _poll(api, a_uuid, _dev(a_key))).json()[a_uuid]["version"] == 0


# Fleets -------------------------------------------------------------------------------------------------------

async def test_fleet_crud(api, owner):
    r = await api.client.post("/api/v1/fleets", json={"name": "north", "description": "N"}, headers=owner)
    assert r.status_code == 201, r.text
    fleet = r.json()
    assert fleet["name"] == "north" and fleet["description"] == "N" and fleet["deviceCount"] == 0
    r = await api.client.post("/api/v1/fleets", json={"name": "south"}, headers=owner)
    assert r.status_code == 201

    r = await api.client.get("/api/v1/fleets", headers=owner)
    assert r.status_code == 200
    assert [f["name"] for f in r.json()] == ["north", "south"]
    r = await api.client.get(f"/api/v1/fleets/{fleet['id']}", headers=owner)
    assert r.status_code == 200 and r.json()["name"] == "north"

    r = await api.client.patch(f"/api/v1/fleets/{fleet['id']}", json={"description": "Northern"}, headers=owner)
    assert r.status_code == 200 and r.json()["description"] == "Northern"
    r = await api.client.get(f"/api/v1/fleets/{fleet['id']}", headers=owner)
    assert r.json()["description"] == "Northern"

    r = await api.client.post("/api/v1/fleets", json={"name": "north"}, headers=owner)
    assert r.status_code == 409
    for bad in ({"name": ""}, {"name": "has space"}, {"name": "x" * 65}, {}, {"name": "ok", "extra": 1}):
        r = await api.client.post("/api/v1/fleets", json=bad, headers=owner)
        assert r.status_code == 422, bad

    r = await api.client.delete(f"/api/v1/fleets/{fleet['id']}", headers=owner)
    assert r.status_code == 204
    r = await api.client.get(f"/api/v1/fleets/{fleet['id']}", headers=owner)
    assert r.status_code == 404
    r = await api.client.get("/api/v1/fleets", headers=owner)
    assert [f["name"] for f in r.json()] == ["south"]

    viewer = await api.headers_for(Role.viewer)
    assert (await api.client.get("/api/v1/fleets", headers=viewer)).status_code == 200
    assert (await api.client.post("/api/v1/fleets", json={"name": "v"}, headers=viewer)).status_code == 403


async def test_deleting_a_fleet_with_devices_conflicts(api, owner):
    r = await api.client.post("/api/v1/fleets", json={"name": "busy"}, headers=owner)
    fleet_id = r.json()["id"]
    r = await api.client.post("/api/v1/devices", json={"name": "member", "fleet": "busy"}, headers=owner)
    assert r.status_code == 201
    member = r.json()["uuid"]
    r = await api.client.get(f"/api/v1/fleets/{fleet_id}", headers=owner)
    assert r.json()["deviceCount"] == 1

    r = await api.client.delete(f"/api/v1/fleets/{fleet_id}", headers=owner)
    assert r.status_code == 409
    assert r.json()["error"] == "conflict"
    assert (await api.client.get(f"/api/v1/fleets/{fleet_id}", headers=owner)).status_code == 200

    # Once empty it can go.
    r = await api.client.patch(f"/api/v1/devices/{member}", json={"fleet": None}, headers=owner)
    assert r.status_code == 200
    assert (await api.client.delete(f"/api/v1/fleets/{fleet_id}", headers=owner)).status_code == 204


# Releases -----------------------------------------------------------------------------------------------------

async def _fleet(api: Any, owner: dict[str, str], name: str) -> int:
    r = await api.client.post("/api/v1/fleets", json={"name": name}, headers=owner)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _release(api: Any, owner: dict[str, str], name: str = "r1", **extra: Any) -> dict[str, Any]:
    r = await api.client.post("/api/v1/releases", json={"name": name, "target": _target(f"app:{name}"), **extra},
                              headers=owner)
    assert r.status_code == 201, r.text
    return r.json()


async def _history(api: Any, owner: dict[str, str], device_uuid: str) -> list[dict[str, Any]]:
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/target-state/history", headers=owner)
    assert r.status_code == 200
    return list(r.json())


async def test_create_and_read_releases(api, owner):
    await _fleet(api, owner, "north")
    rel = await _release(api, owner, "v1", fleet="north", notes="first")
    assert rel["name"] == "v1" and rel["notes"] == "first" and rel["fleetId"] is not None
    assert rel["document"]["apps"]["1"]["services"][0]["config"]["image"] == "app:v1"
    await _release(api, owner, "v2")
    r = await api.client.get(f"/api/v1/releases/{rel['id']}", headers=owner)
    assert r.status_code == 200 and r.json()["name"] == "v1"
    r = await api.client.get("/api/v1/releases", headers=owner)
    assert [x["name"] for x in r.json()] == ["v2", "v1"]
    r = await api.client.get("/api/v1/releases", params={"fleet": "north"}, headers=owner)
    assert [x["name"] for x in r.json()] == ["v1"]

    bad = _target()
    bad["apps"]["1"]["services"][0]["config"]["ports"] = ["99999:80"]
    r = await api.client.post("/api/v1/releases", json={"name": "bad", "target": bad}, headers=owner)
    assert r.status_code == 422
    r = await api.client.post("/api/v1/releases", json={"name": "bad", "target": _target(), "fleet": "nowhere"},
                              headers=owner)
    assert r.status_code == 400
    assert len((await api.client.get("/api/v1/releases", headers=owner)).json()) == 2
    assert (await api.client.get("/api/v1/releases/999999", headers=owner)).status_code == 404


async def test_deploy_release_to_a_fleet(api, owner):
    await _fleet(api, owner, "north")
    await _fleet(api, owner, "south")
    north_key = (await api.provisioning_key(owner, fleet="north"))["key"]
    south_key = (await api.provisioning_key(owner, fleet="south"))["key"]
    north = [await _device(api, owner, north_key) for _ in range(3)]
    south = [await _device(api, owner, south_key) for _ in range(2)]
    # One north device already had a deploy: it goes from 1 to 2, the others from 0 to 1.
    first = north[0][0]
    assert (await api.client.post(f"/api/v1/devices/{first}/deploy", headers=owner)).status_code == 200

    rel = await _release(api, owner, "north-v1", fleet="north")
    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json={"fleet": "north"}, headers=owner)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["releaseId"] == rel["id"] and out["count"] == 3
    assert set(out["devices"]) == {u for u, _ in north}

    for device_uuid, api_key in north:
        state = (await _poll(api, device_uuid, _dev(api_key))).json()[device_uuid]
        expected = 2 if device_uuid == first else 1
        assert state["version"] == expected
        assert state["apps"]["1"]["services"][0]["config"]["image"] == "app:north-v1"
        latest = (await _history(api, owner, device_uuid))[0]
        assert latest["version"] == expected and latest["releaseId"] == rel["id"]
        r = await api.client.get(f"/api/v1/devices/{device_uuid}/target-state", headers=owner)
        assert r.json()["releaseId"] == rel["id"] and r.json()["pending"] is False
    for device_uuid, api_key in south:
        state = (await _poll(api, device_uuid, _dev(api_key))).json()[device_uuid]
        assert state == {"apps": {}, "config": {}, "version": 0}
        assert await _history(api, owner, device_uuid) == []

    # By fleet id as well; each deploy adds exactly one version.
    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json={"fleet": await _fleet(api, owner, "e")},
                              headers=owner)
    assert r.status_code == 200 and r.json()["count"] == 0
    south_id = next(f["id"] for f in (await api.client.get("/api/v1/fleets", headers=owner)).json()
                if f["name"] == "south")
    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json={"fleet": south_id}, headers=owner)
    assert r.status_code == 200 and r.json()["count"] == 2
    assert [await _version(api, owner, u) for u, _ in south] == [1, 1]
    assert [await _version(api, owner, u) for u, _ in north] == [2, 1, 1]


async def test_deploy_release_by_tag(api, owner):
    key = (await api.provisioning_key(owner))["key"]
    devices = [await _device(api, owner, key) for _ in range(4)]
    tags = [{"site": "berlin"}, {"site": "berlin", "floor": "1"}, {"site": "paris"}, {}]
    for (device_uuid, _), t in zip(devices, tags, strict=True):
        r = await api.client.put(f"/api/v1/devices/{device_uuid}/tags", json=t, headers=owner)
        assert r.status_code == 200

    rel = await _release(api, owner, "tagged")
    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json={"tag": "site:berlin"}, headers=owner)
    assert r.status_code == 200, r.text
    assert set(r.json()["devices"]) == {devices[0][0], devices[1][0]}
    assert [await _version(api, owner, u) for u, _ in devices] == [1, 1, 0, 0]

    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json={"tag": "site"}, headers=owner)
    assert r.status_code == 200 and r.json()["count"] == 3
    assert [await _version(api, owner, u) for u, _ in devices] == [2, 2, 1, 0]
    history = await _history(api, owner, devices[0][0])
    assert [(h["version"], h["releaseId"]) for h in history] == [(2, rel["id"]), (1, rel["id"])]


async def test_deploy_release_to_listed_devices(api, owner):
    key = (await api.provisioning_key(owner))["key"]
    devices = [await _device(api, owner, key) for _ in range(3)]
    rel = await _release(api, owner, "listed")
    chosen = [devices[0][0], devices[2][0]]

    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy",
                              json={"devices": [*chosen, "no-such-device-1"]}, headers=owner)
    assert r.status_code == 400
    assert "no-such-device-1" in r.json()["message"]
    assert [await _version(api, owner, u) for u, _ in devices] == [0, 0, 0]
    for device_uuid, _ in devices:
        assert await _history(api, owner, device_uuid) == []

    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json={"devices": chosen}, headers=owner)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["devices"]) == sorted(chosen) and r.json()["count"] == 2
    assert [await _version(api, owner, u) for u, _ in devices] == [1, 0, 1]
    state = (await _poll(api, devices[2][0], _dev(devices[2][1]))).json()[devices[2][0]]
    assert state["apps"]["1"]["services"][0]["config"]["image"] == "app:listed"


async def test_deploy_release_needs_a_valid_selection(api, owner):
    key = (await api.provisioning_key(owner))["key"]
    device_uuid, _ = await _device(api, owner, key)
    rel = await _release(api, owner, "sel")
    for body, status in (({}, 400), ({"devices": []}, 400), ({"fleet": "nowhere"}, 400), ({"tag": ":x"}, 400),
                         ({"everything": True}, 422), ({"devices": "all"}, 422)):
        r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json=body, headers=owner)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()) >= {"error", "message"}
    assert await _version(api, owner, device_uuid) == 0
    r = await api.client.post("/api/v1/releases/424242/deploy", json={"devices": [device_uuid]}, headers=owner)
    assert r.status_code == 404
    viewer = await api.headers_for(Role.viewer)
    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json={"devices": [device_uuid]},
                              headers=viewer)
    assert r.status_code == 403
    assert await _version(api, owner, device_uuid) == 0


async def test_release_document_is_not_changed_by_later_staging(api, owner):
    key = (await api.provisioning_key(owner))["key"]
    device_uuid, api_key = await _device(api, owner, key)
    rel = await _release(api, owner, "frozen")
    original = copy.deepcopy(rel["document"])
    r = await api.client.post(f"/api/v1/releases/{rel['id']}/deploy", json={"devices": [device_uuid]}, headers=owner)
    assert r.status_code == 200
    r = await api.client.put(f"/api/v1/devices/{device_uuid}/target-state", json=_target("changed:1"), headers=owner)
    assert r.status_code == 200
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/target-state", headers=owner)
    assert r.json()["pending"] is True and r.json()["releaseId"] is None
    assert (await api.client.get(f"/api/v1/releases/{rel['id']}", headers=owner)).json()["document"] == original
    state = (await _poll(api, device_uuid, _dev(api_key))).json()[device_uuid]
    assert state["apps"]["1"]["services"][0]["config"]["image"] == "app:frozen"


async def test_out_of_range_ids_are_client_errors(api, owner):
    """Ids beyond a 32-bit integer column are not ids: a 4xx, never a database driver error."""
    huge = 2**63
    for method, path, body in (("GET", f"/api/v1/fleets/{huge}", None), ("PATCH", f"/api/v1/fleets/{huge}", {}),
                               ("DELETE", f"/api/v1/fleets/{huge}", None), ("GET", f"/api/v1/releases/{huge}", None),
                               ("POST", f"/api/v1/releases/{huge}/deploy", {"devices": ["x"]}),
                               ("GET", "/api/v1/fleets/0", None), ("GET", "/api/v1/fleets/-1", None)):
        r = await api.client.request(method, path, json=body, headers=owner)
        assert r.status_code in (404, 422), (method, path, r.status_code, r.text)
        assert set(r.json()) >= {"error", "message"}
    for fleet in (huge, str(huge), "\u00b2", "\u0661"):  # also digits that are not ASCII
        r = await api.client.post("/api/v1/releases", json={"name": "r", "fleet": fleet, "target": {}},
                                  headers=owner)
        assert r.status_code == 400, (fleet, r.text)
        r = await api.client.post("/api/v1/provisioning-keys", json={"fleet": fleet}, headers=owner)
        assert r.status_code in (400, 422), (fleet, r.text)
        r = await api.client.get("/api/v1/releases", params={"fleet": str(fleet)}, headers=owner)
        assert r.status_code == 400, (fleet, r.text)


async def test_absurdly_long_numbers_are_client_errors(api, owner):
    digits = "9" * 5000
    r = await api.client.post("/api/v1/releases", json={"name": "r", "fleet": digits, "target": {}}, headers=owner)
    assert r.status_code == 400, r.text
    r = await api.client.post("/api/v1/releases", content=b'{"name": "r", "fleet": ' + digits.encode() + b', '
                              b'"target": {}}', headers={**owner, "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert set(r.json()) >= {"error", "message"}
    r = await api.client.get(f"/api/v1/fleets/{digits}", headers=owner)
    assert r.status_code == 422, r.text


async def test_target_documents_must_be_plain_json(api, owner):
    """A target is sent to devices as JSON: NUL, lone surrogates, NaN and Infinity are refused on both backends."""
    device_uuid, _ = await _device(api, owner)
    headers = {**owner, "Content-Type": "application/json"}
    path = f"/api/v1/devices/{device_uuid}/target-state"
    for raw in (b'{"config": {"x": "a\\u0000b"}}', b'{"config": {"x": "a\\ud800b"}}', b'{"config": {"x": NaN}}',
                b'{"config": {"x": [Infinity]}}', b'{"config": {"a\\u0000": 1}}'):
        r = await api.client.put(path, content=raw, headers=headers)
        assert r.status_code == 422, (raw, r.status_code, r.text)
        assert set(r.json()) >= {"error", "message"}
    target = _with_config(environment={"A": "x\x00y"})
    r = await api.client.put(path, json=target, headers=owner)
    assert r.status_code == 422, r.text
    r = await api.client.post("/api/v1/releases", json={"name": "r", "target": target}, headers=owner)
    assert r.status_code == 422, r.text
    r = await api.client.get(path, headers=owner)
    assert r.status_code == 200 and r.json()["staged"] == {"apps": {}, "config": {}}


async def test_nul_characters_anywhere_are_never_a_server_error(api, owner):
    """PostgreSQL text cannot hold NUL. Whatever the backend, the answer is a success or a clean 4xx."""
    device_uuid, _ = await _device(api, owner)
    bad = "a\x00b"
    calls = [
        ("PUT", f"/api/v1/devices/{device_uuid}/tags", {"json": {"k": bad}}),
        ("POST", "/api/v1/provisioning-keys", {"json": {"description": bad}}),
        ("POST", "/api/v1/fleets", {"json": {"name": "nul", "description": bad}}),
        ("PATCH", f"/api/v1/devices/{device_uuid}", {"json": {"deviceType": bad}}),
        ("POST", "/api/v1/releases", {"json": {"name": bad, "target": {}}}),
        ("GET", "/api/v1/devices", {"params": {"text": bad}}),
        ("GET", "/api/v1/devices", {"params": {"tag": bad}}),
        ("GET", "/api/v1/audit", {"params": {"actor": bad}}),
        ("GET", "/api/v1/devices/a%00bcdefgh", {}),
        ("GET", "/api/v1/devices/a%00bcdefgh/target-state", {}),
    ]
    for method, url, kwargs in calls:
        r = await api.client.request(method, url, headers=owner, **kwargs)
        assert r.status_code < 500, (method, url, r.status_code, r.text)
        if r.status_code >= 400:
            assert set(r.json()) >= {"error", "message"}, (method, url, r.text)
    r = await api.client.post("/api/v1/auth/login", json={"email": f"x{bad}@example.com", "password": "p" * 12})
    assert r.status_code in (401, 422), r.text
    # The instance still works afterwards.
    assert (await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)).status_code == 200


async def test_release_validation_messages_name_the_field_in_words(api, owner):
    """The dashboard shows each message next to its field: they say what is allowed, not the regex."""
    target = _target("ng inx")
    service = target["apps"]["1"]["services"][0]
    service["serviceName"] = "my service"
    service["config"]["environment"] = {"1X": "y"}
    r = await api.client.post("/api/v1/releases", json={"name": "bad", "target": target}, headers=owner)
    assert r.status_code == 422, r.text
    details = {".".join(d["loc"]): d["msg"] for d in r.json()["details"]}
    where = "body.target.apps.1.services.0"
    assert details == {
        f"{where}.serviceName": "use letters, digits, '.', '_' and '-', starting with a letter or digit "
                                "(at most 63 characters)",
        f"{where}.config.image": "an image reference has no spaces (e.g. nginx:1.27 or registry.example.com/app:2)",
        f"{where}.config.environment.1X.[key]": "an environment variable name uses letters, digits and '_' and does "
                                                "not start with a digit",
    }
    assert "pattern" not in r.json()["message"]
    # A trailing newline is not a name either.
    target = _target()
    target["apps"]["1"]["appName"] = "web\n"
    r = await api.client.post("/api/v1/releases", json={"name": "nl", "target": target}, headers=owner)
    assert r.status_code == 422 and r.json()["details"][0]["loc"][-1] == "appName"


async def test_fleet_names_are_refused_in_words(api, owner):
    r = await api.client.post("/api/v1/fleets", json={"name": "south site"}, headers=owner)
    assert r.status_code == 422
    assert r.json()["details"] == [{"loc": ["body", "name"], "msg": "use letters, digits, '.', '_' and '-', starting "
                                    "with a letter or digit (at most 64 characters)"}]
