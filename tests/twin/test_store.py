"""The SQL graph store on SQLite and PostgreSQL: applying snapshots, mapping devices, the recursive queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.models import TelemetryLatest
from iotistic.twin.graph import EdgeSpec, EdgeType, GraphSnapshot, NodeSpec, NodeType
from iotistic.twin.models import TwinEdge, TwinNode
from iotistic.twin.store import EdgeExists, InvalidRequest, NotFound, SnapshotError, SqlGraphStore
from tests.twin.conftest import model

SOURCE = "plant.ifc"


async def _nodes(session: AsyncSession) -> dict[str, TwinNode]:
    return {n.global_id: n for n in (await session.scalars(select(TwinNode).where(TwinNode.global_id.is_not(None))))}


async def _edges(session: AsyncSession) -> set[tuple[str, str, str, str | None]]:
    by_id = {n.id: n.global_id or f"device:{n.device_id}" for n in await session.scalars(select(TwinNode))}
    return {(e.kind, by_id[e.source_id], by_id[e.target_id], e.origin)
            for e in await session.scalars(select(TwinEdge))}


async def test_apply_creates_every_node_and_edge(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    report = await store.apply_snapshot(model(), source=SOURCE)
    await session.commit()

    assert dict(report.created) == {"Project": 1, "Site": 1, "Building": 2, "Storey": 3, "Space": 4,
                                    "Element": 1, "Zone": 1}
    assert not report.updated and not report.deleted and report.lost_mappings == []
    assert report.edges_created == 13 and report.edges_deleted == 0
    nodes = await _nodes(session)
    assert len(nodes) == 13
    a101 = nodes["gid-A1-01"]
    assert (a101.kind, a101.name, a101.ifc_class, a101.source) == ("Space", "A1-01", "IfcSpace", SOURCE)
    assert a101.properties == {"Pset": {"Key": "A1-01"}}
    sensor = nodes["gid-EL-1"]
    assert (sensor.kind, sensor.name, sensor.ifc_class) == ("Element", "Sensor EL-1", "IfcSensor")
    assert sensor.properties == {"Pset_SensorTypeCommon": {"SetPoint": 21.5}}
    assert nodes["gid-B"].name == "Building B" and nodes["gid-Z"].kind == "Zone"
    assert await _edges(session) == {
        ("CONTAINS", "gid-P", "gid-S", SOURCE), ("CONTAINS", "gid-S", "gid-A", SOURCE),
        ("CONTAINS", "gid-S", "gid-B", SOURCE), ("CONTAINS", "gid-A", "gid-A1", SOURCE),
        ("CONTAINS", "gid-A", "gid-A2", SOURCE), ("CONTAINS", "gid-B", "gid-B1", SOURCE),
        ("CONTAINS", "gid-A1", "gid-A1-01", SOURCE), ("CONTAINS", "gid-A1", "gid-A1-02", SOURCE),
        ("CONTAINS", "gid-A2", "gid-A2-01", SOURCE), ("CONTAINS", "gid-B1", "gid-B1-01", SOURCE),
        ("LOCATED_IN", "gid-EL-1", "gid-A1-01", SOURCE),
        ("GROUPS", "gid-Z", "gid-A1-02", SOURCE), ("GROUPS", "gid-Z", "gid-A2-01", SOURCE),
    }


async def test_reapplying_the_same_snapshot_changes_nothing(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    await session.commit()
    before = {gid: (n.id, n.updated_at) for gid, n in (await _nodes(session)).items()}
    edges_before = await _edges(session)
    session.expunge_all()

    again = await store.apply_snapshot(model(), source=SOURCE)
    await session.commit()

    assert not again.changed
    assert (dict(again.created), dict(again.updated), dict(again.deleted)) == ({}, {}, {})
    assert {gid: (n.id, n.updated_at) for gid, n in (await _nodes(session)).items()} == before
    assert await _edges(session) == edges_before


async def test_rename_updates_in_place(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    await session.commit()
    old_id = (await _nodes(session))["gid-B"].id
    session.expunge_all()

    report = await store.apply_snapshot(model(building_b_name="Building B (east wing)"), source=SOURCE)
    await session.commit()

    assert dict(report.updated) == {"Building": 1}
    assert not report.created and not report.deleted and report.edges_created == report.edges_deleted == 0
    renamed = (await _nodes(session))["gid-B"]
    assert (renamed.id, renamed.name) == (old_id, "Building B (east wing)")


async def test_removed_things_are_deleted_with_their_edges(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    await session.commit()

    report = await store.apply_snapshot(model(without=frozenset({"A2", "A2-01", "Z"})), source=SOURCE)
    await session.commit()

    assert dict(report.deleted) == {"Storey": 1, "Space": 1, "Zone": 1}
    # A > A2, A2 > A2-01, Z > A1-02, Z > A2-01
    assert report.edges_deleted == 4 and report.edges_created == 0
    nodes = await _nodes(session)
    assert set(nodes) == {"gid-P", "gid-S", "gid-A", "gid-B", "gid-A1", "gid-B1", "gid-A1-01", "gid-A1-02",
                          "gid-B1-01", "gid-EL-1"}
    assert all("A2" not in s and "A2" not in t and "Z" not in s for _, s, t, _ in await _edges(session))


async def test_mappings_survive_reimport_unless_their_place_is_gone(
        session: AsyncSession, make_device: Callable[[str], Any]) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    in_space, in_lost_space, on_element = await make_device("d1"), await make_device("d2"), await make_device("d3")
    await store.map_device(in_space.uuid, "gid-A1-01")
    await store.map_device(in_lost_space.uuid, "gid-A2-01")
    await store.map_device(on_element.uuid, "gid-EL-1")
    # A user-made edge between two imported nodes that both stay.
    await store.add_edge("MONITORS", "gid-EL-1", "gid-A1-02")
    await session.commit()

    report = await store.apply_snapshot(model(building_b_name="B renamed", without=frozenset({"A2-01"})),
                                        source=SOURCE)
    await session.commit()

    assert report.lost_mappings == [(in_lost_space.uuid, "gid-A2-01")]
    assert dict(report.deleted) == {"Space": 1}
    mappings = {m.device_uuid: m.target_global_id for m in await store.list_mappings()}
    assert mappings == {in_space.uuid: "gid-A1-01", on_element.uuid: "gid-EL-1"}
    assert ("MONITORS", "gid-EL-1", "gid-A1-02", None) in await _edges(session)

    # Removing the element loses the mapping onto it.
    gone = await store.apply_snapshot(model(without=frozenset({"A2-01", "EL-1"})), source=SOURCE)
    await session.commit()
    assert gone.lost_mappings == [(on_element.uuid, "gid-EL-1")]
    assert [m.device_uuid for m in await store.list_mappings()] == [in_space.uuid]


async def test_a_bad_snapshot_writes_nothing(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    await session.commit()
    count = await session.scalar(select(func.count()).select_from(TwinNode))

    twice = GraphSnapshot("IFC4", nodes=[NodeSpec("x", NodeType.space, "a"), NodeSpec("x", NodeType.space, "b")])
    dangling = GraphSnapshot("IFC4", nodes=[NodeSpec("x", NodeType.space, "a")],
                             edges=[EdgeSpec(EdgeType.contains, "gid-P", "x")])
    device = GraphSnapshot("IFC4", nodes=[NodeSpec("x", NodeType.device, "a")])
    for bad, message in ((twice, "appears twice"), (dangling, "not a node of the snapshot"),
                         (device, "registry")):
        with pytest.raises(SnapshotError, match=message):
            await store.apply_snapshot(bad, source=SOURCE)
    with pytest.raises(SnapshotError, match="source"):
        await store.apply_snapshot(model(), source="")
    assert await session.scalar(select(func.count()).select_from(TwinNode)) == count


async def test_values_the_databases_refuse_are_cleaned(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    odd = NodeSpec("gid-odd", NodeType.element, "bad\x00name", "IfcSensor",
                   {"Pset": {"nan": float("nan"), "tuple": (1, 2), "nul\x00key": "v\x00"}})
    await store.apply_snapshot(model(extra_nodes=(odd,)), source=SOURCE)
    await session.commit()
    node = (await _nodes(session))["gid-odd"]
    assert node.name == "badname"
    assert node.properties == {"Pset": {"nan": None, "tuple": [1, 2], "nulkey": "v"}}


async def test_another_source_takes_over_a_global_id(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    report = await store.apply_snapshot(
        GraphSnapshot("IFC4", nodes=[NodeSpec("gid-B1-01", NodeType.space, "moved")]), source="annex.ifc")
    await session.commit()
    assert dict(report.updated) == {"Space": 1} and not report.created
    node = (await _nodes(session))["gid-B1-01"]
    assert (node.source, node.name) == ("annex.ifc", "moved")
    # Removing the annex import removes only what it holds now.
    removed = await store.delete_source("annex.ifc")
    await session.commit()
    assert dict(removed.deleted) == {"Space": 1}
    assert len(await _nodes(session)) == 12


async def test_devices_in_is_recursive(session: AsyncSession, make_device: Callable[[str], Any]) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    d1, d2, d3, d4 = [await make_device(n) for n in ("d1", "d2", "d3", "d4")]
    await store.map_device(d1.uuid, "gid-A1-01")
    await store.map_device(d2.uuid, "gid-A2-01")
    await store.map_device(d3.uuid, "gid-EL-1")  # on the sensor, which is in A1-01
    await store.map_device(d4.uuid, "gid-B1-01")
    await session.commit()

    async def names(ref: str) -> list[str]:
        return [d.name for d in await store.devices_in(ref)]

    assert await names("gid-P") == ["d1", "d2", "d3", "d4"]
    assert await names("gid-S") == ["d1", "d2", "d3", "d4"]
    assert await names("gid-A") == ["d1", "d2", "d3"]
    assert await names("gid-B") == ["d4"]
    assert await names("gid-A1") == ["d1", "d3"]
    assert await names("gid-A1-01") == ["d1", "d3"]
    assert await names("gid-A1-02") == []
    assert await names("gid-Z") == ["d2"]
    assert await names("gid-EL-1") == ["d3"]
    located = {d.name: d.located_in for d in await store.devices_in("gid-A1")}
    nodes = await _nodes(session)
    assert located == {"d1": nodes["gid-A1-01"].id, "d3": nodes["gid-EL-1"].id}
    by_id = await store.devices_in(nodes["gid-A2"].id)
    assert [d.uuid for d in by_id] == [d2.uuid]
    with pytest.raises(NotFound):
        await store.devices_in("gid-nowhere")


async def test_path_to_site(session: AsyncSession, make_device: Callable[[str], Any]) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    on_element, unmapped = await make_device("on-element"), await make_device("unmapped")
    await store.map_device(on_element.uuid, "gid-EL-1")
    await session.commit()

    path = await store.path_to_site(on_element.uuid)
    assert [(n.kind, n.global_id) for n in path.path] == [
        ("Device", None), ("Element", "gid-EL-1"), ("Space", "gid-A1-01"), ("Storey", "gid-A1"),
        ("Building", "gid-A"), ("Site", "gid-S"), ("Project", "gid-P")]
    assert path.path[0].device_uuid == on_element.uuid
    assert (await store.path_to_site(unmapped.uuid)).path == []
    with pytest.raises(NotFound):
        await store.path_to_site("no-such-device")


async def test_search_subtree_and_node(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(extra_nodes=(NodeSpec("gid-pct", NodeType.space, "100%_done"),)),
                               source=SOURCE)
    await session.commit()

    assert [n.name for n in await store.search("a1-0")] == ["A1-01", "A1-02"]
    assert [n.name for n in await store.search("a", [NodeType.building])] == ["A"]
    assert [n.name for n in await store.search("", [NodeType.storey, NodeType.zone])] == ["A1", "A2", "B1",
                                                                                          "Zone Z"]
    assert [n.name for n in await store.search("%_")] == ["100%_done"]  # wildcards are literal

    entries, truncated = await store.subtree("gid-A", depth=1)
    assert [(e.node.name, e.depth) for e in entries] == [("A", 0), ("A1", 1), ("A2", 1)]
    assert not truncated and entries[1].parent_id == entries[0].node.id and entries[1].via == "CONTAINS"
    deep, _ = await store.subtree("gid-A1", depth=5)
    assert [(e.node.name, e.depth, e.via) for e in deep] == [
        ("A1", 0, None), ("A1-01", 1, "CONTAINS"), ("A1-02", 1, "CONTAINS"), ("Sensor EL-1", 2, "LOCATED_IN")]
    cut, truncated = await store.subtree("gid-P", depth=10, limit=3)
    assert len(cut) == 3 and truncated

    node = await store.get_node("gid-EL-1")
    assert node.properties == {"Pset_SensorTypeCommon": {"SetPoint": 21.5}}
    assert (await store.get_node(node.id)).global_id == "gid-EL-1"
    with pytest.raises(NotFound):
        await store.get_node(10**6)


async def test_export(session: AsyncSession, make_device: Callable[[str], Any]) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    device = await make_device("dev-in-b")
    await store.map_device(device.uuid, "gid-B1-01")
    await session.commit()

    everything = await store.export()
    assert len(everything.nodes) == 14 and len(everything.links) == 14 and not everything.truncated
    ids = {n["id"] for n in everything.nodes}
    assert all(link["source"] in ids and link["target"] in ids for link in everything.links)
    device_node = next(n for n in everything.nodes if n["kind"] == "Device")
    assert device_node["device"] == device.uuid and device_node["name"] == "dev-in-b"

    b = await store.export("gid-B")
    assert sorted(n["name"] for n in b.nodes) == ["B1", "B1-01", "Building B", "dev-in-b"]
    assert sorted(link["kind"] for link in b.links) == ["CONTAINS", "CONTAINS", "LOCATED_IN"]

    small = await store.export(limit=3)
    assert len(small.nodes) == 3 and small.truncated
    assert all(link["source"] in {n["id"] for n in small.nodes} for link in small.links)
    spaces = await store.export(kinds=[NodeType.space])
    assert {n["kind"] for n in spaces.nodes} == {"Space"} and spaces.links == []


async def test_latest_telemetry_in(session: AsyncSession, make_device: Callable[[str], Any]) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    reporting, silent, elsewhere = await make_device("a-reporting"), await make_device("b-silent"), \
        await make_device("c-elsewhere")
    await store.map_device(reporting.uuid, "gid-A1-01")
    await store.map_device(silent.uuid, "gid-EL-1")
    await store.map_device(elsewhere.uuid, "gid-B1-01")
    ts = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
    session.add_all([TelemetryLatest(device_id=reporting.id, metric="temperature", ts=ts, value=21.5, unit="°C"),
                     TelemetryLatest(device_id=reporting.id, metric="humidity", ts=ts, value=40.0, unit="%"),
                     TelemetryLatest(device_id=elsewhere.id, metric="temperature", ts=ts, value=5.0)])
    await session.commit()

    found = await store.latest_telemetry_in("gid-A1")
    assert [(d.uuid, [(r.metric, r.value, r.unit, r.ts) for r in readings]) for d, readings in found] == [
        (reporting.uuid, [("humidity", 40.0, "%", ts), ("temperature", 21.5, "°C", ts)]),
        (silent.uuid, []),
    ]


async def test_mapping_rules(session: AsyncSession, make_device: Callable[[str], Any]) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    device = await make_device("mover")
    first = await store.map_device(device.uuid, "gid-A1-01")
    assert (first.target_kind, first.target_name, first.target_global_id) == ("Space", "A1-01", "gid-A1-01")
    space_b = (await _nodes(session))["gid-B1-01"].id
    moved = await store.map_device(device.uuid, space_b)  # by node id this time
    assert moved.device_node_id == first.device_node_id  # one node per device, reused
    assert [(m.device_uuid, m.target_global_id) for m in await store.list_mappings()] == [
        (device.uuid, "gid-B1-01")]
    assert await store.list_mappings(device_uuid="other") == []

    with pytest.raises(InvalidRequest, match="Space or an Element"):
        await store.map_device(device.uuid, "gid-A1")
    with pytest.raises(NotFound, match="node gid-none"):
        await store.map_device(device.uuid, "gid-none")
    with pytest.raises(NotFound, match="device nobody"):
        await store.map_device("nobody", "gid-A1-01")

    assert await store.unmap_device(device.uuid) is True
    assert await store.unmap_device(device.uuid) is False
    assert await store.list_mappings() == []
    await session.commit()


async def test_user_edges(session: AsyncSession) -> None:
    store = SqlGraphStore(session)
    await store.apply_snapshot(model(), source=SOURCE)
    edge = await store.add_edge("FEEDS", "gid-A1-01", "gid-A1-02", {"note": "duct"})
    assert (edge.kind, edge.origin, edge.properties) == ("FEEDS", None, {"note": "duct"})
    with pytest.raises(EdgeExists):
        await store.add_edge("FEEDS", "gid-A1-01", "gid-A1-02")
    for bad in ("CONTAINS", "LOCATED_IN", "lower", "WITH SPACE", "X" * 65):
        with pytest.raises(InvalidRequest):
            await store.add_edge(bad, "gid-A1-01", "gid-A1-02")
    with pytest.raises(InvalidRequest, match="two different"):
        await store.add_edge("MONITORS", "gid-A1-01", "gid-A1-01")
    assert (await store.delete_edge(edge.id)).kind == "FEEDS"
    with pytest.raises(NotFound):
        await store.delete_edge(edge.id)
    imported = await session.scalar(select(TwinEdge.id).where(TwinEdge.origin == SOURCE).limit(1))
    assert imported is not None
    with pytest.raises(InvalidRequest, match="import"):
        await store.delete_edge(imported)
    await session.commit()
