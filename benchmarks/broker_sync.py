"""Benchmark: Mosquitto enforcing 10,000 device accounts (+ a few service accounts) kept in the database.

    .venv/bin/python benchmarks/broker_sync.py                     # PostgreSQL on 127.0.0.1:5432 (throwaway db)
    .venv/bin/python benchmarks/broker_sync.py --sqlite            # SQLite in a temp dir
    .venv/bin/python benchmarks/broker_sync.py --devices 10000 --connected 10000

What it does, in one run:
1. creates a fresh database (dropped afterwards), migrates it and inserts N device accounts (username = uuid,
   rule iot/device/<uuid>/# readwrite, `$7$` hashes as the API stores them) and a few service accounts;
2. times the sync's pieces: the change-marker query it polls, reading all accounts, rendering both files,
   writing them (temp file, fsync, rename) and a whole pass that finds nothing changed;
3. starts a private Mosquitto with the project's config (deploy/mosquitto/mosquitto.conf) and the rendered files,
   and measures the reload pause: a client doing back-to-back publish -> receive round trips on its own topic
   (TCP_NODELAY, QoS 0) records every round trip while the broker is sent SIGHUP, first with only that client,
   then with --connected devices connected (Mosquitto re-checks every connected client's password on reload);
4. runs the long-lived sync (0.5 s poll) beside it and measures, from the database commit, the time until
   (a) a disabled account's live connection is dropped and (b) a newly inserted account can connect.

Device accounts are inserted directly into mqtt_accounts/mqtt_acl_rules (the sync reads nothing else), and the
changes of step 4 are plain UPDATE/INSERT statements, as the API's own transactions make them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import socket
import statistics
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import fresh_database  # benchmarks/common.py
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from iotistic.broker.files import render
from iotistic.broker.sync import BrokerSync, ChangeMarker, load_accounts, write_files
from iotistic.broker.testing import PrivateMosquitto
from iotistic.cloud.migrate import upgrade
from iotistic.cloud.models import MqttAccount, MqttAclRule
from iotistic.core.db import make_engine
from iotistic.core.security import GENERATED_SECRET_PBKDF2_ITERATIONS, mosquitto_password_hash

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-device-password-0123456789"  # every device shares it: the hashes (own salts) cost the same
SERVICES = [("ingest", [("iot/device/+/sensor/#", "read"), ("iot/device/+/metrics", "read"),
                        ("iot/device/+/state", "read"), ("iot/device/+/logs/+", "read"),
                        ("iot/device/+/status", "read")]),
            ("jobs", [("iot/device/+/jobs/#", "readwrite")]),
            ("shadow", [("iot/device/+/shadow/#", "readwrite")]),
            ("exporter", [("$SYS/#", "read")]),
            ("bridge", [("export/#", "write")])]


# Database ----------------------------------------------------------------------------------------------------------

async def populate(engine: AsyncEngine, devices: int,
                   iterations: int = GENERATED_SECRET_PBKDF2_ITERATIONS) -> list[str]:
    """N device accounts (hashed with `iterations`) and the service accounts, in bulk. Returns the device usernames."""
    usernames = [uuid.uuid4().hex for _ in range(devices)]
    chunk = 2000
    async with engine.begin() as conn:
        for start in range(0, devices, chunk):
            batch = usernames[start:start + chunk]
            ids = (await conn.execute(
                insert(MqttAccount).returning(MqttAccount.id),
                [{"username": u, "password_hash": mosquitto_password_hash(PASSWORD, iterations=iterations),
                  "kind": "device",
                  "is_active": True} for u in batch])).scalars().all()
            await conn.execute(insert(MqttAclRule), [{"account_id": i, "topic": f"iot/device/{u}/#",
                                                      "access": "readwrite"} for i, u in zip(ids, batch, strict=True)])
        for name, rules in SERVICES:
            account_id = (await conn.execute(insert(MqttAccount).returning(MqttAccount.id), [{
                "username": name, "password_hash": mosquitto_password_hash(PASSWORD), "kind": "service",
                "is_active": True}])).scalar_one()
            await conn.execute(insert(MqttAclRule), [{"account_id": account_id, "topic": t, "access": a}
                                                     for t, a in rules])
    return usernames


# A minimal MQTT 3.1.1 client on raw sockets (thousands of idle connections without thousands of threads) -----------

def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _packet(kind: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([kind]) + bytes(encoded) + body


def connect_packet(username: str, password: str, client_id: str) -> bytes:
    # Protocol level 4, flags: username, password, clean session; keepalive 0 (idle clients send nothing).
    return _packet(0x10, _string(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 0) + _string(client_id.encode())
                   + _string(username.encode()) + _string(password.encode()))


async def mqtt_connect(port: int, username: str, password: str) -> tuple[asyncio.StreamReader,
                                                                          asyncio.StreamWriter, int]:
    """Returns the open connection and the CONNACK return code (0: accepted)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect_packet(username, password, f"b-{uuid.uuid4().hex[:16]}"))
    connack = await reader.readexactly(4)
    return reader, writer, connack[3]


class Pinger(threading.Thread):
    """Back-to-back QoS 0 round trips on its own topic, on a blocking socket, recording (sent_at, rtt)."""

    def __init__(self, port: int, username: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(username, PASSWORD, f"pinger-{uuid.uuid4().hex[:8]}"))
        assert self._read_packet()[1][1] == 0, "pinger refused"
        self.topic = f"iot/device/{username}/ping".encode()
        self.sock.sendall(_packet(0x82, struct.pack("!H", 1) + _string(self.topic) + b"\x00"))
        assert self._read_packet()[0] == 0x90
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the pinger's connection")
            data += chunk
        return data

    def _read_packet(self) -> tuple[int, bytes]:
        kind = self._read_exactly(1)[0] & 0xF0
        multiplier, length = 1, 0
        while True:
            byte = self._read_exactly(1)[0]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                break
        return kind, self._read_exactly(length)

    def run(self) -> None:
        publish = _packet(0x30, _string(self.topic) + b"x")
        while not self.stop.is_set():
            sent = time.perf_counter()
            self.sock.sendall(publish)
            while self._read_packet()[0] != 0x30:
                pass
            self.samples.append((sent, time.perf_counter() - sent))

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.sock.close()


def reload_pauses(pinger: Pinger, mosquitto: PrivateMosquitto, reloads: int) -> tuple[float, list[float]]:
    """(median round trip while quiet, longest round trip around each SIGHUP)."""
    time.sleep(0.5)
    quiet_from = time.perf_counter()
    time.sleep(0.5)
    marks = []
    for _ in range(reloads):
        marks.append(time.perf_counter())
        mosquitto.reload()
        time.sleep(1.0)
    quiet = [rtt for sent, rtt in pinger.samples if quiet_from <= sent < marks[0]]
    worst = [max((rtt for sent, rtt in pinger.samples if mark - 0.2 <= sent < mark + 0.9), default=float("nan"))
             for mark in marks]
    return statistics.median(quiet), worst


# Measurements ------------------------------------------------------------------------------------------------------

async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return times


def ms(values: list[float] | float) -> str:
    if isinstance(values, float):
        return f"{values * 1000:.2f} ms"
    return f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(None if args.sqlite else args.database_url, Path(tmp)) as url:
            await asyncio.to_thread(upgrade, url)
            engine = make_engine(url)
            try:
                await run(engine, url, args)
            finally:
                await engine.dispose()


async def run(engine: AsyncEngine, url: str, args: argparse.Namespace) -> None:
    backend = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    start = time.perf_counter()
    usernames = await populate(engine, args.devices, args.hash_iterations)
    print(f"{backend}: {args.devices:,} device accounts ($7$ hashes, {args.hash_iterations} PBKDF2 iterations) + "
          f"{len(SERVICES)} service accounts inserted in {time.perf_counter() - start:.1f} s")

    # The sync's pieces, without a broker.
    marker = ChangeMarker(engine)
    marker_times = await timed(marker.read, 50)
    await marker.close()
    load_times = await timed(lambda: load_accounts(engine), 10)
    accounts = await load_accounts(engine)
    render_times = []
    for _ in range(10):
        t = time.perf_counter()
        files = render(accounts)
        render_times.append(time.perf_counter() - t)

    with PrivateMosquitto() as mosquitto:
        target = mosquitto.target
        write_times = []
        for i in range(10):  # alternate a comment so every write really replaces the file
            changed = dataclasses.replace(files, password_file=files.password_file + "#" * (i % 2))
            t = time.perf_counter()
            assert await asyncio.to_thread(write_files, target, changed)
            write_times.append(time.perf_counter() - t)
        sync = BrokerSync(engine, target)
        await sync.sync_once()
        idle_pass = await timed(sync.sync_once, 10)
        print(f"password_file {len(files.password_file.encode()) / 1e6:.2f} MB, {files.accounts:,} accounts; "
              f"acl_file {len(files.acl_file.encode()):,} bytes, {files.user_blocks} user blocks")
        print(f"  change marker query (polled every 0.5 s) {ms(marker_times)}")
        print(f"  read all accounts                         {ms(load_times)}")
        print(f"  render both files                         {ms(render_times)}")
        print(f"  write both (temp, fsync, rename)          {ms(write_times)}")
        print(f"  whole pass, nothing changed               {ms(idle_pass)}")

        mosquitto.start()
        pinger = Pinger(mosquitto.port, usernames[0])
        pinger.start()
        try:
            quiet, worst = await asyncio.to_thread(reload_pauses, pinger, mosquitto, args.reloads)
            print(f"SIGHUP reload, only the measuring client connected: round trip {ms(quiet)} when quiet; "
                  f"longest round trip around a reload {ms(worst)}")

            clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
            t = time.perf_counter()
            for start_at in range(1, 1 + args.connected, 500):
                batch = await asyncio.gather(*(mqtt_connect(mosquitto.port, u, PASSWORD)
                                               for u in usernames[start_at:start_at + 500]))
                assert all(rc == 0 for _r, _w, rc in batch)
                clients.extend((r, w) for r, w, _rc in batch)
            print(f"{len(clients):,} devices connected in {time.perf_counter() - t:.1f} s")
            quiet, worst = await asyncio.to_thread(reload_pauses, pinger, mosquitto, args.reloads)
            print(f"SIGHUP reload with {len(clients):,} connected: round trip {ms(quiet)} when quiet; "
                  f"longest round trip around a reload {ms(worst)}")

            await end_to_end(engine, sync, mosquitto, usernames, clients, args.trials)
        finally:
            pinger.close()


async def end_to_end(engine: AsyncEngine, sync: BrokerSync, mosquitto: PrivateMosquitto, usernames: list[str],
                     clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], trials: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop))
    try:
        await asyncio.sleep(1.5)
        revoke, admit = [], []
        for i in range(trials):
            # (a) disable a connected device's account: how long until the broker drops it?
            reader, _writer = clients[-1 - i]
            victim = usernames[len(clients) - i]
            t0 = time.perf_counter()
            async with engine.begin() as conn:
                await conn.execute(update(MqttAccount).where(MqttAccount.username == victim).values(is_active=False))
            assert await asyncio.wait_for(reader.read(), 10) == b""  # EOF: the broker closed it
            revoke.append(time.perf_counter() - t0)
            await asyncio.sleep(0.3)

            # (b) a new account: how long until it may connect?
            newcomer = f"new-{uuid.uuid4().hex}"
            t0 = time.perf_counter()
            async with engine.begin() as conn:
                account_id = (await conn.execute(insert(MqttAccount).returning(MqttAccount.id), [{
                    "username": newcomer, "password_hash": mosquitto_password_hash(PASSWORD), "kind": "device",
                    "is_active": True}])).scalar_one()
                await conn.execute(insert(MqttAclRule), [{"account_id": account_id,
                                                          "topic": f"iot/device/{newcomer}/#", "access": "readwrite"}])
            while True:
                _r, writer, rc = await mqtt_connect(mosquitto.port, newcomer, PASSWORD)
                writer.close()
                if rc == 0:
                    break
                await asyncio.sleep(0.01)
            admit.append(time.perf_counter() - t0)
            await asyncio.sleep(0.3)
        print(f"end to end, database commit -> enforced ({trials} trials each, 0.5 s poll):")
        print(f"  account disabled -> its live connection dropped   {ms(revoke)}")
        print(f"  account inserted -> it can connect                {ms(admit)}")
    finally:
        stop.set()
        await task


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG),
                        help="PostgreSQL server (a throwaway database is created on it)")
    parser.add_argument("--sqlite", action="store_true", help="use a temporary SQLite file instead")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--connected", type=int, default=None,
                        help="devices connected during the second reload measurement (default: all)")
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--hash-iterations", type=int, default=GENERATED_SECRET_PBKDF2_ITERATIONS,
                        help="PBKDF2 iterations of the device hashes (default: what the API stores); Mosquitto "
                             "re-checks every connected client's password on reload")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    args.connected = min(args.devices - 1, args.connected if args.connected is not None else args.devices)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
