"""The `iotistic` command, run for real: as a subprocess (like an operator would) or through Typer's runner."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from iotistic.cli import app
from iotistic.core.licensing import evaluate_license

PASSWORD = "correct-horse-battery-staple"
_SCRIPT = Path(sys.executable).parent / "iotistic"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "iotistic.cli"]
_CONFIG_VARS = ("DATABASE_URL", "DB_", "JWT_SECRET", "LICENSE_PUBLIC_KEY", "IOTISTIC_", "LOG_LEVEL", "METRICS_TOKEN",
                "PUBLIC_URL")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any of the platform's configuration, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_VARS)}
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env or clean_env(), cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --help ------------------------------------------------------------------------------------------------------------

def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    subcommands = getattr(command, "commands", None)  # a group (Typer vendors its own click)
    if subcommands:
        for name, sub in subcommands.items():
            paths += _command_paths(sub, (*prefix, name))
    return paths


COMMAND_PATHS = _command_paths(typer.main.get_command(app))


def test_the_required_commands_exist():
    assert {("up",), ("api",), ("db", "upgrade"), ("admin", "create"), ("license", "keygen"),
            ("license", "sign")} <= set(COMMAND_PATHS)


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "iotistic")
def test_help_works_for_every_command(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_of_the_installed_command():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for name in ("up", "api", "db", "admin", "license"):
        assert name in result.stdout


def test_loading_the_cli_does_not_import_the_cloud_stack():
    """`iotistic --help` stays fast, and a device with only the agent extra can load the module."""
    code = ("import sys, iotistic.cli; "
            "print([m for m in ('fastapi', 'sqlalchemy', 'alembic', 'uvicorn', 'asyncpg') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Licences ----------------------------------------------------------------------------------------------------------

def test_keygen_then_sign_gives_a_licence_the_cloud_accepts(tmp_path):
    keys = tmp_path / "keys"
    result = run("license", "keygen", "--out", str(keys))
    assert result.returncode == 0, result.stderr
    private, public = keys / "license-private.pem", keys / "license-public.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "BEGIN PUBLIC KEY" in public.read_text()

    result = run("license", "sign", "--private-key", str(private), "--customer-id", "cust_42",
                 "--plan", "professional", "--days", "30")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.count(".") == 2  # the JWT only, capturable with $(...)

    state = evaluate_license(token, public.read_text())
    assert state.mode == "licensed", state.reason
    assert (state.plan, state.customer_id, state.max_devices) == ("professional", "cust_42", 50)
    assert state.expires_at is not None and 29 * 86400 < state.expires_at - time.time() <= 30 * 86400

    trial = run("license", "sign", "--private-key", str(private), "--customer-id", "c", "--plan", "starter",
                "--trial").stdout.strip()
    state = evaluate_license(trial, public.read_text())
    assert state.mode == "licensed" and state.plan == "starter" and state.trial["isTrial"] is True


def test_keygen_does_not_overwrite_a_private_key(tmp_path):
    assert run("license", "keygen", "--out", str(tmp_path)).returncode == 0
    before = (tmp_path / "license-private.pem").read_text()
    result = run("license", "keygen", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "--force" in one_error_line(result)
    assert (tmp_path / "license-private.pem").read_text() == before


def test_unknown_plan_exits_2_with_one_line(tmp_path):
    run("license", "keygen", "--out", str(tmp_path))
    result = run("license", "sign", "--private-key", str(tmp_path / "license-private.pem"), "--customer-id", "c",
                 "--plan", "platinum")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown plan 'platinum'" in one_error_line(result)


def test_unreadable_or_invalid_private_key_exits_2(tmp_path):
    result = run("license", "sign", "--private-key", str(tmp_path / "missing.pem"), "--customer-id", "c",
                 "--plan", "starter")
    assert result.returncode == 2 and "missing.pem" in one_error_line(result)
    (tmp_path / "junk.pem").write_text("not a key")
    result = run("license", "sign", "--private-key", str(tmp_path / "junk.pem"), "--customer-id", "c",
                 "--plan", "starter")
    assert result.returncode == 2 and "not a usable RSA private key" in one_error_line(result)


# Configuration errors ------------------------------------------------------------------------------------------------

COMMANDS_READING_CONFIG = [["db", "upgrade"], ["api", "--port", "1"], ["up", "--port", "1"],
                           ["admin", "create", "--email", "a@example.com", "--password", PASSWORD]]


def _assert_config_error(result: subprocess.CompletedProcess[str], variable: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = one_error_line(result)
    assert line.startswith("error: ") and variable in line


@pytest.mark.parametrize("command", COMMANDS_READING_CONFIG, ids=lambda c: " ".join(c[:2]))
def test_every_command_reports_invalid_configuration_in_one_line(command, tmp_path):
    result = run(*command, env=clean_env(IOTISTIC_DATA_DIR=str(tmp_path), DATABASE_URL="mysql://x"), cwd=tmp_path)
    _assert_config_error(result, "DATABASE_URL")


@pytest.mark.parametrize("env", [{"DB_PORT": "not-a-port"}, {"DATABASE_URL": "sqlite:///x.db", "DB_HOST": "db"},
                                 {"LOG_LEVEL": "LOUD"}, {"LICENSE_PUBLIC_KEY": "/nonexistent/key.pem"}],
                         ids=["bad-port", "two-databases", "log-level", "missing-public-key"])
def test_invalid_configuration_is_one_line_and_exit_2(env, tmp_path):
    result = run("db", "upgrade", env=clean_env(IOTISTIC_DATA_DIR=str(tmp_path), **env), cwd=tmp_path)
    _assert_config_error(result, next(iter(env)))


# Database and users ------------------------------------------------------------------------------------------------

async def _login(data_dir: Path, email: str, password: str) -> httpx.Response:
    from iotistic.cloud.app import create_app
    from iotistic.core.settings import load_cloud_settings

    settings = load_cloud_settings(IOTISTIC_DATA_DIR=str(data_dir),
                                   DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'iotistic.db'}")
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            r = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
            if r.status_code == 200:
                me = await client.get("/api/v1/auth/me",
                                      headers={"Authorization": f"Bearer {r.json()['access_token']}"})
                assert me.status_code == 200, me.text
                return me
            return r
    finally:
        await application.state.ctx.engine.dispose()


def test_db_upgrade_then_admin_create_gives_a_user_who_can_log_in(tmp_path):
    data = tmp_path / "data"
    env = clean_env(IOTISTIC_DATA_DIR=str(data))

    result = run("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
    assert (data / "iotistic.db").is_file()
    assert run("db", "upgrade", env=env).returncode == 0  # idempotent

    result = run("admin", "create", "--email", "Owner@Example.com", "--password", PASSWORD, env=env)
    assert result.returncode == 0, result.stderr
    assert "owner@example.com" in result.stdout and PASSWORD not in result.stdout + result.stderr

    me = asyncio.run(_login(data, "owner@example.com", PASSWORD))
    assert me.status_code == 200 and me.json()["role"] == "owner"

    result = run("admin", "create", "--email", "viewer@example.com", "--password", PASSWORD, "--role", "viewer",
                 env=env)
    assert result.returncode == 0, result.stderr
    assert asyncio.run(_login(data, "viewer@example.com", PASSWORD)).json()["role"] == "viewer"
    assert asyncio.run(_login(data, "viewer@example.com", "wrong-password-123")).status_code == 401


def test_duplicate_and_invalid_users_fail_cleanly(tmp_path):
    env = clean_env(IOTISTIC_DATA_DIR=str(tmp_path))
    assert run("db", "upgrade", env=env).returncode == 0
    assert run("admin", "create", "--email", "a@example.com", "--password", PASSWORD, env=env).returncode == 0

    duplicate = run("admin", "create", "--email", "A@example.com", "--password", PASSWORD, env=env)
    assert duplicate.returncode == 1
    assert "exists" in one_error_line(duplicate)

    weak = run("admin", "create", "--email", "b@example.com", "--password", "short", env=env)
    assert weak.returncode == 2
    assert "password" in one_error_line(weak)

    bad_email = run("admin", "create", "--email", "not-an-email", "--password", PASSWORD, env=env)
    assert bad_email.returncode == 2
    assert "not a valid email" in one_error_line(bad_email)

    bad_role = run("admin", "create", "--email", "c@example.com", "--password", PASSWORD, "--role", "root",
                   env=env)
    assert bad_role.returncode == 2


def test_admin_create_on_an_unmigrated_database_says_what_to_run(tmp_path):
    result = run("admin", "create", "--email", "a@example.com", "--password", PASSWORD,
                 env=clean_env(IOTISTIC_DATA_DIR=str(tmp_path)))
    assert result.returncode == 1
    assert "iotistic db upgrade" in one_error_line(result)


def test_api_refuses_an_unmigrated_database(tmp_path):
    result = run("api", "--host", "127.0.0.1", "--port", str(free_port()),
                 env=clean_env(IOTISTIC_DATA_DIR=str(tmp_path)))
    assert result.returncode == 1
    assert "iotistic db upgrade" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_db_upgrade_against_an_unreachable_database_is_one_line(tmp_path):
    result = run("db", "upgrade", env=clean_env(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/x"))
    assert result.returncode == 1
    assert "unreachable" in one_error_line(result) or "failed" in one_error_line(result)


# iotistic up ---------------------------------------------------------------------------------------------------------

class RunningUp:
    def __init__(self, cwd: Path, port: int, mqtt_port: int | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.mqtt_port = free_port() if mqtt_port is None else mqtt_port
        self.stderr = open(cwd / f"up-{port}.log", "w")  # closed in stop()
        self.proc = subprocess.Popen([*CLI, "up", "--port", str(port), "--mqtt-port", str(self.mqtt_port)],
                                     cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"iotistic up exited with {self.proc.returncode}"
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("iotistic up did not answer /health in time")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.stderr.close()
        return out


def test_up_migrates_serves_and_explains_the_first_user(tmp_path):
    port = free_port()
    up = RunningUp(tmp_path, port)
    try:
        up.wait_healthy()
        docs = httpx.get(f"{up.base}/docs", timeout=5)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert httpx.get(f"{up.base}/openapi.json", timeout=5).status_code == 200
        assert httpx.get(f"{up.base}/ready", timeout=5).status_code == 200
    finally:
        out = up.stop()
    assert (tmp_path / ".iotistic" / "iotistic.db").is_file()  # the embedded default: SQLite under ./.iotistic/
    assert f"http://127.0.0.1:{port}" in out
    assert f"http://127.0.0.1:{port}/docs" in out
    assert "admin create --email" in out and "--role owner" in out

    # Once a user exists, `up` no longer prints the first-user instructions.
    assert run("admin", "create", "--email", "o@example.com", "--password", PASSWORD, cwd=tmp_path).returncode == 0
    up = RunningUp(tmp_path, free_port())
    try:
        up.wait_healthy()
    finally:
        out = up.stop()
    assert "admin create" not in out
    assert "Users:" in out


def test_up_serves_an_embedded_mqtt_broker_that_knows_registered_devices(tmp_path):
    """The embedded default is a whole platform: a device registered through the API logs in to the in-process
    broker with the credentials the registration returned, and only those; what it publishes is stored."""
    import paho.mqtt.client as mqtt

    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    assert run("admin", "create", "--email", "o@example.com", "--password", PASSWORD, cwd=tmp_path).returncode == 0
    up = RunningUp(tmp_path, free_port())
    try:
        up.wait_healthy()
        token = httpx.post(f"{up.base}/api/v1/auth/login", json={"email": "o@example.com", "password": PASSWORD},
                           timeout=10).json()["access_token"]
        key = httpx.post(f"{up.base}/api/v1/provisioning-keys", json={}, timeout=10,
                         headers={"Authorization": f"Bearer {token}"}).json()["key"]
        device_uuid = "0123456789abcdef0123456789abcdef"
        r = httpx.post(f"{up.base}/api/v1/device/register", timeout=10, headers={"Authorization": f"Bearer {key}"},
                       json={"uuid": device_uuid, "deviceName": "pi", "deviceType": "rpi4",
                             "deviceApiKey": "k" * 40})
        assert r.status_code == 201, r.text
        creds = r.json()["mqtt"]
        assert creds["broker"] == f"mqtt://127.0.0.1:{up.mqtt_port}" and creds["username"] == device_uuid

        def connect(password: str) -> tuple[Any, Any]:
            """(client, CONNACK reason code; None if the broker closed the connection without one)."""
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"c-{password[:4]}")
            client.username_pw_set(device_uuid, password)
            answer: list[Any] = []
            client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
            client.on_disconnect = lambda *_args: answer.append(None)
            client.connect("127.0.0.1", up.mqtt_port)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not answer:
                client.loop(timeout=0.1)
            assert answer, "no CONNACK and no disconnect within 10 s"
            return client, answer[0]

        good, reason = connect(creds["password"])
        assert reason is not None and not reason.is_failure and good.is_connected()
        received: list[bytes] = []
        good.on_message = lambda _c, _u, msg: received.append(msg.payload)
        topic = f"iot/device/{device_uuid}/sensor/temperature"
        good.subscribe(topic, qos=1)
        for _ in range(20):
            good.loop(timeout=0.1)
        good.publish(topic, b"21.5", qos=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not received:
            good.loop(timeout=0.1)
        assert received == [b"21.5"]
        good.disconnect()

        # Ingest runs inside `up`: the reading is stored and served by the API.
        stored: list[Any] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not stored:
            stored = httpx.get(f"{up.base}/api/v1/devices/{device_uuid}/telemetry/metrics", timeout=5,
                               headers={"Authorization": f"Bearer {token}"}).json()
            time.sleep(0.2)
        assert [(m["metric"], m["value"]) for m in stored] == [("temperature", 21.5)]

        bad, reason = connect("not-the-password")
        assert (reason is None or reason.is_failure) and not bad.is_connected()
    finally:
        out = up.stop()
    assert f"mqtt://127.0.0.1:{up.mqtt_port}" in out
