"""`iotistic ingest` as operators run it: a process beside Mosquitto, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from iotistic.broker.testing import until
from iotistic.cloud.models import MqttAccount, Telemetry
from iotistic.core import topics
from tests.mqtt_env import Broker, Devices


def _env(app: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "INGEST_", "MQTT_", "REDIS_"))}
    env.update(DATABASE_URL=app.state.ctx.settings.sqlalchemy_url, IOTISTIC_DATA_DIR=str(tmp_path / "data"),
               LOG_LEVEL="INFO", **extra)
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def _ingest(*args: str) -> list[str]:
    return [sys.executable, "-m", "iotistic.cli", "ingest", *args]


async def test_create_account_prints_the_password_once_and_refuses_a_taken_name(app: Any, tmp_path: Path) -> None:
    env = _env(app, tmp_path)
    done = await asyncio.to_thread(subprocess.run, _ingest("create-account", "--username", "ingest-workers"),
                                   env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert lines["INGEST_MQTT_USERNAME"] == "ingest-workers" and len(lines["INGEST_MQTT_PASSWORD"]) >= 32
    async with app.state.ctx.sessions() as session:
        account = await session.scalar(select(MqttAccount).where(MqttAccount.username == "ingest-workers"))
    assert account is not None and account.kind == "service"
    assert [(r.topic, r.access) for r in account.rules] == [(topics.INGEST_READ_FILTER, "read")]
    assert lines["INGEST_MQTT_PASSWORD"] not in account.password_hash
    again = await asyncio.to_thread(subprocess.run, _ingest("create-account", "--username", "ingest-workers"),
                                    env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr


async def test_the_worker_process_stores_readings_and_stops_cleanly_on_sigterm(
        app: Any, broker: Broker, devices: Devices, tmp_path: Path) -> None:
    env = _env(app, tmp_path, MQTT_BROKER_URL=f"mqtt://127.0.0.1:{broker.mosquitto.port}",
               INGEST_CLIENT_ID="cli-worker")
    log = tmp_path / "ingest.log"
    process = _spawn(_ingest(), env, log)
    try:
        # Its own account (no INGEST_MQTT_* set) reaches the broker through the sync; then it subscribes.
        assert await until(lambda: b"ingest: running" in log.read_bytes(), within=20), log.read_text()
        (uuid, password), = await devices(1)
        device = await broker.connect(uuid, password)
        ts = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()
        device.publish(topics.sensor_topic(uuid, "temperature"), json.dumps({"value": 19.5, "ts": ts}).encode())

        async def stored() -> list[float]:
            async with app.state.ctx.sessions() as session:
                return list((await session.scalars(select(Telemetry.value))).all())

        for _ in range(200):
            if await stored():
                break
            await asyncio.sleep(0.05)
        assert await stored() == [19.5]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "Traceback" not in text
    assert (tmp_path / "data" / "ingest-mqtt-password").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "ingest-mqtt-password").read_text() not in text
