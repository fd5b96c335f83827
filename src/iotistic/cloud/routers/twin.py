"""The digital twin: the building graph, where devices are, and what they measure there.

Every route needs a login and the licence's `digitalTwin` feature; viewers read, operators map devices and
edit user-made edges.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from iotistic.cloud.deps import Operator, RowId, Session, Viewer, require_feature
from iotistic.cloud.errors import not_found
from iotistic.cloud.models import MAX_ID
from iotistic.cloud.schemas import UUID_PATTERN
from iotistic.cloud.services import twin
from iotistic.cloud.twin_schemas import (
    DeviceInside,
    DevicesInOut,
    DeviceTelemetry,
    EdgeIn,
    EdgeOut,
    GraphLink,
    GraphNode,
    GraphOut,
    LocationIn,
    MappingOut,
    NodeDetail,
    NodeOut,
    PathOut,
    ReadingOut,
    SubtreeItem,
    SubtreeOut,
    TelemetryInOut,
)
from iotistic.twin.graph import NodeType
from iotistic.twin.store import MAX_DEPTH

router = APIRouter(prefix="/api/v1/twin", tags=["digital twin"],
                   dependencies=[Depends(require_feature("digitalTwin", "the digital twin"))])

DeviceUuid = Annotated[str, Query(pattern=UUID_PATTERN)]


@router.get("/nodes", response_model=list[NodeOut])
async def search_nodes(
    _: Viewer, session: Session,
    search: Annotated[str, Query(max_length=128, description="part of the name, any case")] = "",
    kind: Annotated[list[NodeType] | None, Query(description="repeat for several")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[NodeOut]:
    rows = await twin.store(session).search(search, kind or (), limit=limit)
    return [NodeOut.of(r) for r in rows]


@router.get("/nodes/{node_id}", response_model=NodeDetail)
async def get_node(node_id: RowId, _: Viewer, session: Session) -> NodeDetail:
    with twin.api_errors():
        row = await twin.store(session).get_node(node_id)
    return NodeDetail(**NodeOut.of(row).model_dump(), properties=row.properties or {})


@router.get("/nodes/{node_id}/subtree", response_model=SubtreeOut)
async def get_subtree(
    node_id: RowId, _: Viewer, session: Session,
    depth: Annotated[int, Query(ge=0, le=MAX_DEPTH)] = 1,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
) -> SubtreeOut:
    """The node and what is inside it (CONTAINS, GROUPS, LOCATED_IN), each node once at its shallowest depth."""
    with twin.api_errors():
        entries, truncated = await twin.store(session).subtree(node_id, depth, limit=limit)
    items = [SubtreeItem(**NodeOut.of(e.node).model_dump(), depth=e.depth, parent_id=e.parent_id, via=e.via)
             for e in entries]
    return SubtreeOut(items=items, truncated=truncated)


@router.get("/nodes/{node_id}/devices", response_model=DevicesInOut)
async def get_devices_in(node_id: RowId, _: Viewer, session: Session) -> DevicesInOut:
    """Every registry device inside the node, however deep (devices on elements in its spaces included)."""
    store = twin.store(session)
    with twin.api_errors():
        node = await store.get_node(node_id)
        found = await store.devices_in(node_id)
    return DevicesInOut(node=NodeOut.of(node), devices=[DeviceInside.of(d) for d in found])


@router.get("/nodes/{node_id}/telemetry", response_model=TelemetryInOut)
async def get_telemetry_in(node_id: RowId, _: Viewer, session: Session) -> TelemetryInOut:
    """The latest reading of every metric of every device inside the node."""
    store = twin.store(session)
    with twin.api_errors():
        node = await store.get_node(node_id)
        found = await store.latest_telemetry_in(node_id)
    devices = [DeviceTelemetry(**DeviceInside.of(d).model_dump(), readings=[ReadingOut.of(r) for r in readings])
               for d, readings in found]
    return TelemetryInOut(node=NodeOut.of(node), devices=devices)


@router.get("/devices/{uuid}/path", response_model=PathOut)
async def get_path(uuid: str, _: Viewer, session: Session) -> PathOut:
    """From the device up to its project: device, space (or element, then space), storey, building, site."""
    with twin.api_errors():
        found = await twin.store(session).path_to_site(uuid)
    return PathOut(device=uuid, mapped=len(found.path) > 1, path=[NodeOut.of(n) for n in found.path])


@router.get("/graph", response_model=GraphOut, response_model_exclude_none=True)
async def get_graph(
    _: Viewer, session: Session,
    root: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only what is inside this node")] = None,
    kind: Annotated[list[NodeType] | None, Query(description="only nodes of these kinds")] = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
) -> GraphOut:
    """Nodes and links for the dashboard's force-directed 3D view (links only between nodes returned)."""
    with twin.api_errors():
        found = await twin.store(session).export(root, limit=limit, kinds=kind or ())
    return GraphOut(nodes=[GraphNode.model_validate(n) for n in found.nodes],
                    links=[GraphLink.model_validate(link) for link in found.links], truncated=found.truncated)


@router.get("/mappings", response_model=list[MappingOut])
async def list_mappings(
    _: Viewer, session: Session,
    device: DeviceUuid | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[MappingOut]:
    rows = await twin.store(session).list_mappings(device_uuid=device, limit=limit, offset=offset)
    return [MappingOut.of(m) for m in rows]


@router.put("/devices/{uuid}/location", response_model=MappingOut)
async def put_location(uuid: str, body: LocationIn, principal: Operator, session: Session) -> MappingOut:
    """Place the device in a space or on an element; again to move it (a device is in one place at most)."""
    target = body.node if body.node is not None else body.global_id
    assert target is not None  # the body's validator guarantees one of them
    mapping = await twin.map_device(session, uuid, target, actor=principal.name, ip=principal.ip)
    await session.commit()
    return MappingOut.of(mapping)


@router.delete("/devices/{uuid}/location", status_code=204)
async def delete_location(uuid: str, principal: Operator, session: Session) -> Response:
    """Take the device out of its place; 404 if it is in none."""
    if not await twin.unmap_device(session, uuid, actor=principal.name, ip=principal.ip):
        raise not_found(f"location of device {uuid}")
    await session.commit()
    return Response(status_code=204)


@router.post("/edges", response_model=EdgeOut, status_code=201)
async def post_edge(body: EdgeIn, principal: Operator, session: Session) -> EdgeOut:
    """A user-defined edge: MONITORS or an own UPPER_SNAKE_CASE kind (the structural kinds are the import's)."""
    edge = await twin.add_edge(session, body.kind, body.source, body.target, body.properties,
                               actor=principal.name, ip=principal.ip)
    await session.commit()
    return EdgeOut.of(edge)


@router.delete("/edges/{edge_id}", status_code=204)
async def delete_edge(edge_id: RowId, principal: Operator, session: Session) -> Response:
    """Delete a user-made edge (an import's edges change with the model, not here)."""
    await twin.delete_edge(session, edge_id, actor=principal.name, ip=principal.ip)
    await session.commit()
    return Response(status_code=204)
