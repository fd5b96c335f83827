"""Fixtures of the twin tests: a hand-built building model, sessions on the migrated test databases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.cloud.models import Device
from iotistic.twin.graph import EdgeSpec, EdgeType, GraphSnapshot, NodeSpec, NodeType


def model(*, building_b_name: str = "Building B", without: frozenset[str] = frozenset(),
          extra_nodes: tuple[NodeSpec, ...] = ()) -> GraphSnapshot:
    """Project P > Site S > Buildings A and B; A has storeys A1 (spaces A1-01, A1-02) and A2 (A2-01); B has B1
    (B1-01). Element EL-1 (a sensor) in A1-01; zone Z groups A1-02 and A2-01. GlobalIds are the names'
    stand-ins (`gid-<name>`). `without` drops nodes (and their edges) by name."""
    tree: list[tuple[str, NodeType, str | None]] = [
        ("P", NodeType.project, None), ("S", NodeType.site, "P"),
        ("A", NodeType.building, "S"), ("B", NodeType.building, "S"),
        ("A1", NodeType.storey, "A"), ("A2", NodeType.storey, "A"), ("B1", NodeType.storey, "B"),
        ("A1-01", NodeType.space, "A1"), ("A1-02", NodeType.space, "A1"), ("A2-01", NodeType.space, "A2"),
        ("B1-01", NodeType.space, "B1"),
    ]
    names = {"B": building_b_name}
    nodes: list[NodeSpec] = []
    edges: list[EdgeSpec] = []
    for key, kind, parent in tree:
        if key in without:
            continue
        nodes.append(NodeSpec(f"gid-{key}", kind, names.get(key, key), f"Ifc{kind.value}", {"Pset": {"Key": key}}))
        if parent is not None and parent not in without:
            edges.append(EdgeSpec(EdgeType.contains, f"gid-{parent}", f"gid-{key}"))
    if "EL-1" not in without:
        nodes.append(NodeSpec("gid-EL-1", NodeType.element, "Sensor EL-1", "IfcSensor",
                              {"Pset_SensorTypeCommon": {"SetPoint": 21.5}}))
        if "A1-01" not in without:
            edges.append(EdgeSpec(EdgeType.located_in, "gid-EL-1", "gid-A1-01"))
    if "Z" not in without:
        nodes.append(NodeSpec("gid-Z", NodeType.zone, "Zone Z", "IfcZone"))
        edges += [EdgeSpec(EdgeType.groups, "gid-Z", f"gid-{s}") for s in ("A1-02", "A2-01") if s not in without]
    nodes += extra_nodes
    return GraphSnapshot(schema="IFC4", nodes=nodes, edges=edges)


@pytest.fixture
def sessions(app: Any) -> async_sessionmaker[AsyncSession]:
    """Sessions on the app's database (the `app` fixture empties every table after the test)."""
    made: async_sessionmaker[AsyncSession] = app.state.ctx.sessions
    return made


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as s:
        yield s


@pytest.fixture
def make_device(session: AsyncSession) -> Callable[[str], Any]:
    async def _make(name: str) -> Device:
        device = Device(uuid=uuid.uuid4().hex, name=name, device_type="sensor-box")
        session.add(device)
        await session.flush()
        return device

    return _make
