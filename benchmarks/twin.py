"""Benchmark: the digital twin's IFC import.

    .venv/bin/python benchmarks/twin.py                 # PostgreSQL on 127.0.0.1:5432 (a throwaway database)
    .venv/bin/python benchmarks/twin.py --sqlite        # SQLite in a temporary directory
    .venv/bin/python benchmarks/twin.py --spaces 500 --sensors 2000

(a) Import of a generated IFC4 model (default 5,000 spaces, 20,000 sensors; 2 buildings of 10 storeys, each space
    with Pset_SpaceCommon, each sensor with its own Pset_SensorTypeCommon): the time IfcOpenShell alone takes to
    open the file, next to the whole import (open + snapshot + apply to the database in one transaction, as the
    import job does), timed separately per phase. Both are medians of --runs runs (each import into a fresh
    database). Target: the whole import within 3x of the bare open. Generating the file is not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ifcopenshell
import ifcopenshell.guid
from common import fresh_database  # benchmarks/common.py

from iotistic.twin.ifc_import import read_ifc, snapshot_from_ifc

SENSOR_TYPES = ("TEMPERATURESENSOR", "HUMIDITYSENSOR", "CO2SENSOR", "LIGHTSENSOR", "MOVEMENTSENSOR")


def generate_model(path: Path, spaces: int, sensors: int, buildings: int = 2, storeys_per_building: int = 10) -> None:
    """Write an IFC4 file with `spaces` spaces spread over the storeys and `sensors` sensors spread over the spaces.
    Built with `create_entity` directly (ifcopenshell.api would take minutes at this size)."""
    model = ifcopenshell.file(schema="IFC4")

    def guid() -> str:
        return str(ifcopenshell.guid.new())

    def aggregate(parent: ifcopenshell.entity_instance, children: list[ifcopenshell.entity_instance]) -> None:
        model.create_entity("IfcRelAggregates", GlobalId=guid(), RelatingObject=parent, RelatedObjects=children)

    def pset(target: ifcopenshell.entity_instance, name: str, values: dict[str, ifcopenshell.entity_instance]) -> None:
        props = [model.create_entity("IfcPropertySingleValue", Name=key, NominalValue=value)
                 for key, value in values.items()]
        definition = model.create_entity("IfcPropertySet", GlobalId=guid(), Name=name, HasProperties=props)
        model.create_entity("IfcRelDefinesByProperties", GlobalId=guid(), RelatedObjects=[target],
                            RelatingPropertyDefinition=definition)

    project = model.create_entity("IfcProject", GlobalId=guid(), Name="Benchmark campus")
    site = model.create_entity("IfcSite", GlobalId=guid(), Name="Campus")
    aggregate(project, [site])
    storeys = []
    building_list = []
    for b in range(buildings):
        building = model.create_entity("IfcBuilding", GlobalId=guid(), Name=f"Building {chr(65 + b)}")
        building_list.append(building)
        levels = [model.create_entity("IfcBuildingStorey", GlobalId=guid(), Name=f"Level {s}", Elevation=3.0 * s)
                  for s in range(storeys_per_building)]
        aggregate(building, levels)
        storeys += levels
    aggregate(site, building_list)

    space_list = []
    per_storey: dict[int, list[ifcopenshell.entity_instance]] = {}
    for i in range(spaces):
        storey_index = i % len(storeys)
        space = model.create_entity("IfcSpace", GlobalId=guid(), Name=f"{storey_index:02d}-{i:05d}",
                                    LongName=f"Room {i}", PredefinedType="INTERNAL")
        pset(space, "Pset_SpaceCommon", {"Reference": model.create_entity("IfcIdentifier", f"R{i}"),
                                         "IsExternal": model.create_entity("IfcBoolean", False)})
        per_storey.setdefault(storey_index, []).append(space)
        space_list.append(space)
    for storey_index, children in per_storey.items():
        aggregate(storeys[storey_index], children)

    per_space: dict[int, list[ifcopenshell.entity_instance]] = {}
    for i in range(sensors):
        sensor = model.create_entity("IfcSensor", GlobalId=guid(), Name=f"S-{i:06d}",
                                     PredefinedType=SENSOR_TYPES[i % len(SENSOR_TYPES)])
        pset(sensor, "Pset_SensorTypeCommon", {"Reference": model.create_entity("IfcIdentifier", f"S{i}")})
        per_space.setdefault(i % spaces, []).append(sensor)
    for space_index, elements in per_space.items():
        model.create_entity("IfcRelContainedInSpatialStructure", GlobalId=guid(), RelatedElements=elements,
                            RelatingStructure=space_list[space_index])
    model.write(str(path))


def time_bare_open(path: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        model = ifcopenshell.open(str(path))
        times.append(time.perf_counter() - started)
        del model
    return times


async def time_import(path: Path, database_url: str) -> dict[str, float]:
    from iotistic.cloud.migrate import upgrade_async
    from iotistic.core.db import make_engine, make_sessionmaker
    from iotistic.twin.store import SqlGraphStore

    await upgrade_async(database_url)
    engine = make_engine(database_url)
    try:
        times: dict[str, float] = {}
        started = time.perf_counter()
        model = read_ifc(path)
        times["open"] = time.perf_counter() - started
        mark = time.perf_counter()
        snapshot = snapshot_from_ifc(model)
        times["snapshot"] = time.perf_counter() - mark
        mark = time.perf_counter()
        async with make_sessionmaker(engine)() as session:
            report = await SqlGraphStore(session).apply_snapshot(snapshot, source=path.name)
            await session.commit()
        times["apply"] = time.perf_counter() - mark
        times["total"] = time.perf_counter() - started
        times["nodes"] = float(len(snapshot.nodes))
        times["edges"] = float(len(snapshot.edges))
        del report
        return times
    finally:
        await engine.dispose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", type=int, default=5000)
    parser.add_argument("--sensors", type=int, default=20000)
    parser.add_argument("--sqlite", action="store_true", help="apply to SQLite instead of PostgreSQL")
    parser.add_argument("--postgres", default=os.environ.get("TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--runs", type=int, default=5, help="bare opens and imports to time (medians shown)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = workdir / "campus.ifc"
        started = time.perf_counter()
        generate_model(path, args.spaces, args.sensors)
        print(f"generated {path.name}: {args.spaces:,} spaces, {args.sensors:,} sensors, "
              f"{path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s (not timed)")
        bare_runs = time_bare_open(path, args.runs)
        backend = "SQLite" if args.sqlite else "PostgreSQL"
        runs = []
        for _ in range(args.runs):
            async with fresh_database(None if args.sqlite else args.postgres, workdir) as url:
                gc.collect()
                runs.append(await time_import(path, url))
        bare = statistics.median(bare_runs)
        times = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        ratio = times["total"] / bare
        totals = ", ".join(f"{run['total']:.2f}" for run in runs)
        print(f"(a) bare ifcopenshell.open:  {bare:6.2f} s (median of {args.runs}: "
              f"{', '.join(f'{t:.2f}' for t in bare_runs)})")
        print(f"    whole import ({backend}): {times['total']:6.2f} s = open {times['open']:.2f} + snapshot "
              f"{times['snapshot']:.2f} + apply {times['apply']:.2f} (medians of {args.runs}: "
              f"{totals}; {int(times['nodes']):,} nodes, "
              f"{int(times['edges']):,} edges)")
        verdict = "within" if ratio <= 3 else "NOT within"
        print(f"    ratio {ratio:.2f}x: {verdict} the 3x target")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
