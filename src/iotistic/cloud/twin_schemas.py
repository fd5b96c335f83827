"""Bodies of the digital twin routes (camelCase on the wire, like `cloud.schemas`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, model_validator

from iotistic.cloud.models import MAX_ID
from iotistic.cloud.schemas import Wire
from iotistic.twin.planning import MAX_GLOBAL_ID
from iotistic.twin.store import DeviceInPlace, EdgeRow, Mapping, NodeRow, Reading


class NodeOut(Wire):
    id: int
    kind: str
    name: str
    global_id: str | None = None
    ifc_class: str | None = None
    source: str | None = Field(default=None, description="the import that made it; none for Device nodes")
    device: str | None = Field(default=None, description="Device nodes: the registry device's uuid")

    @classmethod
    def of(cls, row: NodeRow) -> NodeOut:
        return cls(id=row.id, kind=row.kind, name=row.name, global_id=row.global_id, ifc_class=row.ifc_class,
                   source=row.source, device=row.device_uuid)


class NodeDetail(NodeOut):
    properties: dict[str, Any] = Field(default_factory=dict, description="IFC property sets and attributes")


class SubtreeItem(NodeOut):
    depth: int
    parent_id: int | None
    via: str | None = Field(description="kind of the edge from the parent")


class SubtreeOut(Wire):
    items: list[SubtreeItem] = Field(description="root first, then by depth")
    truncated: bool


class DeviceInside(Wire):
    uuid: str
    name: str
    node_id: int
    located_in: int | None

    @classmethod
    def of(cls, d: DeviceInPlace) -> DeviceInside:
        return cls(uuid=d.uuid, name=d.name, node_id=d.node_id, located_in=d.located_in)


class DevicesInOut(Wire):
    node: NodeOut
    devices: list[DeviceInside]


class ReadingOut(Wire):
    metric: str
    value: float
    unit: str | None
    ts: dt.datetime

    @classmethod
    def of(cls, r: Reading) -> ReadingOut:
        return cls(metric=r.metric, value=r.value, unit=r.unit, ts=r.ts)


class DeviceTelemetry(DeviceInside):
    readings: list[ReadingOut]


class TelemetryInOut(Wire):
    node: NodeOut
    devices: list[DeviceTelemetry]


class PathOut(Wire):
    device: str
    mapped: bool
    path: list[NodeOut] = Field(description="the device's node, its place, then up to the project")


class GraphNode(Wire):
    id: int
    kind: str
    name: str
    global_id: str | None = None
    ifc_class: str | None = None
    device: str | None = None


class GraphLink(Wire):
    id: int
    source: int
    target: int
    kind: str


class GraphOut(Wire):
    nodes: list[GraphNode]
    links: list[GraphLink]
    truncated: bool


class PlaceOut(Wire):
    id: int
    kind: str
    name: str
    global_id: str | None


class MappingOut(Wire):
    device: str
    device_name: str
    node_id: int = Field(description="the device's Device node")
    place: PlaceOut

    @classmethod
    def of(cls, m: Mapping) -> MappingOut:
        return cls(device=m.device_uuid, device_name=m.device_name, node_id=m.device_node_id,
                   place=PlaceOut(id=m.target_id, kind=m.target_kind, name=m.target_name,
                                  global_id=m.target_global_id))


class LocationIn(Wire):
    """Where to put the device: a Space or an Element, by node id or by IFC GlobalId (exactly one)."""

    node: int | None = Field(default=None, ge=1, le=MAX_ID)
    global_id: str | None = Field(default=None, min_length=1, max_length=MAX_GLOBAL_ID)

    @model_validator(mode="after")
    def _one(self) -> LocationIn:
        if (self.node is None) == (self.global_id is None):
            raise ValueError("give exactly one of node and globalId")
        return self


class EdgeIn(Wire):
    kind: str = Field(min_length=1, max_length=64, description="MONITORS or an own UPPER_SNAKE_CASE kind")
    source: int | str = Field(description="node id or GlobalId")
    target: int | str = Field(description="node id or GlobalId")
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _refs(self) -> EdgeIn:
        for ref in (self.source, self.target):
            if isinstance(ref, int) and not 1 <= ref <= MAX_ID:
                raise ValueError(f"node id out of range: {ref}")
            if isinstance(ref, str) and not 1 <= len(ref) <= MAX_GLOBAL_ID:
                raise ValueError(f"GlobalId must be 1 to {MAX_GLOBAL_ID} characters")
        return self


class EdgeOut(Wire):
    id: int
    kind: str
    source: int
    target: int
    origin: str | None
    properties: dict[str, Any]

    @classmethod
    def of(cls, e: EdgeRow) -> EdgeOut:
        return cls(id=e.id, kind=e.kind, source=e.source_id, target=e.target_id, origin=e.origin,
                   properties=e.properties)
