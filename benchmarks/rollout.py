"""Benchmark: the dashboard's rollout view over 10,000 devices (GET /api/v1/releases/{id}/rollout, read every 3 s).

    .venv/bin/python benchmarks/rollout.py                       # SQLite in a temp dir
    .venv/bin/python benchmarks/rollout.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Creates a fresh database, migrates it, inserts N devices of one fleet in bulk with a release deployed to all of
them and their reports (most converged, some still updating, a few failed, a third never reported), then asks the
real API in-process for what the release page asks: the whole fleet's first page, one state, a tag. The view
counts every selected device on each call, so this is its worst case. Prints median and 95th percentile latency.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_database

from iotistic.cloud.app import create_app
from iotistic.cloud.migrate import upgrade_async
from iotistic.cloud.models import (
    Device,
    DeviceCurrentState,
    DeviceStatus,
    DeviceTag,
    DeviceTarget,
    Fleet,
    Release,
    Role,
    TargetDeployment,
)
from iotistic.cloud.services import users
from iotistic.core.db import make_engine, utcnow
from iotistic.core.schemas.target_state import TargetState
from iotistic.core.settings import load_cloud_settings

CHUNK = 1000
PASSWORD = "benchmark-password-123"
QUERIES = {
    "whole fleet": {"fleet": "fleet-0"},
    "failed only": {"fleet": "fleet-0", "state": "failed"},
    "a later page": {"fleet": "fleet-0", "offset": "200"},
    "tag": {"tag": "ring:canary"},
    "running the release": {},
}
DOCUMENT = TargetState.model_validate({"apps": {"1": {"appId": 1, "appName": "web", "services": [
    {"serviceId": 1, "serviceName": "web", "config": {"image": "nginx:1.27", "ports": ["8080:80"]}}]}}}).document()


def report(i: int) -> dict[str, object] | None:
    if i % 3 == 0:
        return None
    if i % 50 == 1:
        return {"appliedVersion": 0, "status": "error"}
    if i % 7 == 2:
        return {"appliedVersion": 0, "status": "applying"}
    return {"appliedVersion": 1, "status": "applied", "apps": {"1": {"appId": 1, "services": [
        {"serviceName": "web", "status": "running"}]}}}


async def populate(url: str, count: int) -> int:
    now = utcnow()
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            fleet = (await conn.execute(insert(Fleet).values(name="fleet-0", created_at=now)
                                        .returning(Fleet.id))).scalar_one()
            release = (await conn.execute(insert(Release).values(name="web-v1", fleet_id=fleet, document=DOCUMENT,
                                                                  created_by="bench", created_at=now)
                                          .returning(Release.id))).scalar_one()
            for start in range(0, count, CHUNK):
                await conn.execute(insert(Device), [
                    {"uuid": uuid.uuid4().hex, "name": f"sensor-{i:05d}", "device_type": "rpi4",
                     "status": DeviceStatus.active.value, "fleet_id": fleet, "created_at": now,
                     "last_seen_at": now if i % 4 else now - dt.timedelta(days=1)}
                    for i in range(start, min(count, start + CHUNK))
                ])
            ids = (await conn.execute(select(Device.id).order_by(Device.id))).scalars().all()
            for start in range(0, len(ids), CHUNK):
                chunk = list(enumerate(ids[start:start + CHUNK], start=start))
                await conn.execute(insert(DeviceTarget), [
                    {"device_id": d, "staged": DOCUMENT, "deployed": DOCUMENT, "version": 1, "etag": "e",
                     "release_id": release, "staged_at": now, "deployed_at": now} for _, d in chunk])
                await conn.execute(insert(TargetDeployment), [
                    {"device_id": d, "version": 1, "document": DOCUMENT, "release_id": release, "deployed_by": "bench",
                     "deployed_at": now} for _, d in chunk])
                states = [{"device_id": d, "document": doc, "reported_at": now}
                          for i, d in chunk if (doc := report(i)) is not None]
                await conn.execute(insert(DeviceCurrentState), states)
                await conn.execute(insert(DeviceTag), [
                    {"device_id": d, "key": "ring", "value": "canary" if i % 10 == 0 else "main"} for i, d in chunk])
        return int(release)
    finally:
        await engine.dispose()


async def run(url: str, count: int, repeats: int, workdir: Path) -> None:
    started = time.perf_counter()
    await upgrade_async(url)
    release = await populate(url, count)
    print(f"migrated and inserted {count:,} devices with their targets and reports in "
          f"{time.perf_counter() - started:.1f} s")
    settings = load_cloud_settings(DATABASE_URL=url, JWT_SECRET="benchmark-" + "x" * 40, IOTISTIC_DATA_DIR=str(workdir),
                                   ARGON2_TIME_COST=1, ARGON2_MEMORY_KIB=64, ARGON2_PARALLELISM=1)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.ctx.sessions() as session:
            await users.create_user(session, email="bench@example.com", password=PASSWORD, role=Role.viewer)
            await session.commit()
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            r = await client.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD})
            r.raise_for_status()
            client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
            print(f"{'query':<20} {'total':>7} {'median':>9} {'p95':>9}  summary")
            for name, params in QUERIES.items():
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    r = await client.get(f"/api/v1/releases/{release}/rollout", params={"limit": 25, **params})
                    times.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                body = r.json()
                p95 = sorted(times)[max(0, int(len(times) * 0.95) - 1)]
                summary = " ".join(f"{k}={v}" for k, v in body["summary"].items() if v)
                print(f"{name:<20} {body['total']:>7,} {statistics.median(times):>7.1f}ms {p95:>7.1f}ms  {summary}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--database-url", help="a PostgreSQL server to create a throwaway database on")
    args = parser.parse_args()

    async def go() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with fresh_database(args.database_url, Path(tmp)) as url:
                await run(url, args.devices, args.repeats, Path(tmp))

    asyncio.run(go())


if __name__ == "__main__":
    main()
