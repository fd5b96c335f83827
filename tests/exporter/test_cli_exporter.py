"""`iotistic exporter` as operators run it: a process serving /metrics, stopped with SIGTERM; `create-account`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from iotistic.broker.testing import free_port
from iotistic.cli import app as cli_app
from iotistic.cloud.migrate import upgrade
from iotistic.cloud.models import MqttAccount
from iotistic.core.db import make_engine, make_sessionmaker


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """The commands' database handling is the API's (tested on both backends there): SQLite."""
    return sqlite_url


def _env(app: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DB_", "MQTT_", "EXPORTER_", "CUSTOMER_ID", "LICENSE_", "IOTISTIC_"))}
    env.update(DATABASE_URL=app.state.ctx.settings.sqlalchemy_url, IOTISTIC_DATA_DIR=str(tmp_path / "data"),
               LOG_LEVEL="INFO", **extra)
    return env


def _exporter(*args: str) -> list[str]:
    return [sys.executable, "-m", "iotistic.cli", "exporter", *args]


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def _invoke(args: list[str], env: dict[str, str]) -> Any:
    """In-process (fast), with the given environment only for our variables."""
    return CliRunner().invoke(cli_app, ["exporter", *args], env=env)


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("DB_", "MQTT_", "EXPORTER_", "CUSTOMER_ID", "LICENSE_", "IOTISTIC_", "DATABASE_URL")):
            monkeypatch.delenv(key)


@pytest.fixture
def own_sqlite_url(tmp_path: Path) -> str:
    """A migrated database of the test's own (what the commands write must not reach other tests)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'instance.db'}"
    upgrade(url)
    return url


def test_create_account_prints_the_password_once_and_refuses_a_taken_name(
        own_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite_url = own_sqlite_url
    _clean_env(monkeypatch)
    env = {"DATABASE_URL": sqlite_url, "IOTISTIC_DATA_DIR": str(tmp_path)}
    done = _invoke(["create-account", "--username", "usage-exporter"], env)
    assert done.exit_code == 0, done.output
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert lines["EXPORTER_MQTT_USERNAME"] == "usage-exporter" and len(lines["EXPORTER_MQTT_PASSWORD"]) >= 32

    async def stored() -> MqttAccount | None:
        engine = make_engine(sqlite_url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await session.scalar(select(MqttAccount).where(MqttAccount.username == "usage-exporter"))
        finally:
            await engine.dispose()

    account = asyncio.run(stored())
    assert account is not None and account.kind == "service"
    assert [(r.topic, r.access) for r in account.rules] == [("$SYS/broker/#", "read")]
    assert lines["EXPORTER_MQTT_PASSWORD"] not in account.password_hash
    again = _invoke(["create-account", "--username", "usage-exporter"], env)
    assert again.exit_code == 1 and "exists" in again.output and "Traceback" not in again.output


def test_without_a_customer_id_it_says_so_and_exits_2(own_sqlite_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    done = _invoke([], {"DATABASE_URL": own_sqlite_url, "IOTISTIC_DATA_DIR": str(tmp_path)})  # no id, no licence
    assert done.exit_code == 2
    assert "no customer id: set CUSTOMER_ID" in done.output and "Traceback" not in done.output


async def test_the_process_serves_metrics_and_stops_on_sigterm(app: Any, tmp_path: Path) -> None:
    port = free_port()
    env = _env(app, tmp_path, CUSTOMER_ID="c00000000beef", EXPORTER_HOST="127.0.0.1", EXPORTER_PORT=str(port),
               EXPORTER_MQTT_LOCAL_ACCOUNT="false")
    log = tmp_path / "exporter.log"
    process = _spawn(_exporter(), env, log)
    try:
        deadline = time.monotonic() + 30
        body = ""
        async with httpx.AsyncClient(timeout=5) as client:
            while 'iotistic_devices_registered{customer="c00000000beef"} 0.0' not in body.splitlines():
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                try:
                    body = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 10) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
