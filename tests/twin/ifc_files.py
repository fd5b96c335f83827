"""Real IFC files for the importer's tests, written with `ifcopenshell.api` (IFC2X3, IFC4 and IFC4X3).

The campus: project "Campus" with two sites.
    North > Building A > A1 (spaces A1-01, A1-02), A2 (A2-01)
          > Building B > B1 (B1-01)
    South > Building C > C1 (C1-01)
Devices: T-101 (temperature sensor) in A1-01, with its own Pset_SensorTypeCommon; V-101 (actuator) in A1-02;
C-201 (controller) in A2-01, also referenced by A1-01; AL-1 (alarm) in B1-01; CO2-1 (CO2 sensor) in C1-01;
LOOSE (a sensor in no container). Zone HVAC-1 groups A1-01 and A1-02. A1-01 has Pset_SpaceCommon.
In IFC2X3 the devices are IfcDistributionControlElements typed by IfcSensorType, IfcActuatorType, ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.group
import ifcopenshell.api.owner
import ifcopenshell.api.owner.settings
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.type
import ifcopenshell.api.unit

SPACES = {"A1-01": "A1", "A1-02": "A1", "A2-01": "A2", "B1-01": "B1", "C1-01": "C1"}
STOREYS = {"A1": "A", "A2": "A", "B1": "B", "C1": "C"}
BUILDINGS = {"A": "North", "B": "North", "C": "South"}
# name -> (IFC4 class, predefined type, space it is in)
DEVICES = {
    "T-101": ("IfcSensor", "TEMPERATURESENSOR", "A1-01"),
    "V-101": ("IfcActuator", "ELECTRICACTUATOR", "A1-02"),
    "C-201": ("IfcController", "PROGRAMMABLE", "A2-01"),
    "AL-1": ("IfcAlarm", "SIREN", "B1-01"),
    "CO2-1": ("IfcSensor", "CO2SENSOR", "C1-01"),
}

# IFC2X3 demands an owner history on every rooted entity: use the file's own person and application.
ifcopenshell.api.owner.settings.get_user = lambda f: (f.by_type("IfcPersonAndOrganization") or [None])[0]
ifcopenshell.api.owner.settings.get_application = lambda f: (f.by_type("IfcApplication") or [None])[0]


def _create(model: ifcopenshell.file, ifc_class: str, name: str, **kwargs: Any) -> ifcopenshell.entity_instance:
    return ifcopenshell.api.root.create_entity(model, ifc_class=ifc_class, name=name, **kwargs)


def build_campus(version: str = "IFC4") -> ifcopenshell.file:
    model = ifcopenshell.api.project.create_file(version=version)
    if version == "IFC2X3":
        person = ifcopenshell.api.owner.add_person(model)
        organisation = ifcopenshell.api.owner.add_organisation(model)
        ifcopenshell.api.owner.add_person_and_organisation(model, person=person, organisation=organisation)
        ifcopenshell.api.owner.add_application(model)
    project = _create(model, "IfcProject", "Campus")
    ifcopenshell.api.unit.assign_unit(model, length={"is_metric": True, "raw": "METERS"})
    ifcopenshell.api.context.add_context(model, context_type="Model")
    made: dict[str, ifcopenshell.entity_instance] = {}

    def place(child: ifcopenshell.entity_instance, parent: ifcopenshell.entity_instance) -> None:
        ifcopenshell.api.aggregate.assign_object(model, products=[child], relating_object=parent)

    for site in ("North", "South"):
        made[site] = _create(model, "IfcSite", site)
        place(made[site], project)
    for building, site in BUILDINGS.items():
        made[building] = _create(model, "IfcBuilding", building)
        place(made[building], made[site])
    for storey, building in STOREYS.items():
        made[storey] = _create(model, "IfcBuildingStorey", storey)
        place(made[storey], made[building])
    for space, storey in SPACES.items():
        made[space] = _create(model, "IfcSpace", space)
        place(made[space], made[storey])
    made["A1-01"].LongName = "Meeting room"
    pset = ifcopenshell.api.pset.add_pset(model, product=made["A1-01"], name="Pset_SpaceCommon")
    ifcopenshell.api.pset.edit_pset(model, pset=pset, properties={"Reference": "R-101", "IsExternal": False,
                                                                    "NetPlannedArea": 24.5})

    for name, (ifc_class, predefined, space) in DEVICES.items():
        device = _device(model, version, ifc_class, name, predefined)
        ifcopenshell.api.spatial.assign_container(model, products=[device], relating_structure=made[space])
        made[name] = device
    pset = ifcopenshell.api.pset.add_pset(model, product=made["T-101"], name="Pset_SensorTypeCommon")
    ifcopenshell.api.pset.edit_pset(model, pset=pset, properties={"Reference": "TS-1"})
    ifcopenshell.api.spatial.reference_structure(model, products=[made["C-201"]], relating_structure=made["A1-01"])
    _device(model, version, "IfcSensor", "LOOSE", "SMOKESENSOR")

    zone = _create(model, "IfcZone", "HVAC-1")
    ifcopenshell.api.group.assign_group(model, products=[made["A1-01"], made["A1-02"]], group=zone)
    return model


def _device(model: ifcopenshell.file, version: str, ifc_class: str, name: str, predefined: str
            ) -> ifcopenshell.entity_instance:
    if version != "IFC2X3":
        return _create(model, ifc_class, name, predefined_type=predefined)
    # IFC2X3 has no IfcSensor & co: a distribution control element typed by IfcSensorType & co.
    device = _create(model, "IfcDistributionControlElement", name)
    type_name = f"{ifc_class}Type"
    device_type = next((t for t in model.by_type(type_name) if t.PredefinedType == predefined), None)
    if device_type is None:
        device_type = _create(model, type_name, f"{predefined.title()} type", predefined_type=predefined)
    ifcopenshell.api.type.assign_type(model, related_objects=[device], relating_type=device_type)
    return device


def write_campus(path: Path, version: str = "IFC4") -> Path:
    build_campus(version).write(str(path))
    return path


def by_name(model: ifcopenshell.file, name: str) -> ifcopenshell.entity_instance:
    found = [e for e in model.by_type("IfcRoot") if getattr(e, "Name", None) == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def changed_campus(original: Path, path: Path) -> Path:
    """The campus file edited: space A1-02 renamed to "A1-02 Lab", sensor CO2-1 and space B1-01 (with its alarm
    AL-1) removed. GlobalIds of everything else unchanged."""
    model = ifcopenshell.open(str(original))
    by_name(model, "A1-02").Name = "A1-02 Lab"
    for name in ("CO2-1", "AL-1", "B1-01"):
        ifcopenshell.api.root.remove_product(model, product=by_name(model, name))
    model.write(str(path))
    return path
