"""Benchmark: 1,000,000 QoS 1 readings from 1,000 simulated devices through Mosquitto into PostgreSQL, each once.

    .venv/bin/python benchmarks/ingest.py                       # PostgreSQL on 127.0.0.1:5432 (throwaway db)
    .venv/bin/python benchmarks/ingest.py --devices 100 --per-device 1000 --sqlite

One run:
1. a fresh database, migrated; the cloud API served by uvicorn (enterprise licence, so 1,000 devices fit); a private
   Mosquitto with the project's config, enforcing the database's accounts through the broker sync;
2. N simulated devices registered through the API with a provisioning key (`iotistic.simulator.provision`), each
   with its own MQTT account; the ingest service account and a "raw" service account made through the API too;
3. ingest connects once (its persistent session and shared subscriptions are made) and stops; the raw subscriber,
   which does nothing with what it gets (gmqtt, acknowledging on receipt), does the same on its own session;
4. every device publishes its readings (`iotistic.simulator.run.publish_burst`: QoS 1, one reading per message on
   iot/device/<uuid>/sensor/<metric>) while both are away: the broker queues every reading for each of them, so the
   publisher is out of the timings;
5. raw drain: the do-nothing subscriber reconnects and is timed until it has received every message;
6. ingest drain: ingest restarts and is timed until every reading is committed;
7. checks that the telemetry table holds each reading exactly once (row count, per-device counts, no key twice).
Prints stored readings/s next to the raw broker rate measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn
from common import fresh_database  # benchmarks/common.py
from gmqtt import Client, Subscription
from gmqtt.mqtt.constants import MQTTv50
from sqlalchemy import func, select, text

from iotistic.broker.sync import BrokerSync
from iotistic.broker.testing import PrivateMosquitto, free_port
from iotistic.cloud.app import create_app
from iotistic.cloud.migrate import upgrade
from iotistic.cloud.models import Role, Telemetry
from iotistic.cloud.services import users
from iotistic.core import topics
from iotistic.core.db import make_engine, make_sessionmaker
from iotistic.core.licensing import generate_keypair, issue_license
from iotistic.core.settings import load_cloud_settings
from iotistic.ingest.live import RedisBus, stream_key
from iotistic.ingest.runner import tune_gc_for_throughput
from iotistic.ingest.service import IngestService
from iotistic.simulator.provision import provision_devices
from iotistic.simulator.run import publish_burst

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LIVE_MAXLEN = 1000
OWNER, OWNER_PASSWORD = "bench@example.com", secrets.token_urlsafe(16)


@contextlib.contextmanager
def serve(app: Any, port: int) -> Iterator[None]:
    """The cloud API on uvicorn in a thread of its own (its own event loop, as in production)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the cloud API did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(30)


async def live_entries(redis_url: str, uuids: list[str]) -> int:
    """Entries in the devices' live streams (then deleted: they are this run's)."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        pipe = r.pipeline(transaction=False)
        for uuid in uuids:
            pipe.xlen(stream_key(uuid))
        total = sum(await pipe.execute())
        await r.delete(*(stream_key(u) for u in uuids))
        return int(total)
    finally:
        await r.aclose()


@dataclass
class Drain:
    stored: int
    seconds: float
    cpu: float  # CPU seconds the ingest used
    rejected: dict[str, int]


async def drain_in_process(settings: Any, engine: Any, password: str, total: int, args: argparse.Namespace) -> Drain:
    live = RedisBus(args.redis, LIVE_MAXLEN) if args.redis else None
    ingest = IngestService(settings, engine, live, username="svc-ingest", password=password, client_id="bench-ingest")
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    tune_gc_for_throughput()  # as `iotistic ingest` does
    started, cpu_started = time.perf_counter(), time.process_time()
    await ingest.start()
    assert ingest.pipeline is not None
    stats = ingest.pipeline.stats
    deadline = time.monotonic() + args.timeout
    while stats.stored_readings < total and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    await ingest.stop()
    if live is not None:
        await live.close()
    return Drain(stats.stored_readings, seconds, cpu, dict(stats.rejected))


class Worker:
    """`iotistic ingest` as a process, as operators run it."""

    def __init__(self, n: int, env: dict[str, str], workdir: Path) -> None:
        self.log = workdir / f"ingest-{n}.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "iotistic.cli", "ingest"],
                                            env={**env, "INGEST_CLIENT_ID": f"bench-ingest-{n}"},
                                            stdout=out, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.process.pid)

    def running(self) -> bool:
        return b"ingest: running" in self.log.read_bytes()

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(60) != 0:
            raise RuntimeError(f"ingest worker failed; see {self.log}")


async def start_workers(n: int, env: dict[str, str], workdir: Path) -> list[Worker]:
    workers = [Worker(i + 1, env, workdir) for i in range(n)]
    deadline = time.monotonic() + 60
    while not all(w.running() for w in workers):
        if time.monotonic() > deadline or any(w.process.poll() is not None for w in workers):
            raise RuntimeError(f"ingest workers did not start; see {workdir}/ingest-*.log")
        await asyncio.sleep(0.05)
    return workers


async def drain_with_workers(n: int, env: dict[str, str], workdir: Path, engine: Any, total: int,
                             within: float) -> Drain:
    started = time.perf_counter()
    workers = [Worker(i + 1, env, workdir) for i in range(n)]
    stored = 0
    deadline = time.monotonic() + within
    async with engine.connect() as conn:
        while stored < total and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            stored = int(await conn.scalar(select(func.count()).select_from(Telemetry)) or 0)
            await conn.commit()
    seconds = time.perf_counter() - started
    cpu = sum(w.cpu() for w in workers)
    for worker in workers:
        worker.stop()
    return Drain(stored, seconds, cpu, {})


class RawSubscriber:
    """Receives the same subscriptions on its own persistent session and does nothing with what it gets."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.port = port
        self.received = 0
        self.expected = 0
        self.done = asyncio.Event()
        self.client = Client("bench-raw", clean_session=False, session_expiry_interval=0xFFFFFFFF,
                             receive_maximum=20_000)
        self.client.set_auth_credentials(username, password)
        self.client.on_message = self._on_message
        filters = [Subscription(f"$share/raw/{f}", qos=1) for f in topics.INGEST_FILTERS]
        self.client.on_connect = lambda client, *_: client.subscribe(filters)

    def _on_message(self, _client: Any, _topic: str, _payload: bytes, _qos: int, _props: Any) -> int:
        self.received += 1
        if self.expected and self.received >= self.expected:
            self.done.set()
        return 0

    async def connect(self) -> None:
        await self.client.connect("127.0.0.1", self.port, version=MQTTv50, keepalive=60)

    async def disconnect(self) -> None:
        await self.client.disconnect()


async def service_account(http: httpx.AsyncClient, token: str, username: str) -> str:
    response = await http.post("/api/v1/mqtt/accounts", headers={"Authorization": f"Bearer {token}"},
                               json={"username": username, "kind": "service",
                                     "rules": [{"topic": "iot/device/+/#", "access": "read"}]})
    response.raise_for_status()
    return str(response.json()["password"])


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="iotistic-ingest-bench-"))
    total = args.devices * args.per_device
    async with fresh_database(None if args.sqlite else args.postgres, workdir) as db_url:
        await asyncio.to_thread(upgrade, db_url)
        private_pem, public_pem = generate_keypair()
        licence = issue_license(private_pem, customer_id="bench", plan="enterprise", days=30)
        mosquitto = PrivateMosquitto()
        api_port = free_port()
        settings = load_cloud_settings(DATABASE_URL=db_url, IOTISTIC_DATA_DIR=str(workdir),
                                       LICENSE_PUBLIC_KEY=public_pem, IOTISTIC_LICENSE_KEY=licence,
                                       MQTT_BROKER_URL=f"mqtt://127.0.0.1:{mosquitto.port}",
                                       INGEST_BATCH_SIZE=args.batch_size, INGEST_FLUSH_MS=args.flush_ms,
                                       LIVE_STREAM_MAXLEN=LIVE_MAXLEN,
                                       LOG_LEVEL="WARNING")
        engine = make_engine(db_url)
        async with make_sessionmaker(engine)() as session:
            await users.create_user(session, email=OWNER, password=OWNER_PASSWORD, role=Role.owner)
            await session.commit()
        sync = BrokerSync(engine, mosquitto.target)
        stop_sync = asyncio.Event()
        await sync.sync_once()
        mosquitto.start()
        sync_task = asyncio.create_task(sync.run(stop_sync))
        try:
            with serve(create_app(settings), api_port):
                api_url = f"http://127.0.0.1:{api_port}"
                async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
                    token = (await http.post("/api/v1/auth/login", json={"email": OWNER, "password": OWNER_PASSWORD})
                             ).json()["access_token"]
                    auth = {"Authorization": f"Bearer {token}"}
                    key = (await http.post("/api/v1/provisioning-keys", headers=auth, json={})).json()["key"]
                    ingest_password = await service_account(http, token, "svc-ingest")
                    raw_password = await service_account(http, token, "svc-raw")
                    started = time.perf_counter()
                    devices = await provision_devices(api_url, args.devices, key, concurrency=16)
                    took = time.perf_counter() - started
                    print(f"provisioned {len(devices)} devices through the API in {took:.1f} s")
                await asyncio.sleep(1.5)  # the sync makes the broker know the new accounts (<= 2 s)

                worker_env = {**{k: v for k, v in os.environ.items()
                                 if not k.startswith(("DB_", "INGEST_", "MQTT_", "REDIS_"))},
                              "DATABASE_URL": db_url, "IOTISTIC_DATA_DIR": str(workdir), "LOG_LEVEL": "INFO",
                              "MQTT_BROKER_URL": f"mqtt://127.0.0.1:{mosquitto.port}",
                              "INGEST_MQTT_USERNAME": "svc-ingest", "INGEST_MQTT_PASSWORD": ingest_password,
                              "INGEST_BATCH_SIZE": str(args.batch_size), "INGEST_FLUSH_MS": str(args.flush_ms),
                              "LIVE_STREAM_MAXLEN": str(LIVE_MAXLEN), "LICENSE_PUBLIC_KEY": public_pem,
                              "IOTISTIC_LICENSE_KEY": licence, **({"REDIS_URL": args.redis} if args.redis else {})}
                if args.workers:
                    # Each worker's persistent session and shared subscriptions are made once, then it stops.
                    for worker in await start_workers(args.workers, worker_env, workdir):
                        worker.stop()
                else:
                    ingest = IngestService(settings, engine, None, username="svc-ingest", password=ingest_password,
                                           client_id="bench-ingest")
                    await ingest.start()
                    await ingest.wait_connected(10)
                    await ingest.stop()
                raw = RawSubscriber(mosquitto.port, "svc-raw", raw_password)
                await raw.connect()
                await asyncio.sleep(0.5)
                await raw.disconnect()

                print(f"publishing {total:,} readings from {len(devices)} devices while ingest is stopped ...")
                burst = await publish_burst(devices, args.per_device,
                                            broker_url=f"mqtt://127.0.0.1:{mosquitto.port}")
                if burst.acked != total or burst.errors:
                    print(f"publisher: {burst.acked:,} of {total:,} acknowledged, {burst.errors} errors "
                          f"({burst.first_error})", file=sys.stderr)
                    return 1
                print(f"  published and acknowledged in {burst.publish_seconds:.1f} s ({burst.rate:,.0f}/s)")
                # Each device also sent a retained `online` and, on its clean stop, `offline`: 2 more messages.
                messages = total + 2 * len(devices)

                raw.expected = messages
                raw.received = 0
                tune_gc_for_throughput()  # the same process settings for both measurements
                started = time.perf_counter()
                await raw.connect()
                try:
                    await asyncio.wait_for(raw.done.wait(), timeout=args.timeout)
                except TimeoutError:
                    print(f"raw subscriber got {raw.received:,} of {messages:,}", file=sys.stderr)
                raw_seconds = time.perf_counter() - started
                await raw.disconnect()
                raw_rate = raw.received / raw_seconds

                if args.workers:
                    drain = await drain_with_workers(args.workers, worker_env, workdir, engine, total, args.timeout)
                else:
                    drain = await drain_in_process(settings, engine, ingest_password, total, args)
                if args.redis:
                    streamed = await live_entries(args.redis, [d.uuid for d in devices])
        finally:
            stop_sync.set()
            await sync_task
            mosquitto.close()

        async with engine.connect() as conn:
            rows = int(await conn.scalar(select(func.count()).select_from(Telemetry)) or 0)
            per_device = (await conn.execute(
                select(Telemetry.device_id, func.count()).group_by(Telemetry.device_id))).all()
            distinct = int(await conn.scalar(text(
                "SELECT count(*) FROM (SELECT DISTINCT device_id, metric, ts FROM telemetry) k")) or 0)
        await engine.dispose()

    print()
    print(f"backend                  {'SQLite' if args.sqlite else 'PostgreSQL'}")
    print(f"readings                 {total:,} from {args.devices:,} devices (QoS 1, persistent sessions)")
    print(f"raw broker rate          {raw_rate:>10,.0f} msg/s  ({raw.received:,} messages drained in "
          f"{raw_seconds:.1f} s by a subscriber that does nothing)")
    stored_rate = drain.stored / drain.seconds
    where = f"{args.workers} worker process(es)" if args.workers else "in this process"
    print(f"ingest stored            {stored_rate:>10,.0f} readings/s  ({drain.stored:,} committed in "
          f"{drain.seconds:.1f} s by {where}; batches of at most {args.batch_size} + what arrives while one "
          f"is written)")
    print(f"ingest CPU               {drain.cpu / drain.seconds:>10.0%} of one core "
          f"({drain.cpu / max(drain.stored, 1) * 1e6:.0f} us per reading)")
    print(f"ingest / raw             {stored_rate / raw_rate:>10.0%}")
    print(f"rows in telemetry        {rows:,}  distinct keys {distinct:,}  devices {len(per_device):,}  "
          f"per device {min(c for _, c in per_device) if per_device else 0}-"
          f"{max(c for _, c in per_device) if per_device else 0}")
    if args.redis:
        print(f"live stream              Redis streams metrics:<uuid>, capped at {LIVE_MAXLEN} each: "
              f"{streamed:,} entries now")
    else:
        print("live stream              off (--redis '')")
    print(f"rejected                 {drain.rejected or 'none'}")
    ok = rows == total == distinct and len(per_device) == args.devices and all(
        c == args.per_device for _, c in per_device)
    print(f"exactly once             {'yes' if ok else 'NO'}")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--per-device", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--flush-ms", type=int, default=200)
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                        help="live stream as in production (Redis); '' for none")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the ingest drain into FILE (in-process only)")
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false",
                        help="the standard asyncio loop instead of uvloop")
    parser.add_argument("--workers", type=int, default=0,
                        help="drain with N `iotistic ingest` processes sharing the subscription (0: in-process)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.uvloop:  # as `iotistic ingest` and uvicorn run; the raw subscriber shares the loop, so it gains too
        import uvloop

        sys.exit(uvloop.run(run(args)))
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
