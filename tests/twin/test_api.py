"""The digital twin API on SQLite and PostgreSQL: authentication, roles, the licence gate, errors, mapping flows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from iotistic.cloud.models import AuditEvent, Device, Role, TelemetryLatest
from iotistic.twin.models import TwinEdge, TwinNode
from iotistic.twin.store import SqlGraphStore
from tests.conftest import Api
from tests.twin.conftest import model

TWIN = "/api/v1/twin"


@pytest.fixture
async def graph(app: Any) -> dict[str, Any]:
    """The hand-built model, two registry devices; returns node ids by GlobalId and the devices' uuids."""
    async with app.state.ctx.sessions() as session:
        await SqlGraphStore(session).apply_snapshot(model(), source="plant.ifc")
        for name in ("dev-one", "dev-two"):
            session.add(Device(uuid=f"uuid-{name}", name=name, device_type="sensor-box"))
        await session.commit()
        ids = {n.global_id: n.id for n in await session.scalars(select(TwinNode))}
    return ids


@pytest.fixture
async def viewer(api: Api) -> dict[str, str]:
    return await api.headers_for(Role.viewer)


@pytest.fixture
async def operator(api: Api) -> dict[str, str]:
    return await api.headers_for(Role.operator)


def _error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"] == error and body["message"]
    return body


async def test_every_route_needs_a_login(client: httpx.AsyncClient, graph: dict[str, Any]) -> None:
    node = graph["gid-A"]
    for method, path in (("GET", "/nodes"), ("GET", f"/nodes/{node}"), ("GET", f"/nodes/{node}/subtree"),
                         ("GET", f"/nodes/{node}/devices"), ("GET", f"/nodes/{node}/telemetry"),
                         ("GET", "/devices/uuid-dev-one/path"), ("GET", "/graph"), ("GET", "/mappings"),
                         ("PUT", "/devices/uuid-dev-one/location"), ("DELETE", "/devices/uuid-dev-one/location"),
                         ("POST", "/edges"), ("DELETE", "/edges/1")):
        r = await client.request(method, TWIN + path, json={"node": node} if method in ("PUT", "POST") else None)
        _error(r, 401, "unauthorized")


async def test_viewers_read_and_operators_write(client: httpx.AsyncClient, graph: dict[str, Any],
                                                viewer: dict[str, str], operator: dict[str, str]) -> None:
    space = graph["gid-A1-01"]
    r = await client.put(f"{TWIN}/devices/uuid-dev-one/location", json={"node": space}, headers=viewer)
    _error(r, 403, "forbidden")
    r = await client.post(f"{TWIN}/edges", json={"kind": "MONITORS", "source": space, "target": graph["gid-A"]},
                          headers=viewer)
    _error(r, 403, "forbidden")
    _error(await client.delete(f"{TWIN}/devices/uuid-dev-one/location", headers=viewer), 403, "forbidden")
    _error(await client.delete(f"{TWIN}/edges/1", headers=viewer), 403, "forbidden")

    r = await client.put(f"{TWIN}/devices/uuid-dev-one/location", json={"node": space}, headers=operator)
    assert r.status_code == 200, r.text
    r = await client.get(f"{TWIN}/mappings", headers=viewer)
    assert r.status_code == 200 and [m["device"] for m in r.json()] == ["uuid-dev-one"]


async def test_reads(client: httpx.AsyncClient, graph: dict[str, Any], viewer: dict[str, str],
                     operator: dict[str, str], app: Any) -> None:
    await client.put(f"{TWIN}/devices/uuid-dev-one/location", json={"globalId": "gid-EL-1"}, headers=operator)
    await client.put(f"{TWIN}/devices/uuid-dev-two/location", json={"globalId": "gid-B1-01"}, headers=operator)
    async with app.state.ctx.sessions() as session:
        device_id = await session.scalar(select(Device.id).where(Device.uuid == "uuid-dev-one"))
        assert device_id is not None
        session.add(TelemetryLatest(device_id=device_id, metric="temperature", value=21.5, unit="°C",
                                    ts=dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)))
        await session.commit()

    r = await client.get(f"{TWIN}/nodes", params={"search": "a1-", "kind": "Space"}, headers=viewer)
    assert [(n["name"], n["kind"], n["globalId"]) for n in r.json()] == [
        ("A1-01", "Space", "gid-A1-01"), ("A1-02", "Space", "gid-A1-02")]

    r = await client.get(f"{TWIN}/nodes/{graph['gid-EL-1']}", headers=viewer)
    assert r.json()["properties"] == {"Pset_SensorTypeCommon": {"SetPoint": 21.5}}
    assert r.json()["ifcClass"] == "IfcSensor" and r.json()["source"] == "plant.ifc"

    r = await client.get(f"{TWIN}/nodes/{graph['gid-A']}/subtree", params={"depth": 2}, headers=viewer)
    items = r.json()["items"]
    assert [(i["name"], i["depth"]) for i in items] == [("A", 0), ("A1", 1), ("A2", 1), ("A1-01", 2),
                                                        ("A1-02", 2), ("A2-01", 2)]
    assert items[1]["parentId"] == graph["gid-A"] and items[1]["via"] == "CONTAINS"

    r = await client.get(f"{TWIN}/nodes/{graph['gid-S']}/devices", headers=viewer)
    assert r.json()["node"]["name"] == "S"
    assert [(d["uuid"], d["locatedIn"]) for d in r.json()["devices"]] == [
        ("uuid-dev-one", graph["gid-EL-1"]), ("uuid-dev-two", graph["gid-B1-01"])]
    r = await client.get(f"{TWIN}/nodes/{graph['gid-A']}/devices", headers=viewer)
    assert [d["uuid"] for d in r.json()["devices"]] == ["uuid-dev-one"]

    r = await client.get(f"{TWIN}/nodes/{graph['gid-A1']}/telemetry", headers=viewer)
    assert r.json()["devices"] == [{"uuid": "uuid-dev-one", "name": "dev-one", "nodeId": r.json()["devices"][0]
                                    ["nodeId"], "locatedIn": graph["gid-EL-1"],
                                    "readings": [{"metric": "temperature", "value": 21.5, "unit": "°C",
                                                  "ts": "2026-11-27T10:00:00Z"}]}]

    r = await client.get(f"{TWIN}/devices/uuid-dev-two/path", headers=viewer)
    assert r.json()["mapped"] is True
    assert [n["kind"] for n in r.json()["path"]] == ["Device", "Space", "Storey", "Building", "Site", "Project"]

    r = await client.get(f"{TWIN}/graph", params={"root": graph["gid-B"]}, headers=viewer)
    graph_out = r.json()
    assert sorted(n["name"] for n in graph_out["nodes"]) == ["B1", "B1-01", "Building B", "dev-two"]
    assert len(graph_out["links"]) == 3 and graph_out["truncated"] is False
    assert {"source", "target", "kind", "id"} == set(graph_out["links"][0])
    r = await client.get(f"{TWIN}/graph", params={"limit": 2}, headers=viewer)
    assert len(r.json()["nodes"]) == 2 and r.json()["truncated"] is True


async def test_mapping_flow(client: httpx.AsyncClient, graph: dict[str, Any], operator: dict[str, str],
                            app: Any) -> None:
    url = f"{TWIN}/devices/uuid-dev-one/location"
    r = await client.put(url, json={"globalId": "gid-A1-01"}, headers=operator)
    assert r.status_code == 200
    assert r.json()["place"] == {"id": graph["gid-A1-01"], "kind": "Space", "name": "A1-01", "globalId": "gid-A1-01"}
    r = await client.put(url, json={"node": graph["gid-EL-1"]}, headers=operator)  # moves it
    assert r.json()["place"]["kind"] == "Element"
    r = await client.get(f"{TWIN}/mappings", params={"device": "uuid-dev-one"}, headers=operator)
    assert [m["place"]["globalId"] for m in r.json()] == ["gid-EL-1"]

    assert (await client.delete(url, headers=operator)).status_code == 204
    _error(await client.delete(url, headers=operator), 404, "not_found")
    assert (await client.get(f"{TWIN}/mappings", headers=operator)).json() == []
    r = await client.get(f"{TWIN}/devices/uuid-dev-one/path", headers=operator)
    assert r.json()["mapped"] is False
    async with app.state.ctx.sessions() as session:
        actions = list(await session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("twin.%")).order_by(AuditEvent.id)))
    assert actions == ["twin.device_mapped", "twin.device_mapped", "twin.device_unmapped"]


async def test_errors_are_4xx(client: httpx.AsyncClient, graph: dict[str, Any], operator: dict[str, str]) -> None:
    url = f"{TWIN}/devices/uuid-dev-one/location"
    _error(await client.put(url, json={"node": graph["gid-A1"]}, headers=operator), 422, "validation_error")
    _error(await client.put(url, json={}, headers=operator), 422, "validation_error")
    _error(await client.put(url, json={"node": 1, "globalId": "x"}, headers=operator), 422, "validation_error")
    _error(await client.put(url, json={"node": 0}, headers=operator), 422, "validation_error")
    _error(await client.put(url, json={"globalId": "x" * 65}, headers=operator), 422, "validation_error")
    _error(await client.put(url, json={"node": 2**31}, headers=operator), 422, "validation_error")
    _error(await client.put(url, json={"globalId": "gid-nowhere"}, headers=operator), 404, "not_found")
    _error(await client.put(f"{TWIN}/devices/nobody/location", json={"node": graph["gid-A1-01"]},
                            headers=operator), 404, "not_found")
    _error(await client.get(f"{TWIN}/nodes/999999", headers=operator), 404, "not_found")
    _error(await client.get(f"{TWIN}/nodes/0", headers=operator), 422, "validation_error")
    _error(await client.get(f"{TWIN}/nodes/abc", headers=operator), 422, "validation_error")
    _error(await client.get(f"{TWIN}/nodes/999999/subtree", headers=operator), 404, "not_found")
    _error(await client.get(f"{TWIN}/nodes/{graph['gid-A']}/subtree", params={"depth": 65}, headers=operator),
           422, "validation_error")
    _error(await client.get(f"{TWIN}/nodes/999999/devices", headers=operator), 404, "not_found")
    _error(await client.get(f"{TWIN}/nodes/999999/telemetry", headers=operator), 404, "not_found")
    _error(await client.get(f"{TWIN}/devices/nobody/path", headers=operator), 404, "not_found")
    _error(await client.get(f"{TWIN}/graph", params={"root": 999999}, headers=operator), 404, "not_found")
    _error(await client.get(f"{TWIN}/nodes", params={"kind": "Galaxy"}, headers=operator), 422,
           "validation_error")
    r = await client.get(f"{TWIN}/nodes", params={"search": "A1\x00"}, headers=operator)  # NUL is dropped
    assert r.status_code == 200 and [n["name"] for n in r.json()] == ["A1", "A1-01", "A1-02"]


async def test_user_edges(client: httpx.AsyncClient, graph: dict[str, Any], operator: dict[str, str],
                          app: Any) -> None:
    body = {"kind": "MONITORS", "source": "gid-EL-1", "target": graph["gid-A1-02"], "properties": {"why": "door"}}
    r = await client.post(f"{TWIN}/edges", json=body, headers=operator)
    assert r.status_code == 201, r.text
    edge = r.json()
    assert (edge["kind"], edge["source"], edge["target"], edge["origin"], edge["properties"]) == (
        "MONITORS", graph["gid-EL-1"], graph["gid-A1-02"], None, {"why": "door"})
    _error(await client.post(f"{TWIN}/edges", json=body, headers=operator), 409, "conflict")
    for bad in ({**body, "kind": "CONTAINS"}, {**body, "kind": "lower_case"}, {**body, "target": "gid-EL-1"},
                {**body, "source": 0}, {**body, "kind": ""}, {"kind": "MONITORS"}):
        _error(await client.post(f"{TWIN}/edges", json=bad, headers=operator), 422, "validation_error")
    _error(await client.post(f"{TWIN}/edges", json={**body, "source": "gid-missing"}, headers=operator), 404,
           "not_found")

    assert (await client.delete(f"{TWIN}/edges/{edge['id']}", headers=operator)).status_code == 204
    _error(await client.delete(f"{TWIN}/edges/{edge['id']}", headers=operator), 404, "not_found")
    async with app.state.ctx.sessions() as session:
        imported = await session.scalar(select(TwinEdge.id).where(TwinEdge.origin == "plant.ifc").limit(1))
    _error(await client.delete(f"{TWIN}/edges/{imported}", headers=operator), 422, "validation_error")
