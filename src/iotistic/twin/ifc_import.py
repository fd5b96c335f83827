"""IFC -> graph: open an IFC file (IfcOpenShell) and turn it into a `GraphSnapshot`. Pure apart from `read_ifc`.

What is read, in one pass over each relationship type (per-element utility calls would walk inverse attributes
once per element, several times slower on large files):

- the spatial tree through IfcRelAggregates: Project > Site > Building > Storey > Space, CONTAINS edges from the
  parent to the child. Several sites and buildings per file are fine. A spatial element of another kind (e.g. an
  IFC4X3 IfcFacility or IfcSpatialZone) is skipped with a warning and what it holds is attached to its nearest known
  ancestor; a site in a site (or a space in a space) hangs from the nearest ancestor of a higher level;
- distribution control elements (IfcSensor, IfcActuator, IfcController, IfcAlarm, ... and IFC2X3's
  IfcDistributionControlElement with its type, e.g. IfcSensorType) as Element nodes: a LOCATED_IN edge to their
  container (IfcRelContainedInSpatialStructure, or the container of the element they are part of) and REFERENCES
  edges to the further spaces that reference them (IfcRelReferencedInSpatialStructure). An element without a
  container is skipped with a warning;
- IfcZone groupings (IfcRelAssignsToGroup) as Zone nodes with GROUPS edges to their spaces (and nested zones);
- property sets and quantity sets as node properties (`{"Pset_SpaceCommon": {"IsExternal": false}}`; an element
  inherits its type's sets, its own override them), plus LongName, Description, ObjectType, PredefinedType and Tag
  where present.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ifcopenshell
import ifcopenshell.util.element
from ifcopenshell import ifcopenshell_wrapper

from iotistic.twin.gcpause import gc_paused
from iotistic.twin.graph import SPATIAL_ORDER, EdgeSpec, EdgeType, GraphSnapshot, NodeSpec, NodeType

SUPPORTED_SCHEMAS = ("IFC2X3", "IFC4", "IFC4X3")
# The IFC classes of spatial nodes (subclasses included: IfcBuildingStorey's IFC4X3 subtypes, if any).
SPATIAL_CLASSES = {
    "IfcProject": NodeType.project,
    "IfcSite": NodeType.site,
    "IfcBuilding": NodeType.building,
    "IfcBuildingStorey": NodeType.storey,
    "IfcSpace": NodeType.space,
}
ELEMENT_CLASS = "IfcDistributionControlElement"  # IfcSensor, IfcActuator, IfcController, IfcAlarm, ...
# What kind of device an element is, from its class or (IFC2X3) its type's class.
ELEMENT_KINDS = {
    "IfcSensor": "sensor", "IfcSensorType": "sensor",
    "IfcActuator": "actuator", "IfcActuatorType": "actuator",
    "IfcController": "controller", "IfcControllerType": "controller",
    "IfcAlarm": "alarm", "IfcAlarmType": "alarm",
    "IfcFlowInstrument": "flow_instrument", "IfcFlowInstrumentType": "flow_instrument",
    "IfcUnitaryControlElement": "unitary_control_element",
    "IfcUnitaryControlElementType": "unitary_control_element",
    "IfcProtectiveDeviceTrippingUnit": "protective_device_tripping_unit",
    "IfcProtectiveDeviceTrippingUnitType": "protective_device_tripping_unit",
}
ATTRIBUTES = ("LongName", "Description", "ObjectType", "Tag")
_SPF_END = b"END-ISO-10303-21;"
_TAIL_BYTES = 4096

# (phase, fraction of that phase done in [0, 1])
ProgressCallback = Callable[[str, float], None]


class IfcError(ValueError):
    """The file is not an IFC file IfcOpenShell can read, or of a schema the importer does not support."""


def check_ifc_file(path: str | os.PathLike[str]) -> None:
    """The cheap checks, without parsing: the file exists, is not empty, starts as IFC-SPF and is not cut short.
    Raises `IfcError`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            tail = handle.read()
    except FileNotFoundError:
        raise IfcError(f"{path}: no such file") from None
    except OSError as exc:
        raise IfcError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if size == 0:
        raise IfcError("the file is empty")
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"ISO-10303-21"):
        raise IfcError("not an IFC file: it does not start with ISO-10303-21 (only IFC-SPF .ifc files are read)")
    if _SPF_END not in tail:
        raise IfcError("the IFC file is truncated or corrupt: it does not end with END-ISO-10303-21")


def read_ifc(path: str | os.PathLike[str]) -> ifcopenshell.file:
    """Open an IFC-SPF file (.ifc). Raises `IfcError` with a message fit for a user when it is not one."""
    path = os.fspath(path)
    check_ifc_file(path)
    try:
        model = ifcopenshell.open(path, format=".ifc")
    except ifcopenshell.SchemaError as exc:
        raise IfcError(f"unsupported IFC schema ({exc}); supported: {', '.join(SUPPORTED_SCHEMAS)}") from None
    except (ifcopenshell.Error, OSError, RuntimeError) as exc:
        raise IfcError(f"the IFC file is corrupt: {exc}") from None
    if model.schema not in SUPPORTED_SCHEMAS:
        raise IfcError(f"unsupported IFC schema {model.schema_identifier}; supported: {', '.join(SUPPORTED_SCHEMAS)}")
    if not model.by_type("IfcProject"):
        raise IfcError("the IFC file has no IfcProject")
    return model


def _json_value(value: Any) -> Any:
    """Property values as JSON can hold them (IfcOpenShell gives primitives, tuples, and now and then an entity)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        if "wrappedValue" in value:  # a measure or label as get_info gives it: {"type": ..., "wrappedValue": ...}
            return _json_value(value["wrappedValue"])
        return {str(k): _json_value(v) for k, v in value.items() if k not in ("id", "type")}
    if isinstance(value, ifcopenshell.entity_instance):
        return str(value)
    return str(value)


def _property_value(prop: dict[str, Any]) -> Any:
    """The value of one property as `get_info_cpp` gives it (recursive dicts)."""
    kind = prop.get("type")
    if kind == "IfcPropertySingleValue":
        return _json_value(prop.get("NominalValue"))
    if kind == "IfcPropertyEnumeratedValue":
        return _json_value(prop.get("EnumerationValues"))
    if kind == "IfcPropertyListValue":
        return _json_value(prop.get("ListValues"))
    if kind == "IfcPropertyBoundedValue":
        return {key: _json_value(prop.get(attr)) for key, attr in
                (("upper", "UpperBoundValue"), ("lower", "LowerBoundValue"), ("set_point", "SetPointValue"))
                if prop.get(attr) is not None}
    if kind == "IfcComplexProperty":
        return {p.get("Name") or "": _property_value(p) for p in prop.get("HasProperties") or ()}
    # Tables, references and quantities: whatever attribute holds the value.
    return {k: _json_value(v) for k, v in prop.items() if k not in ("Name", "Description", "type", "Unit")}


def _read_definition(definition: ifcopenshell.entity_instance) -> tuple[str, dict[str, Any]]:
    """(name, {property: value}) of a property set or quantity set; ("", {}) for anything else."""
    if definition.is_a() == "IfcPropertySet":
        # One C++ call reads the set with its properties and values (the per-attribute Python path is 5-10x slower).
        info = ifcopenshell_wrapper.get_info_cpp(definition, True, False)
        values: dict[str, Any] = {}
        for prop in info["HasProperties"] or ():
            nominal = prop.get("NominalValue", _MISSING)
            if nominal is None:
                value = None
            elif nominal is not _MISSING and type(value := nominal["wrappedValue"]) in (str, bool, int):
                pass  # a single value of the commonest kind
            else:
                value = _property_value(prop)
            values[prop["Name"] or ""] = value
        return info["Name"] or f"#{definition.id()}", values
    if not definition.is_a("IfcPropertySetDefinition"):
        return "", {}
    values = ifcopenshell.util.element.get_property_definition(definition)
    return definition.Name or f"#{definition.id()}", _json_value(values or {})


_MISSING = object()


def _predefined_type(value: str | None, object_type: str | None, type_value: str | None,
                     element_type: str | None) -> str | None:
    """The occurrence's PredefinedType, else its type's (USERDEFINED: the user's ObjectType / ElementType)."""
    if value == "USERDEFINED":
        return object_type or value
    if value and value != "NOTDEFINED":
        return value
    if type_value == "USERDEFINED":
        return element_type or type_value
    return type_value or value


def snapshot_from_ifc(model: ifcopenshell.file, on_progress: ProgressCallback | None = None) -> GraphSnapshot:
    """The graph an IFC model describes (see the module's docstring). Does no I/O."""
    with gc_paused():
        return _SnapshotBuilder(model, on_progress).build()


_Entity = ifcopenshell.entity_instance


class _SnapshotBuilder:
    def __init__(self, model: ifcopenshell.file, on_progress: ProgressCallback | None) -> None:
        self.model = model
        self.schema = ifcopenshell_wrapper.schema_by_name(model.schema_identifier)
        self.progress = on_progress or (lambda _phase, _fraction: None)
        self.snapshot = GraphSnapshot(schema=model.schema)
        self.kinds: dict[int, NodeType] = {}  # entity id -> kind, for every entity that becomes a node
        self.gids: dict[int, str] = {}  # entity id -> GlobalId of that node
        self.seen_gids: set[str] = set()
        self.parent: dict[int, _Entity] = {}  # aggregated or nested part -> whole
        self.type_of: dict[int, _Entity] = {}  # occurrence -> its type object
        self.psets: dict[int, dict[str, dict[str, Any]]] = {}  # entity id -> its own property sets
        self.definitions: dict[int, tuple[str, dict[str, Any]]] = {}  # property set id -> its name and values
        self.indexes: dict[str, dict[str, int]] = {}  # IFC class -> attribute name -> position
        self.node_positions: dict[str, tuple[int, ...]] = {}  # IFC class -> positions of _NODE_ATTRIBUTES

    # Attribute access by position: `entity.Name` costs 5-7x `entity.get_argument(i)`, and asking for an attribute
    # a class lacks goes through IfcOpenShell's derived-attribute machinery (an import per call).

    def positions(self, ifc_class: str) -> dict[str, int]:
        """Attribute name -> position in instances of `ifc_class` (inherited attributes keep their position in
        subclasses, so a relationship class's positions serve its subtypes too)."""
        found = self.indexes.get(ifc_class)
        if found is None:
            entity = self.schema.declaration_by_name(ifc_class).as_entity()
            if entity is None:  # pragma: no cover - instances are always of entity types
                raise IfcError(f"{ifc_class} is not an entity of {self.schema.name()}")
            found = {a.name(): i for i, a in enumerate(entity.all_attributes())}
            self.indexes[ifc_class] = found
        return found

    def attr(self, entity: _Entity, name: str) -> Any:
        position = self.positions(entity.is_a()).get(name)
        return None if position is None else entity.get_argument(position)

    def attrs(self, entity: _Entity, *names: str) -> list[Any]:
        positions = self.positions(entity.is_a())
        return [None if (p := positions.get(n)) is None else entity.get_argument(p) for n in names]

    def node_attributes(self, entity: _Entity, ifc_class: str) -> list[Any]:
        """`attrs(entity, *_NODE_ATTRIBUTES)` for an entity of `ifc_class`, with the positions kept per class: this
        runs once per node, and the name lookups were most of its cost."""
        positions = self.node_positions.get(ifc_class)
        if positions is None:
            by_name = self.positions(ifc_class)
            positions = self.node_positions[ifc_class] = tuple(by_name.get(n, -1) for n in _NODE_ATTRIBUTES)
        get = entity.get_argument
        return [None if p < 0 else get(p) for p in positions]

    def relationships(self, rel_class: str, *names: str) -> Iterator[list[Any]]:
        """The given attributes of every relationship of a class (subtypes included)."""
        positions = self.positions(rel_class)
        wanted = [positions[n] for n in names]
        for rel in self.model.by_type(rel_class):
            yield [rel.get_argument(p) for p in wanted]

    def warn(self, message: str) -> None:
        self.snapshot.warnings.append(message)

    def _label(self, entity: _Entity) -> str:
        global_id, name = self.attrs(entity, "GlobalId", "Name")
        return f"{entity.is_a()} {global_id}" + (f" ({name!r})" if name else "")

    def build(self) -> GraphSnapshot:
        self.progress("relationships", 0.0)
        self._read_relationships()
        self.progress("spatial", 0.0)
        spatial = self._spatial_nodes()
        self.progress("elements", 0.0)
        elements = self._element_nodes()
        self.progress("zones", 0.0)
        zones = self._zone_nodes()
        self.progress("properties", 0.0)
        total = len(spatial) + len(elements) + len(zones)
        for done, entity in enumerate([*spatial, *elements, *zones], 1):
            self._add_node(entity)
            if done % 5000 == 0:
                self.progress("properties", done / total)
        self.progress("properties", 1.0)
        return self.snapshot

    # One pass over each relationship type -----------------------------------------------------------------------

    def _read_relationships(self) -> None:
        for rel_type in ("IfcRelAggregates", "IfcRelNests"):
            for whole, parts in self.relationships(rel_type, "RelatingObject", "RelatedObjects"):
                for part in parts or ():
                    self.parent.setdefault(part.id(), whole)
        for related, relating in self.relationships("IfcRelDefinesByType", "RelatedObjects", "RelatingType"):
            for occurrence in related or ():
                self.type_of[occurrence.id()] = relating
        for related, definitions in self.relationships("IfcRelDefinesByProperties", "RelatedObjects",
                                                       "RelatingPropertyDefinition"):
            # IFC4 allows a set of definitions (IfcPropertySetDefinitionSet) here.
            if isinstance(definitions, ifcopenshell.entity_instance):
                definitions = (definitions,)
            # Inlined (one relationship per property set is the common case, 25,000 times in a large model): the
            # sets merge by name in file order, as _property_sets merges them.
            for definition in definitions or ():
                key = definition.id()
                entry = self.definitions.get(key)
                if entry is None:
                    entry = self.definitions[key] = _read_definition(definition)
                name, values = entry
                if not name:
                    continue
                for entity in related or ():
                    entity_id = entity.id()
                    own = self.psets.get(entity_id)
                    if own is None:
                        self.psets[entity_id] = {name: values}
                    else:
                        own[name] = {**own[name], **values} if name in own else values

    def _property_sets(self, definitions: Iterable[_Entity]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for definition in definitions:
            key = definition.id()
            entry = self.definitions.get(key)
            if entry is None:
                entry = self.definitions[key] = _read_definition(definition)
            name, values = entry
            if name:
                found[name] = {**found[name], **values} if name in found else values
        return found

    def _register(self, entity: _Entity, kind: NodeType) -> bool:
        gid = entity.get_argument(0)  # every node is an IfcRoot, whose first attribute is the GlobalId
        if not gid:
            self.warn(f"{entity.is_a()} #{entity.id()} has no GlobalId: skipped")
            return False
        if gid in self.seen_gids:
            self.warn(f"{self._label(entity)}: GlobalId used twice in the file, the later one skipped")
            return False
        self.seen_gids.add(gid)
        entity_id = entity.id()
        self.kinds[entity_id] = kind
        self.gids[entity_id] = gid
        return True

    # Spatial tree -----------------------------------------------------------------------------------------------

    def _spatial_kind(self, entity: _Entity) -> NodeType | None:
        for ifc_class, kind in SPATIAL_CLASSES.items():
            if entity.is_a(ifc_class):
                return kind
        return None

    def _spatial_nodes(self) -> list[_Entity]:
        nodes: list[_Entity] = []
        for project in self.model.by_type("IfcProject"):
            if self._register(project, NodeType.project):
                nodes.append(project)
        element_class = "IfcSpatialElement" if self.model.schema != "IFC2X3" else "IfcSpatialStructureElement"
        for entity in self.model.by_type(element_class):
            kind = self._spatial_kind(entity)
            if kind is None:
                self.warn(f"{self._label(entity)}: spatial element of a kind the twin does not keep, skipped "
                          f"(what it holds hangs from its nearest known ancestor)")
                continue
            if self._register(entity, kind):
                nodes.append(entity)
        for entity in nodes:
            if self.kinds[entity.id()] is NodeType.project:
                continue
            parent = self._spatial_parent(entity)
            if parent is None:
                self.warn(f"{self._label(entity)} is not part of the project's spatial tree: kept as a root")
            else:
                self.snapshot.edges.append(EdgeSpec(EdgeType.contains, parent, self.gids[entity.id()]))
        return nodes

    def _spatial_parent(self, entity: _Entity) -> str | None:
        """The GlobalId of the nearest ancestor of a higher level than `entity` (Site above Building, ...)."""
        level = SPATIAL_ORDER.index(self.kinds[entity.id()])
        current = self.parent.get(entity.id())
        hops = 0
        while current is not None and hops < _MAX_DEPTH:  # a cycle in a broken file must not hang the import
            kind = self.kinds.get(current.id())
            if kind is not None and kind in SPATIAL_ORDER and SPATIAL_ORDER.index(kind) < level:
                return self.gids[current.id()]
            current = self.parent.get(current.id())
            hops += 1
        return None

    def _known_structure(self, structure: _Entity) -> str | None:
        """A spatial structure in the graph: itself, else its nearest ancestor that is."""
        current: _Entity | None = structure
        hops = 0
        while current is not None and hops < _MAX_DEPTH:
            if self.kinds.get(current.id()) in SPATIAL_ORDER:
                return self.gids[current.id()]
            current = self.parent.get(current.id())
            hops += 1
        return None

    # Elements ---------------------------------------------------------------------------------------------------

    def _element_nodes(self) -> list[_Entity]:
        containers: dict[int, _Entity] = {}
        for elements, structure in self.relationships("IfcRelContainedInSpatialStructure", "RelatedElements",
                                                      "RelatingStructure"):
            for element in elements or ():
                containers.setdefault(element.id(), structure)
        references: dict[int, list[_Entity]] = {}
        for elements, structure in self.relationships("IfcRelReferencedInSpatialStructure", "RelatedElements",
                                                      "RelatingStructure"):
            for element in elements or ():
                references.setdefault(element.id(), []).append(structure)

        nodes = []
        located_in, references_edge = EdgeType.located_in, EdgeType.references
        edges = self.snapshot.edges
        targets: dict[int, str | None] = {}  # container id -> its node in the graph (a few thousand containers)
        for element in self.model.by_type(ELEMENT_CLASS):
            element_id = element.id()
            container = containers.get(element_id)
            if container is None:  # not contained itself: maybe the assembly it is part of is
                container = self._container(element, containers)
            if container is None:
                self.warn(f"{self._label(element)} is in no spatial container: skipped")
                continue
            container_id = container.id()
            target = targets[container_id] if container_id in targets else targets.setdefault(
                container_id, self._known_structure(container))
            if target is None:
                self.warn(f"{self._label(element)}: its container {self._label(container)} is not in the graph, "
                          f"skipped")
                continue
            if not self._register(element, NodeType.element):
                continue
            nodes.append(element)
            gid = self.gids[element_id]
            edges.append(EdgeSpec(located_in, gid, target))
            for structure in references.get(element_id, ()):
                referenced = self._known_structure(structure)
                if referenced is not None and referenced != target:
                    edges.append(EdgeSpec(references_edge, gid, referenced))
        return nodes

    def _container(self, element: _Entity, containers: dict[int, _Entity]) -> _Entity | None:
        """The element's spatial container, or that of the assembly it is part of."""
        current: _Entity | None = element
        hops = 0
        while current is not None and hops < _MAX_DEPTH:
            container = containers.get(current.id())
            if container is not None:
                return container
            current = self.parent.get(current.id())
            if current is not None and self._spatial_kind(current) is not None:
                return current  # a part of a spatial element (rare, but legal)
            hops += 1
        return None

    # Zones ------------------------------------------------------------------------------------------------------

    def _zone_nodes(self) -> list[_Entity]:
        nodes = [zone for zone in self.model.by_type("IfcZone") if self._register(zone, NodeType.zone)]
        for members, group in self.relationships("IfcRelAssignsToGroup", "RelatedObjects", "RelatingGroup"):
            if group is None or self.kinds.get(group.id()) is not NodeType.zone:
                continue
            for member in members or ():
                if self.kinds.get(member.id()) in (NodeType.space, NodeType.zone):
                    self.snapshot.edges.append(EdgeSpec(EdgeType.groups, self.gids[group.id()],
                                                        self.gids[member.id()]))
                else:
                    self.warn(f"zone {self._label(group)}: member {self._label(member)} is not a space or zone in "
                              f"the graph, not linked")
        return nodes

    # Nodes ------------------------------------------------------------------------------------------------------

    def _add_node(self, entity: _Entity) -> None:
        key = entity.id()
        kind = self.kinds[key]
        ifc_class = entity.is_a()
        name, object_type, predefined, long_name, description, tag = self.node_attributes(entity, ifc_class)
        properties: dict[str, Any] = {}
        if long_name:
            properties["LongName"] = long_name
        if description:
            properties["Description"] = description
        if tag:
            properties["Tag"] = tag
        if object_type:
            properties["ObjectType"] = object_type
        type_object = self.type_of.get(key)
        type_value = element_type = None
        if type_object is not None:
            type_name, type_value, element_type, type_sets = self.attrs(
                type_object, "Name", "PredefinedType", "ElementType", "HasPropertySets")
            properties["TypeClass"] = type_object.is_a()
            if type_name:
                properties["TypeName"] = type_name
            for set_name, values in self._property_sets(type_sets or ()).items():
                properties[set_name] = dict(values)
        predefined_type = _predefined_type(predefined, object_type, type_value, element_type)
        if predefined_type:
            properties["PredefinedType"] = predefined_type
        if kind is NodeType.element:
            properties["ElementKind"] = (ELEMENT_KINDS.get(ifc_class)
                                         or (ELEMENT_KINDS.get(type_object.is_a()) if type_object else None)
                                         or "other")
        for set_name, values in self.psets.get(key, {}).items():  # the occurrence's own override its type's
            inherited = properties.get(set_name)
            properties[set_name] = {**inherited, **values} if isinstance(inherited, dict) else dict(values)
        self.snapshot.nodes.append(NodeSpec(global_id=self.gids[key], kind=kind, name=name or "", ifc_class=ifc_class,
                                            properties=properties))


_NODE_ATTRIBUTES = ("Name", "ObjectType", "PredefinedType", "LongName", "Description", "Tag")
_MAX_DEPTH = 1000  # longest chain of parents followed (a cycle in a broken file must not hang the import)
