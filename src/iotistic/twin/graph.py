"""The twin's vocabulary and the shape of a graph as an importer produces it: pure data, no I/O.

An importer turns a file into a `GraphSnapshot` (nodes keyed by IFC GlobalId, edges between GlobalIds). The store
applies a snapshot idempotently: what has the same GlobalId is updated, what is gone from the file is removed,
device mappings survive unless their space or element is gone (then they are reported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class NodeType(StrEnum):
    project = "Project"
    site = "Site"
    building = "Building"
    storey = "Storey"
    space = "Space"
    zone = "Zone"
    element = "Element"  # an IFC sensor, actuator, controller, alarm or other distribution control element
    device = "Device"  # a registry device (created by mapping, never by an import)


class EdgeType(StrEnum):
    contains = "CONTAINS"  # the spatial tree: project > site > building > storey > space
    located_in = "LOCATED_IN"  # an element or a device in a space (or a storey, building, site)
    monitors = "MONITORS"  # an element or a device watching another node
    groups = "GROUPS"  # a zone and its spaces (IfcZone via IfcRelAssignsToGroup)
    references = "REFERENCES"  # an element referenced by a further space (IfcRelReferencedInSpatialStructure)


# The spatial tree's levels, top down: a node's parent in CONTAINS is of an earlier kind.
SPATIAL_ORDER = (NodeType.project, NodeType.site, NodeType.building, NodeType.storey, NodeType.space)
# User-defined edge types: upper snake case, like the built-in ones.
CUSTOM_EDGE_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


@dataclass(frozen=True)
class NodeSpec:
    global_id: str  # IFC GlobalId (22 characters), the stable key across imports
    kind: NodeType
    name: str
    ifc_class: str | None = None  # e.g. IfcSensor
    # Property sets as {"Pset_X": {"Prop": value}}, plus attributes such as LongName.
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgeSpec:
    kind: EdgeType
    source: str  # GlobalId
    target: str  # GlobalId


@dataclass
class GraphSnapshot:
    """Everything one IFC file says, ready to be applied."""

    schema: str  # IFC2X3, IFC4, IFC4X3
    nodes: list[NodeSpec] = field(default_factory=list)
    edges: list[EdgeSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for node in self.nodes:
            found[node.kind.value] = found.get(node.kind.value, 0) + 1
        return found
