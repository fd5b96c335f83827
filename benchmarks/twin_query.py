"""Twin graph store on a 100,000-node graph (issue 5, benchmark part b), plus snapshot apply times.

Builds, in a throwaway PostgreSQL database (or SQLite with --sqlite):
  5 sites x 4 buildings x 10 storeys x 50 spaces = 10,000 spaces, each with 4 IFC sensors (elements) and 5 registry
  devices (3 mapped to the space, 2 to its sensors) -> about 100,000 nodes.
The IFC part goes in through `SqlGraphStore.apply_snapshot` (timed, then timed again re-applied unchanged); the
registry devices and their mappings are bulk-inserted, then VACUUM ANALYZE runs as autovacuum would (setup, not
measured; --no-vacuum skips it). Then it prints the median time of "all devices in building X" (target: under
100 ms on PostgreSQL) and of a few other queries. With --apply-nodes N
it also times applying a separate N-node snapshot (default 25,000 with about 30,000 edges).

    python benchmarks/twin_query.py [--postgres URL | --sqlite] [--runs 20] [--no-vacuum]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import fresh_database  # benchmarks/common.py
from sqlalchemy import func, insert, select, text

from iotistic.cloud.migrate import upgrade
from iotistic.cloud.models import Device
from iotistic.core.db import make_engine, make_sessionmaker, utcnow
from iotistic.twin.graph import EdgeSpec, EdgeType, GraphSnapshot, NodeSpec, NodeType
from iotistic.twin.models import TwinEdge, TwinNode
from iotistic.twin.store import SqlGraphStore

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SITES, BUILDINGS, STOREYS, SPACES, SENSORS, DEVICES = 5, 4, 10, 50, 4, 5


def building_model(prefix: str = "") -> tuple[GraphSnapshot, list[str], list[list[str]]]:
    """The IFC part; also the spaces' GlobalIds and each space's sensors' GlobalIds (for the mappings)."""
    nodes = [NodeSpec(f"{prefix}P", NodeType.project, "Campus", "IfcProject")]
    edges: list[EdgeSpec] = []
    spaces: list[str] = []
    sensors: list[list[str]] = []

    def add(gid: str, kind: NodeType, name: str, parent: str, ifc_class: str, edge: EdgeType) -> None:
        nodes.append(NodeSpec(gid, kind, name, ifc_class, {"Pset_Common": {"Reference": name}}))
        edges.append(EdgeSpec(edge, parent if edge is EdgeType.contains else gid,
                              gid if edge is EdgeType.contains else parent))

    for s in range(SITES):
        site = f"{prefix}S{s}"
        add(site, NodeType.site, f"Site {s}", f"{prefix}P", "IfcSite", EdgeType.contains)
        for b in range(BUILDINGS):
            building = f"{site}B{b}"
            add(building, NodeType.building, f"Building {s}.{b}", site, "IfcBuilding", EdgeType.contains)
            for f in range(STOREYS):
                storey = f"{building}F{f}"
                add(storey, NodeType.storey, f"Floor {f}", building, "IfcBuildingStorey", EdgeType.contains)
                for r in range(SPACES):
                    space = f"{storey}R{r}"
                    add(space, NodeType.space, f"Room {s}.{b}.{f}.{r:02d}", storey, "IfcSpace", EdgeType.contains)
                    spaces.append(space)
                    here = []
                    for e in range(SENSORS):
                        sensor = f"{space}E{e}"
                        add(sensor, NodeType.element, f"Sensor {e} of {space}", space, "IfcSensor",
                            EdgeType.located_in)
                        here.append(sensor)
                    sensors.append(here)
    return GraphSnapshot("IFC4", nodes, edges), spaces, sensors


def small_model(nodes_wanted: int) -> GraphSnapshot:
    """About `nodes_wanted` nodes and 1.2 edges per node: storeys of spaces with sensors, zones over spaces."""
    nodes = [NodeSpec("mP", NodeType.project, "P", "IfcProject"), NodeSpec("mS", NodeType.site, "S", "IfcSite"),
             NodeSpec("mB", NodeType.building, "B", "IfcBuilding")]
    edges = [EdgeSpec(EdgeType.contains, "mP", "mS"), EdgeSpec(EdgeType.contains, "mS", "mB")]
    i = 0
    while len(nodes) < nodes_wanted:
        storey = f"mF{i}"
        nodes.append(NodeSpec(storey, NodeType.storey, storey, "IfcBuildingStorey"))
        edges.append(EdgeSpec(EdgeType.contains, "mB", storey))
        zone = f"mZ{i}"
        nodes.append(NodeSpec(zone, NodeType.zone, zone, "IfcZone"))
        for r in range(50):
            space = f"{storey}R{r}"
            nodes.append(NodeSpec(space, NodeType.space, space, "IfcSpace", {"Pset_SpaceCommon": {"Area": r}}))
            edges += [EdgeSpec(EdgeType.contains, storey, space), EdgeSpec(EdgeType.groups, zone, space)]
            for e in range(4):
                sensor = f"{space}E{e}"
                nodes.append(NodeSpec(sensor, NodeType.element, sensor, "IfcSensor", {"Pset": {"N": e}}))
                edges.append(EdgeSpec(EdgeType.located_in, sensor, space))
        i += 1
    return GraphSnapshot("IFC4", nodes, edges)


async def timed(label: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    start = time.perf_counter()
    result = await fn()
    print(f"{label}: {time.perf_counter() - start:.2f} s", flush=True)
    return result


async def median_ms(sessions: Any, runs: int, fn: Callable[[SqlGraphStore], Awaitable[Any]]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        async with sessions() as session:
            store = SqlGraphStore(session)
            start = time.perf_counter()
            result = await fn(store)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="iotistic-twin-bench-"))
    async with fresh_database(None if args.sqlite else args.postgres, workdir) as db_url:
        await asyncio.to_thread(upgrade, db_url)
        engine = make_engine(db_url)
        sessions = make_sessionmaker(engine)
        try:
            print(f"database: {engine.dialect.name}", flush=True)
            if args.apply_nodes:
                model = small_model(args.apply_nodes)
                print(f"separate snapshot: {len(model.nodes):,} nodes, {len(model.edges):,} edges")
                for label in ("  first apply", "  re-apply (unchanged)"):
                    async with sessions() as session:
                        report = await timed(label, lambda s=session, m=model: SqlGraphStore(s).apply_snapshot(
                            m, source="medium.ifc"))
                        await session.commit()
                print(f"  re-apply changed anything: {report.changed}")
                async with sessions() as session:
                    await SqlGraphStore(session).delete_source("medium.ifc")
                    await session.commit()

            model, spaces, sensors = building_model()
            print(f"campus snapshot: {len(model.nodes):,} nodes, {len(model.edges):,} edges", flush=True)
            async with sessions() as session:
                await timed("  first apply", lambda: SqlGraphStore(session).apply_snapshot(model, source="campus"))
                await session.commit()
            async with sessions() as session:
                report = await timed("  re-apply (unchanged)",
                                     lambda: SqlGraphStore(session).apply_snapshot(model, source="campus"))
                await session.commit()
            assert not report.changed

            await timed("registry devices and mappings (bulk setup)", lambda: add_devices(sessions, spaces, sensors))
            if args.no_vacuum:
                print("no VACUUM: the visibility map is unset, index-only scans visit the heap")
            else:
                # What autovacuum does to a real instance after a big insert (PostgreSQL 13+ vacuums insert-only
                # tables too): fresh statistics and the visibility map the walks' index-only scans rely on.
                async with engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
            async with sessions() as session:
                total = await session.scalar(select(func.count()).select_from(TwinNode))
                edges = await session.scalar(select(func.count()).select_from(TwinEdge))
            print(f"graph: {total:,} nodes, {edges:,} edges")

            building = "S2B1"
            ms, found = await median_ms(sessions, args.runs, lambda s: s.devices_in(building))
            print(f"all devices in building {building}: median {ms:.1f} ms over {args.runs} runs "
                  f"({len(found):,} devices) -- target < 100 ms")
            ms, found = await median_ms(sessions, args.runs, lambda s: s.devices_in("S2"))
            print(f"all devices in site S2: median {ms:.1f} ms ({len(found):,} devices)")
            ms, found = await median_ms(sessions, args.runs, lambda s: s.latest_telemetry_in(f"{building}F3"))
            print(f"latest telemetry of every device on one floor: median {ms:.1f} ms ({len(found):,} devices)")
            ms, found = await median_ms(sessions, args.runs, lambda s: s.path_to_site("bench-dev-12345"))
            print(f"path from a device to its project: median {ms:.1f} ms ({len(found.path)} nodes)")
            ms, found = await median_ms(sessions, args.runs, lambda s: s.search("room 3.2.7"))
            print(f"search by name: median {ms:.1f} ms ({len(found)} nodes)")
            ms, found = await median_ms(sessions, 5, lambda s: s.export(building, limit=50_000))
            print(f"export of building {building}: median {ms:.1f} ms ({len(found.nodes):,} nodes, "
                  f"{len(found.links):,} links)")
        finally:
            await engine.dispose()
    return 0


async def add_devices(sessions: Any, spaces: list[str], sensors: list[list[str]]) -> None:
    """DEVICES registry devices per space: 3 mapped to the space, the others to its first sensors."""
    async with sessions() as session:
        ids = {gid: node_id for gid, node_id in await session.execute(
            select(TwinNode.global_id, TwinNode.id).where(TwinNode.source == "campus"))}
        now = utcnow()
        devices, places = [], []
        for i, (space, here) in enumerate(zip(spaces, sensors, strict=True)):
            for d in range(DEVICES):
                devices.append({"uuid": f"bench-dev-{i * DEVICES + d}", "name": f"dev {i}.{d}",
                                "device_type": "bench", "status": "active", "created_at": now})
                places.append(ids[space] if d < 3 else ids[here[d - 3]])
        await session.execute(insert(Device), devices)
        device_ids = {uuid: id_ for uuid, id_ in await session.execute(select(Device.uuid, Device.id))}
        await session.execute(insert(TwinNode), [
            {"kind": "Device", "name": d["name"], "device_id": device_ids[d["uuid"]], "properties": {},
             "created_at": now, "updated_at": now} for d in devices])
        node_ids = {device_id: node_id for device_id, node_id in await session.execute(
            select(TwinNode.device_id, TwinNode.id).where(TwinNode.kind == "Device"))}
        await session.execute(insert(TwinEdge), [
            {"kind": "LOCATED_IN", "source_id": node_ids[device_ids[d["uuid"]]], "target_id": place,
             "properties": {}, "created_at": now} for d, place in zip(devices, places, strict=True)])
        await session.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="server URL (a throwaway database is made on it)")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--apply-nodes", type=int, default=25_000, help="0 to skip the separate apply timing")
    parser.add_argument("--no-vacuum", action="store_true", help="skip VACUUM ANALYZE after the setup")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
