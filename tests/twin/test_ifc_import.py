"""The pure IFC importer on real files written with ifcopenshell.api: IFC2X3, IFC4 and IFC4X3, node by node."""

from __future__ import annotations

from pathlib import Path

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.project
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.guid
import pytest

from iotistic.twin.graph import EdgeSpec, EdgeType, GraphSnapshot, NodeSpec, NodeType
from iotistic.twin.ifc_import import IfcError, read_ifc, snapshot_from_ifc
from tests.twin.ifc_files import BUILDINGS, DEVICES, SPACES, STOREYS, by_name, changed_campus, write_campus

VERSIONS = ["IFC2X3", "IFC4", "IFC4X3"]


def _by_name(snapshot: GraphSnapshot) -> dict[str, NodeSpec]:
    nodes = {n.name: n for n in snapshot.nodes}
    assert len(nodes) == len(snapshot.nodes), "names are unique in the campus"
    return nodes


def _named_edges(snapshot: GraphSnapshot) -> set[tuple[str, str, str]]:
    names = {n.global_id: n.name for n in snapshot.nodes}
    return {(e.kind.value, names[e.source], names[e.target]) for e in snapshot.edges}


@pytest.mark.parametrize("version", VERSIONS)
def test_campus_graph_node_by_node(tmp_path: Path, version: str) -> None:
    path = write_campus(tmp_path / f"campus-{version}.ifc", version)
    model = read_ifc(path)
    snapshot = snapshot_from_ifc(model)

    assert snapshot.schema == version
    assert snapshot.counts() == {"Project": 1, "Site": 2, "Building": 3, "Storey": 4, "Space": 5, "Element": 5,
                                 "Zone": 1}
    nodes = _by_name(snapshot)
    # Every node keeps the file's GlobalId and class.
    for node in snapshot.nodes:
        entity = by_name(model, node.name)
        assert (node.global_id, node.ifc_class) == (entity.GlobalId, entity.is_a())
    assert [nodes[n].kind for n in ("Campus", "North", "A", "A1", "A1-01", "HVAC-1", "T-101")] == [
        NodeType.project, NodeType.site, NodeType.building, NodeType.storey, NodeType.space, NodeType.zone,
        NodeType.element]

    expected = {("CONTAINS", "Campus", "North"), ("CONTAINS", "Campus", "South")}
    expected |= {("CONTAINS", site, building) for building, site in BUILDINGS.items()}
    expected |= {("CONTAINS", building, storey) for storey, building in STOREYS.items()}
    expected |= {("CONTAINS", storey, space) for space, storey in SPACES.items()}
    expected |= {("LOCATED_IN", name, space) for name, (_, _, space) in DEVICES.items()}
    expected |= {("REFERENCES", "C-201", "A1-01"), ("GROUPS", "HVAC-1", "A1-01"), ("GROUPS", "HVAC-1", "A1-02")}
    assert _named_edges(snapshot) == expected
    assert len(snapshot.edges) == len(expected)  # no edge twice

    # Properties: property sets, attributes, predefined types (IFC2X3: from the type object).
    assert nodes["A1-01"].properties == {
        "LongName": "Meeting room",
        "Pset_SpaceCommon": {"Reference": "R-101", "IsExternal": False, "NetPlannedArea": 24.5},
    }
    sensor = nodes["T-101"].properties
    assert sensor["PredefinedType"] == "TEMPERATURESENSOR"
    assert sensor["ElementKind"] == "sensor"
    assert sensor["Pset_SensorTypeCommon"] == {"Reference": "TS-1"}
    for name, (ifc_class, predefined, _) in DEVICES.items():
        node = nodes[name]
        assert node.properties["PredefinedType"] == predefined
        assert node.properties["ElementKind"] == ifc_class.removeprefix("Ifc").lower()
        if version == "IFC2X3":
            assert node.ifc_class == "IfcDistributionControlElement"
            assert node.properties["TypeClass"] == f"{ifc_class}Type"
        else:
            assert node.ifc_class == ifc_class
            assert "TypeClass" not in node.properties

    # The sensor in no container is left out, and said so.
    assert "LOOSE" not in nodes
    assert len(snapshot.warnings) == 1
    assert "LOOSE" in snapshot.warnings[0] and "no spatial container" in snapshot.warnings[0]


def test_schema_strings(tmp_path: Path) -> None:
    """IFC4X3 files say IFC4X3_ADD2 in their header; the snapshot names the schema family."""
    path = write_campus(tmp_path / "campus.ifc", "IFC4X3")
    model = read_ifc(path)
    assert (model.schema, model.schema_identifier) == ("IFC4X3", "IFC4X3_ADD2")
    assert snapshot_from_ifc(model).schema == "IFC4X3"


def test_progress_is_reported_in_phases(tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    snapshot_from_ifc(read_ifc(write_campus(tmp_path / "campus.ifc")), on_progress=lambda p, f: seen.append((p, f)))
    phases = [phase for phase, _ in seen]
    assert phases[0] == "relationships" and seen[-1] == ("properties", 1.0)
    assert {"spatial", "elements", "zones"} <= set(phases)
    assert all(0.0 <= fraction <= 1.0 for _, fraction in seen)


def test_changed_file_keeps_global_ids(tmp_path: Path) -> None:
    first = snapshot_from_ifc(read_ifc(write_campus(tmp_path / "v1.ifc")))
    second = snapshot_from_ifc(read_ifc(changed_campus(tmp_path / "v1.ifc", tmp_path / "v2.ifc")))
    before, after = {n.global_id: n for n in first.nodes}, {n.global_id: n for n in second.nodes}
    gone = {before[g].name for g in before.keys() - after.keys()}
    assert gone == {"CO2-1", "AL-1", "B1-01"}
    assert after.keys() <= before.keys()
    renamed = [g for g in after if after[g].name != before[g].name]
    assert [(before[g].name, after[g].name) for g in renamed] == [("A1-02", "A1-02 Lab")]


def test_unknown_spatial_elements_and_nesting(tmp_path: Path) -> None:
    """An IFC4X3 facility part between a building and its storey is skipped (warning), the storey hangs from the
    building; a space inside a space hangs from the storey; an element in the skipped part goes to the building."""
    model = ifcopenshell.api.project.create_file(version="IFC4X3")
    create = ifcopenshell.api.root.create_entity
    project = create(model, ifc_class="IfcProject", name="P")
    site = create(model, ifc_class="IfcSite", name="S")
    building = create(model, ifc_class="IfcBuilding", name="B")
    part = create(model, ifc_class="IfcFacilityPart", name="Wing")
    storey = create(model, ifc_class="IfcBuildingStorey", name="L1")
    room = create(model, ifc_class="IfcSpace", name="R1")
    alcove = create(model, ifc_class="IfcSpace", name="R1a")
    for child, parent in ((site, project), (building, site), (part, building), (storey, part), (room, storey),
                          (alcove, room)):
        ifcopenshell.api.aggregate.assign_object(model, products=[child], relating_object=parent)
    sensor = create(model, ifc_class="IfcSensor", name="T", predefined_type="TEMPERATURESENSOR")
    ifcopenshell.api.spatial.assign_container(model, products=[sensor], relating_structure=part)
    path = tmp_path / "nested.ifc"
    model.write(str(path))

    snapshot = snapshot_from_ifc(read_ifc(path))
    assert _named_edges(snapshot) == {("CONTAINS", "P", "S"), ("CONTAINS", "S", "B"), ("CONTAINS", "B", "L1"),
                                      ("CONTAINS", "L1", "R1"), ("CONTAINS", "L1", "R1a"),
                                      ("LOCATED_IN", "T", "B")}
    assert "Wing" not in _by_name(snapshot)
    assert len(snapshot.warnings) == 1 and "IfcFacilityPart" in snapshot.warnings[0]


def test_duplicate_global_id_keeps_the_first(tmp_path: Path) -> None:
    model = ifcopenshell.open(str(write_campus(tmp_path / "campus.ifc")))
    by_name(model, "A2-01").GlobalId = by_name(model, "A1-02").GlobalId
    path = tmp_path / "duplicate.ifc"
    model.write(str(path))
    snapshot = snapshot_from_ifc(read_ifc(path))
    assert [n.name for n in snapshot.nodes if n.global_id == by_name(model, "A1-02").GlobalId] == ["A1-02"]
    assert any("GlobalId used twice" in w and "A2-01" in w for w in snapshot.warnings)
    # No edge points at the skipped node's (shared) GlobalId from the wrong place, and every edge end is a node.
    ids = {n.global_id for n in snapshot.nodes}
    assert all(e.source in ids and e.target in ids for e in snapshot.edges)
    assert EdgeSpec(EdgeType.contains, by_name(model, "A2").GlobalId, by_name(model, "A1-02").GlobalId) \
        not in snapshot.edges


# Files that are not IFC, or not readable -----------------------------------------------------------------------

def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_files_raise_a_clear_ifc_error(tmp_path: Path) -> None:
    good = write_campus(tmp_path / "good.ifc").read_bytes()
    cases = {
        "empty": (b"", "the file is empty"),
        "text": (b"hello, I am not a building\n", "not an IFC file"),
        "zip": (b"PK\x03\x04" + bytes(200), "not an IFC file"),
        "truncated": (good[: len(good) // 2], "truncated or corrupt"),
        "other schema": (good.replace(b"FILE_SCHEMA(('IFC4'))", b"FILE_SCHEMA(('IFC4X1'))"), "unsupported IFC schema"),
        "no header": (b"ISO-10303-21;\nDATA;\n#1=IFCWALL();\nENDSEC;\nEND-ISO-10303-21;\n", "corrupt"),
    }
    for label, (data, message) in cases.items():
        with pytest.raises(IfcError) as caught:
            read_ifc(_write(tmp_path / f"{label}.ifc", data))
        assert message in str(caught.value), label
    with pytest.raises(IfcError, match="no such file"):
        read_ifc(tmp_path / "missing.ifc")
    assert issubclass(IfcError, ValueError)


def test_a_file_without_a_project_is_refused(tmp_path: Path) -> None:
    model = ifcopenshell.file(schema="IFC4")
    model.create_entity("IfcSite", GlobalId=ifcopenshell.guid.new(), Name="Orphan")
    path = tmp_path / "no-project.ifc"
    model.write(str(path))
    with pytest.raises(IfcError, match="no IfcProject"):
        read_ifc(path)
