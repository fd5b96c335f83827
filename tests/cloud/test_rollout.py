"""A release's rollout: deployed version against the version each device reports, per state, problems first."""

from __future__ import annotations

from typing import Any

from iotistic.cloud.models import Role

STATES = ("failed", "offline", "updating", "other_release", "converged")


def _dev(key: str) -> dict[str, str]:
    return {"X-Device-API-Key": key}


def _target(image: str) -> dict[str, Any]:
    return {"apps": {"1": {"appId": 1, "appName": "web", "services": [
        {"serviceId": 1, "serviceName": "web", "config": {"image": image}}]}}}


async def _release(api: Any, owner: dict[str, str], name: str) -> int:
    r = await api.client.post("/api/v1/releases", json={"name": name, "target": _target(f"app:{name}")},
                              headers=owner)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _devices(api: Any, owner: dict[str, str], fleet: str, n: int) -> list[tuple[str, str]]:
    r = await api.client.post("/api/v1/fleets", json={"name": fleet}, headers=owner)
    assert r.status_code == 201, r.text
    key = (await api.provisioning_key(owner, fleet=fleet))["key"]
    out = []
    for i in range(n):
        body, api_key = await api.register(key, deviceName=f"{fleet}-{i}")
        out.append((body["uuid"], api_key))
    return out


async def _report(api: Any, device: tuple[str, str], **report: Any) -> None:
    r = await api.client.patch("/api/v1/device/state", json={device[0]: report}, headers=_dev(device[1]))
    assert r.status_code == 204, r.text


async def _rollout(api: Any, headers: dict[str, str], release: int, **params: Any) -> dict[str, Any]:
    r = await api.client.get(f"/api/v1/releases/{release}/rollout", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_devices_converge_as_they_report(api, owner, app):
    devices = await _devices(api, owner, "north", 4)
    v1 = await _release(api, owner, "v1")
    r = await api.client.post(f"/api/v1/releases/{v1}/deploy", json={"fleet": "north"}, headers=owner)
    assert r.status_code == 200, r.text

    # Nobody has reported yet and nobody is connected: all offline, none converged.
    out = await _rollout(api, owner, v1, fleet="north")
    assert out["summary"] == {"failed": 0, "offline": 4, "updating": 0, "other_release": 0, "converged": 0}
    assert out["total"] == 4 and {d["targetVersion"] for d in out["items"]} == {1}
    assert all(d["targetReleaseId"] == v1 and d["appliedVersion"] is None for d in out["items"])

    await _report(api, devices[0], appliedVersion=1, status="applied")
    await _report(api, devices[1], appliedVersion=0, status="applying")
    await _report(api, devices[2], appliedVersion=0, status="error")
    assert await app.state.ctx.presence.flush() == 3  # reporting is contact: these three are online
    out = await _rollout(api, owner, v1, fleet="north")
    assert out["summary"] == {"failed": 1, "offline": 1, "updating": 1, "other_release": 0, "converged": 1}
    by_uuid = {d["uuid"]: d for d in out["items"]}
    assert by_uuid[devices[0][0]]["state"] == "converged" and by_uuid[devices[0][0]]["appliedVersion"] == 1
    assert by_uuid[devices[1][0]]["state"] == "updating" and by_uuid[devices[1][0]]["online"] is True
    assert by_uuid[devices[2][0]]["state"] == "failed" and by_uuid[devices[2][0]]["status"] == "error"
    assert by_uuid[devices[3][0]]["state"] == "offline" and by_uuid[devices[3][0]]["reportedAt"] is None
    # Problems first.
    assert [d["state"] for d in out["items"]] == ["failed", "offline", "updating", "converged"]

    # A later release replaces v1 on one device: v1's view says so, without a selection it leaves the list.
    v2 = await _release(api, owner, "v2")
    r = await api.client.post(f"/api/v1/releases/{v2}/deploy", json={"devices": [devices[0][0]]}, headers=owner)
    assert r.status_code == 200
    out = await _rollout(api, owner, v1, fleet="north")
    assert out["summary"]["other_release"] == 1 and out["summary"]["converged"] == 0
    replaced = next(d for d in out["items"] if d["uuid"] == devices[0][0])
    assert replaced["state"] == "other_release" and replaced["targetReleaseId"] == v2
    assert replaced["targetVersion"] == 2
    deployed_v1 = await _rollout(api, owner, v1)
    assert deployed_v1["total"] == 3 and devices[0][0] not in {d["uuid"] for d in deployed_v1["items"]}
    only_v2 = await _rollout(api, owner, v2)
    assert [d["uuid"] for d in only_v2["items"]] == [devices[0][0]]
    assert only_v2["items"][0]["state"] == "updating"  # it still reports version 1


async def test_staging_an_edit_does_not_hide_the_running_release(api, owner):
    devices = await _devices(api, owner, "east", 1)
    v1 = await _release(api, owner, "v1")
    assert (await api.client.post(f"/api/v1/releases/{v1}/deploy", json={"fleet": "east"},
                                  headers=owner)).status_code == 200
    await _report(api, devices[0], appliedVersion=1, status="applied")
    r = await api.client.put(f"/api/v1/devices/{devices[0][0]}/target-state", json=_target("app:edited"),
                             headers=owner)
    assert r.status_code == 200 and r.json()["releaseId"] is None
    out = await _rollout(api, owner, v1)
    assert [(d["uuid"], d["state"]) for d in out["items"]] == [(devices[0][0], "converged")]


async def test_state_filter_paging_and_tag_selection(api, owner):
    devices = await _devices(api, owner, "west", 5)
    for i, (device_uuid, _) in enumerate(devices):
        r = await api.client.put(f"/api/v1/devices/{device_uuid}/tags", json={"ring": "canary" if i < 3 else "main"},
                                 headers=owner)
        assert r.status_code == 200
    v1 = await _release(api, owner, "v1")
    assert (await api.client.post(f"/api/v1/releases/{v1}/deploy", json={"tag": "ring:canary"},
                                  headers=owner)).status_code == 200
    for device in devices[:2]:
        await _report(api, device, appliedVersion=1, status="applied")

    canary = await _rollout(api, owner, v1, tag="ring:canary")
    assert canary["summary"]["converged"] == 2 and canary["total"] == 3
    everyone = await _rollout(api, owner, v1, fleet="west")
    assert everyone["summary"]["other_release"] == 2 and everyone["total"] == 5
    converged = await _rollout(api, owner, v1, fleet="west", state="converged", limit=1)
    assert converged["total"] == 2 and len(converged["items"]) == 1
    second = await _rollout(api, owner, v1, fleet="west", state="converged", limit=1, offset=1)
    assert {converged["items"][0]["uuid"], second["items"][0]["uuid"]} == {d[0] for d in devices[:2]}
    # The summary counts the whole selection, whatever the state filter and page.
    assert converged["summary"] == everyone["summary"]


async def test_viewers_read_it_and_bad_input_is_explained(api, owner):
    await _devices(api, owner, "south", 1)
    v1 = await _release(api, owner, "v1")
    viewer = await api.headers_for(Role.viewer)
    assert (await _rollout(api, viewer, v1, fleet="south"))["summary"]["other_release"] == 1
    for params, status, words in (
        ({"fleet": "nowhere"}, 400, "does not exist"),
        ({"tag": ":x"}, 400, "key or key:value"),
        ({"state": "done"}, 422, "state"),
        ({"limit": 0}, 422, "limit"),
    ):
        r = await api.client.get(f"/api/v1/releases/{v1}/rollout", params=params, headers=owner)
        assert r.status_code == status, (params, r.text)
        assert words in r.json()["message"]
    r = await api.client.get("/api/v1/releases/999999/rollout", headers=owner)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert (await api.client.get(f"/api/v1/releases/{v1}/rollout")).status_code == 401
