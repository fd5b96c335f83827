"""Benchmark: 10,000 provisioned devices polling their target state with If-None-Match (the 304 path).

    .venv/bin/python benchmarks/state_poll.py                       # SQLite in a temp dir
    .venv/bin/python benchmarks/state_poll.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

What it does, in one run:
1. creates a fresh database (a temp SQLite file, or a throwaway database on the given PostgreSQL server, dropped
   afterwards), migrates it with the project's migrations and provisions N devices in bulk (rows as the service
   layer writes them: sha256 of the device API key, an empty deployed target with its ETag);
2. starts the real API (`iotistic api`, 1 uvicorn worker) in a subprocess on a free loopback port;
3. drives it with the same load generator (client processes with keep-alive HTTP/1.1 connections on raw
   asyncio streams) against (a) `GET /api/v1/device/{uuid}/state` with `X-Device-API-Key` and `If-None-Match`,
   rotating over all devices, and (b) `GET /health` on the same server; each for a fixed duration after a
   warm-up, counting every response's status;
4. prints both rates and their ratio (target: the 304 path at >= 50% of the trivial endpoint).

Client and server share the machine's cores, so absolute figures are lower than on a dedicated server; the ratio
is the meaningful number. Before the measured state phase every device polls once: that first poll fills the
API's device cache from the database (its rate is printed too). In production a device's cache entry lives until
the device changes, so steady-state polls are the cached ones measured here. Contact times are written by the
API in batches every 2 s during the phase, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing as mp
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from iotistic.cloud.migrate import upgrade
from iotistic.cloud.models import Device, DeviceStatus, DeviceTarget
from iotistic.cloud.services.targets import EMPTY_TARGET, compute_etag
from iotistic.core.db import make_engine, utcnow
from iotistic.core.security import hash_token
from iotistic.core.settings import load_cloud_settings

CHUNK = 2000


# Database --------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def fresh_database(database_url: str | None, workdir: Path) -> Iterator[str]:
    """Yield the async URL of an empty database; PostgreSQL databases are created and dropped here."""
    if not database_url:
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        return
    url = load_cloud_settings(DATABASE_URL=database_url).sqlalchemy_url
    if url.startswith("sqlite"):
        yield url
        return
    import asyncpg

    server = make_url(url)
    name = f"iotistic_bench_{secrets.token_hex(4)}"
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True)
class Provisioned:
    uuid: str
    api_key: str


async def provision(url: str, count: int) -> tuple[list[Provisioned], str]:
    """Insert `count` active devices and their (empty, deployed version 0) targets in bulk."""
    etag = compute_etag(0, EMPTY_TARGET)
    devices = [Provisioned(uuid.uuid4().hex, secrets.token_urlsafe(32)) for _ in range(count)]
    now = utcnow()
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            for start in range(0, count, CHUNK):
                await conn.execute(insert(Device), [
                    {"uuid": d.uuid, "name": f"bench-{i:05d}", "device_type": "raspberrypi4",
                     "status": DeviceStatus.active.value, "api_key_hash": hash_token(d.api_key),
                     "key_exchanged_at": now, "last_seen_at": now, "created_at": now}
                    for i, d in enumerate(devices[start:start + CHUNK], start)
                ])
            ids = (await conn.execute(select(Device.id))).scalars().all()
            for start in range(0, len(ids), CHUNK):
                await conn.execute(insert(DeviceTarget), [
                    {"device_id": device_id, "staged": EMPTY_TARGET, "deployed": EMPTY_TARGET, "version": 0,
                     "etag": etag, "staged_at": now}
                    for device_id in ids[start:start + CHUNK]
                ])
    finally:
        await engine.dispose()
    return devices, etag


async def first_polls(base: str, devices: list[Any], etag: str, concurrency: int = 4) -> tuple[int, float]:
    """Every device polls once (cache misses, so the database answers); returns (304 count, requests/s).

    httpx is the bottleneck here (it slows down with many queued requests), so the rate is a lower bound.
    """
    limit = asyncio.Semaphore(concurrency)
    ok = 0
    async with httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def poll(device: Any) -> None:
            nonlocal ok
            async with limit:
                r = await client.get(f"/api/v1/device/{device.uuid}/state",
                                     headers={"X-Device-API-Key": device.api_key, "If-None-Match": f'"{etag}"'})
                ok += r.status_code == 304

        started = time.perf_counter()
        await asyncio.gather(*(poll(d) for d in devices))
        elapsed = time.perf_counter() - started
    return ok, len(devices) / elapsed


# Server ----------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), to show how busy the server was in a phase."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    base: str
    port: int
    pid: int


@contextlib.contextmanager
def api_server(url: str, workdir: Path) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.update({"DATABASE_URL": url, "IOTISTIC_DATA_DIR": str(workdir / "data"), "JWT_SECRET": secrets.token_hex(32),
                "LOG_LEVEL": "WARNING"})
    log = open(workdir / "server.log", "wb")  # closed below
    proc = subprocess.Popen([sys.executable, "-m", "iotistic.cli", "api", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the API exited with {proc.returncode}: "
                                 f"{(workdir / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the API did not answer /health within 60 s")
            time.sleep(0.1)
        yield Server(base, port, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# Load generator -------------------------------------------------------------------------------------------------

@dataclass
class PhaseResult:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    server_cpu: float | None = None  # server CPU seconds per wall second during the measured window

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def _connection(port: int, requests: list[bytes], offset: int, stride: int, warm_until: float,
                      stop_at: float, result: PhaseResult) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    n = len(requests)
    try:
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                break
            writer.write(requests[i % n])
            i += stride
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            if length:
                await reader.readexactly(length)
            end = time.perf_counter()
            if start >= warm_until and end <= stop_at:
                result.requests += 1
                result.statuses[status] += 1
                result.latencies_ms.append((end - start) * 1000)
    except (ConnectionError, asyncio.IncompleteReadError):
        result.errors += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _client_process(port: int, requests: list[bytes], process_index: int, processes: int, connections: int,
                    warm_until: float, stop_at: float, out: Any) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = PhaseResult()

    async def main() -> None:
        stride = processes * connections
        await asyncio.gather(*(
            _connection(port, requests, process_index * connections + c, stride, warm_until, stop_at, result)
            for c in range(connections)
        ))

    asyncio.run(main())
    out.put((result.requests, dict(result.statuses), result.latencies_ms, result.errors))


def run_phase(server: Server, requests: list[bytes], *, processes: int, connections: int, warmup: float,
              duration: float) -> PhaseResult:
    port = server.port
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    begin = time.perf_counter() + 0.5  # time for the processes to start; perf_counter is system-wide on Linux
    warm_until, stop_at = begin + warmup, begin + warmup + duration
    procs = [ctx.Process(target=_client_process, args=(port, requests, p, processes, connections, warm_until,
                                                       stop_at, queue)) for p in range(processes)]
    for proc in procs:
        proc.start()
    total = PhaseResult(seconds=duration)
    time.sleep(max(0.0, warm_until - time.perf_counter()))
    cpu_start = cpu_seconds(server.pid)
    time.sleep(max(0.0, stop_at - time.perf_counter()))
    cpu_end = cpu_seconds(server.pid)
    if cpu_start is not None and cpu_end is not None:
        total.server_cpu = (cpu_end - cpu_start) / duration
    for _ in procs:
        count, statuses, latencies, errors = queue.get(timeout=warmup + duration + 120)
        total.requests += count
        total.statuses.update(statuses)
        total.latencies_ms.extend(latencies)
        total.errors += errors
    for proc in procs:
        proc.join()
    return total


# Main ------------------------------------------------------------------------------------------------------------

def check_state_path(base: str, device: Provisioned, etag: str) -> None:
    headers = {"X-Device-API-Key": device.api_key}
    r = httpx.get(f"{base}/api/v1/device/{device.uuid}/state", headers=headers)
    if r.status_code != 200 or r.headers.get("etag") != f'"{etag}"' or device.uuid not in r.json():
        raise SystemExit(f"unexpected state response: {r.status_code} {r.headers} {r.text[:300]}")
    r = httpx.get(f"{base}/api/v1/device/{device.uuid}/state", headers={**headers, "If-None-Match": f'"{etag}"'})
    if r.status_code != 304:
        raise SystemExit(f"If-None-Match did not give 304 but {r.status_code}: {r.text[:300]}")


def describe(name: str, result: PhaseResult) -> str:
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()))
    return (f"{name:<40} {result.rate:7.0f} req/s  p50 {result.percentile(50):5.1f} ms  "
            f"p99 {result.percentile(99):6.1f} ms  statuses {{{statuses}}}"
            + (f"   server process CPU {result.server_cpu:.0%}" if result.server_cpu is not None else "")
            + (f"   connection errors {result.errors}" if result.errors else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", help="PostgreSQL server to use (a throwaway database is created on it "
                        "and dropped afterwards); default: SQLite in a temp dir")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections per client process")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="iotistic-bench-"))
    try:
        with fresh_database(args.database_url, workdir) as url:
            backend = make_url(url).get_backend_name()
            print(f"database: {backend} ({make_url(url).render_as_string(hide_password=True)})")
            started = time.perf_counter()
            upgrade(url)
            devices, etag = asyncio.run(provision(url, args.devices))
            print(f"migrated and provisioned {len(devices):,} devices in {time.perf_counter() - started:.1f} s")
            with api_server(url, workdir) as server:
                host = f"127.0.0.1:{server.port}"
                check_state_path(server.base, devices[0], etag)
                health_requests = [f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()]
                state_requests = [
                    (f"GET /api/v1/device/{d.uuid}/state HTTP/1.1\r\nHost: {host}\r\n"
                     f"X-Device-API-Key: {d.api_key}\r\nIf-None-Match: \"{etag}\"\r\n\r\n").encode()
                    for d in devices
                ]
                load = {"processes": args.processes, "connections": args.connections, "warmup": args.warmup,
                        "duration": args.duration}
                print(f"load: {args.processes} client process(es) x {args.connections} keep-alive connections, "
                      f"{args.warmup:g} s warm-up + {args.duration:g} s per endpoint; server: 1 uvicorn worker; "
                      f"{os.cpu_count()} CPU cores shared by client and server")
                trivial = run_phase(server, health_requests, **load)
                cold_ok, cold_rate = asyncio.run(first_polls(server.base, devices, etag))
                state = run_phase(server, state_requests, **load)
                started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        print()
        print(f"results ({backend}, {len(devices):,} devices, {started_at})")
        print(describe("GET /health (trivial)", trivial))
        print(f"first poll of each device (cache fill from the database; httpx client, a lower bound): "
              f"{cold_rate:,.0f} req/s, "
              f"{cold_ok:,}/{len(devices):,} answered 304")
        print(describe("GET /api/v1/device/{uuid}/state -> 304", state))
        ratio = state.rate / trivial.rate if trivial.rate else 0.0
        print(f"304 path / trivial endpoint: {ratio:.1%} (target >= 50%)")
        ok = (cold_ok == len(devices) and set(state.statuses) == {304} and set(trivial.statuses) == {200}
              and not state.errors and not trivial.errors and state.requests > 0)
        if not ok:
            print("FAILED: not every response had the expected status (state 304, health 200)", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
