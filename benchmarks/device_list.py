"""Benchmark: the dashboard's device list over 10,000 devices (GET /api/v1/devices, paged on the server).

    .venv/bin/python benchmarks/device_list.py                       # SQLite in a temp dir
    .venv/bin/python benchmarks/device_list.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Creates a fresh database (temp SQLite, or a throwaway database on the given PostgreSQL server), migrates it,
inserts N devices in bulk (spread over 10 fleets, two tags each, a third seen recently), then asks the real API
in-process (ASGI, no network) for what the dashboard asks: the first page, a page near the end, and each filter
(online, status, fleet, tag, text, all combined). Prints median and 95th percentile latency per query; a list
that "stays fast" answers each in well under the 300 ms an operator notices.
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
from iotistic.cloud.models import Device, DeviceStatus, DeviceTag, Fleet, Role
from iotistic.cloud.services import users
from iotistic.core.db import make_engine, utcnow
from iotistic.core.settings import load_cloud_settings

CHUNK = 1000
PASSWORD = "benchmark-password-123"
QUERIES = {
    "first page": {},
    "page near the end": {"offset": "N-50"},
    "online": {"online": "true"},
    "offline": {"online": "false"},
    "status": {"status": "disabled"},
    "fleet": {"fleet": "fleet-3"},
    "tag key:value": {"tag": "floor:7"},
    "text": {"text": "0042"},
    "all filters": {"online": "true", "status": "active", "fleet": "fleet-3", "tag": "zone:north", "text": "1"},
}


async def populate(url: str, count: int) -> None:
    now = utcnow()
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Fleet), [{"name": f"fleet-{i}", "created_at": now} for i in range(10)])
            fleets = (await conn.execute(select(Fleet.id))).scalars().all()
            for start in range(0, count, CHUNK):
                await conn.execute(insert(Device), [
                    {"uuid": uuid.uuid4().hex, "name": f"sensor-{i:05d}", "device_type": "rpi4",
                     "status": DeviceStatus.disabled.value if i % 20 == 0 else DeviceStatus.active.value,
                     "fleet_id": fleets[i % len(fleets)], "created_at": now,
                     "last_seen_at": now if i % 3 == 0 else now - dt.timedelta(days=1)}
                    for i in range(start, min(count, start + CHUNK))
                ])
            ids = (await conn.execute(select(Device.id))).scalars().all()
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                await conn.execute(insert(DeviceTag), [
                    {"device_id": d, "key": "floor", "value": str(d % 12)} for d in chunk])
                await conn.execute(insert(DeviceTag), [
                    {"device_id": d, "key": "zone", "value": ("north", "south")[d % 2]} for d in chunk])
    finally:
        await engine.dispose()


async def run(url: str, count: int, repeats: int, workdir: Path) -> None:
    started = time.perf_counter()
    await upgrade_async(url)
    await populate(url, count)
    print(f"migrated and inserted {count:,} devices in {time.perf_counter() - started:.1f} s")
    settings = load_cloud_settings(DATABASE_URL=url, JWT_SECRET="benchmark-" + "x" * 40,
                                   IOTISTIC_DATA_DIR=str(workdir), ARGON2_TIME_COST=1, ARGON2_MEMORY_KIB=64,
                                   ARGON2_PARALLELISM=1)
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
            print(f"{'query':<20} {'total':>7} {'median':>9} {'p95':>9}")
            for name, params in QUERIES.items():
                params = {k: (str(count - 50) if v == "N-50" else v) for k, v in params.items()}
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    r = await client.get("/api/v1/devices", params={"limit": 50, **params})
                    times.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                total = r.json()["total"]
                p95 = sorted(times)[max(0, int(len(times) * 0.95) - 1)]
                print(f"{name:<20} {total:>7,} {statistics.median(times):>7.1f}ms {p95:>7.1f}ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--database-url", help="a PostgreSQL server to create a throwaway database on")
    args = parser.parse_args()

    async def go() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with fresh_database(args.database_url, Path(tmp)) as url:
                await run(url, args.devices, args.repeats, Path(tmp))

    asyncio.run(go())


if __name__ == "__main__":
    main()
