"""`iotistic agent` and its subcommands, run for real as subprocesses (like an operator would) in local mode on a
real Docker engine: apply with no agent running, the agent adopting what runs, apply/status/deprovision through
the running agent, one agent per data folder, SIGTERM, factory reset; and the agent commands never importing the
cloud's code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from iotistic.agent.instance import InstanceLock
from tests.docker_engine import DockerEngine, free_port

_SCRIPT = Path(sys.executable).parent / "iotistic"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "iotistic.cli"]
APP_ID = 23


def agent_env(data_dir: Path, engine: DockerEngine, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CLOUD_API_ENDPOINT", "PROVISIONING_KEY", "DEVICE_API_HOST", "DEVICE_API_PORT")}
    env.update(AGENT_DATA_DIR=str(data_dir), DOCKER_HOST=engine.base_url, DEVICE_API_PORT=str(free_port()),
               LOG_LEVEL="WARNING", **extra)
    return env


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "agent", *args], env=env, capture_output=True, text=True, timeout=180,
                          input=stdin, check=False)


def status(env: dict[str, str]) -> dict[str, Any]:
    result = run(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def target(engine: DockerEngine, worker_env: str = "1") -> dict[str, Any]:
    return {"apps": {str(APP_ID): {"appId": APP_ID, "appName": "cli", "services": [
        {"serviceId": 1, "serviceName": "web", "config": {"image": engine.image}},
        {"serviceId": 2, "serviceName": "worker", "config": {"image": engine.image,
                                                             "environment": {"GENERATION": worker_env}}},
    ]}}}


def containers(engine: DockerEngine) -> dict[str, tuple[str, str, str]]:
    """service name -> (container id, status, StartedAt)."""
    found = {}
    for c in engine.api.containers(all=True, filters={"label": f"io.iotistic.app-id={APP_ID}"}):
        state = engine.api.inspect_container(c["Id"])["State"]
        found[c["Labels"]["io.iotistic.service-name"]] = (c["Id"], state["Status"], state["StartedAt"])
    return found


def wait_for(check: Any, what: str, seconds: float = 60.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_apply_directly_then_through_the_running_agent_then_reset(engine: DockerEngine, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    env = agent_env(data, engine)
    target_file = tmp_path / "target.json"

    # No agent and no data yet: status says so, and still shows the engine.
    before = status(env)
    assert before["running"] is False and before["apply"]["services"] == [] and before["runtime"]["runtime"] == "docker"

    # apply with no agent running: saved and applied by the command itself.
    target_file.write_text(json.dumps(target(engine)))
    result = run(env, "apply", str(target_file))
    assert result.returncode == 0, result.stderr
    assert "applied directly" in result.stdout
    first = containers(engine)
    assert {name: c[1] for name, c in first.items()} == {"web": "running", "worker": "running"}
    offline = status(env)
    assert (offline["running"], offline["targetVersion"], offline["appliedVersion"]) == (False, 1, 1)
    assert offline["apply"]["pending"] == [] and offline["status"] == "applied"

    # The agent starts (`iotistic agent` execs into `python -m iotistic.agent`, same pid): it adopts the
    # containers without touching them.
    log = open(tmp_path / "agent.log", "wb")  # closed at the end
    agent = subprocess.Popen([*CLI, "agent"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        holder = wait_for(lambda: (InstanceLock(data).holder() or {}).get("api") and InstanceLock(data).holder(),
                          "the agent's Device API")
        assert holder["pid"] == agent.pid
        summary = wait_for(lambda: (s := status(env)).get("status") == "applied" and s, "the agent applied")
        assert summary["running"] is True and summary["pid"] == agent.pid and summary["appliedVersion"] == 1
        assert containers(engine) == first

        # A second agent on the same data folder refuses to start.
        second = subprocess.run([*CLI, "agent"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1 and "another agent" in second.stderr

        # apply through the running agent (from stdin): only the changed service is recreated.
        result = run(env, "apply", "-", "--json", stdin=json.dumps(target(engine, worker_env="2")))
        assert result.returncode == 0, result.stderr
        applied = json.loads(result.stdout)
        assert applied["result"] == "applied" and applied["targetVersion"] == applied["appliedVersion"] == 2
        now = containers(engine)
        assert now["web"] == first["web"] and now["worker"][0] != first["worker"][0]
        assert now["worker"][1] == "running"

        # deprovision through the agent: the identity is forgotten (a new one is made), the containers stay.
        result = run(env, "deprovision", "--yes", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["provisioned"] is False
        assert containers(engine) == now

        # SIGTERM: the agent stops cleanly and leaves the containers running.
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        assert containers(engine) == now and InstanceLock(data).holder() is None

        # Started again, then factory-reset through it: workloads and data gone, and the agent exits.
        agent = subprocess.Popen([*CLI, "agent"], env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: (InstanceLock(data).holder() or {}).get("api"), "the agent's Device API again")
        result = run(env, "factory-reset", "--yes", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["through"] == "agent"
        assert agent.wait(30) == 0
        assert containers(engine) == {}
        assert {p.name for p in data.iterdir()} <= {"agent.db", "agent.db-shm", "agent.db-wal"}
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        log.close()


def test_factory_reset_and_deprovision_without_an_agent(engine: DockerEngine, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    env = agent_env(data, engine)
    (tmp_path / "t.json").write_text(json.dumps(target(engine)))
    assert run(env, "apply", str(tmp_path / "t.json")).returncode == 0
    uuid = status(env)["uuid"]

    result = run(env, "deprovision", "--yes")
    assert result.returncode == 0, result.stderr
    assert status(env)["uuid"] is None and len(containers(engine)) == 2  # identity gone, containers kept

    refused = run(env, "factory-reset")
    assert refused.returncode == 2 and "--yes" in one_error_line(refused)
    result = run(env, "factory-reset", "--yes")
    assert result.returncode == 0, result.stderr
    assert containers(engine) == {}
    after = status(env)
    assert after["uuid"] is None and after["targetVersion"] is None and uuid


def test_bad_input_and_cloud_mode_are_one_line(engine: DockerEngine, tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", engine)
    bad = tmp_path / "bad.json"
    for content, mentions in (("{not json", "not JSON"),
                              ('{"apps": {"1": {"appId": 2, "appName": "x"}}}', "appId"),
                              ('{"apps": {}, "extra": 1}', "extra")):
        bad.write_text(content)
        result = run(env, "apply", str(bad))
        assert result.returncode == 2, result.stderr
        assert mentions in one_error_line(result)
    result = run(env, "apply", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "cannot read" in one_error_line(result)

    bad.write_text('{"apps": {}}')
    cloud = {**env, "CLOUD_API_ENDPOINT": "http://127.0.0.1:9"}
    result = run(cloud, "apply", str(bad))
    assert result.returncode == 2 and "cloud" in one_error_line(result)
    result = run({**env, "DEVICE_API_PORT": "not-a-port"}, "status")
    assert result.returncode == 2 and "DEVICE_API_PORT" in one_error_line(result)
    assert not (tmp_path / "agent" / "agent.db").exists()  # nothing of that created a device


def test_the_agent_commands_never_import_the_cloud(engine: DockerEngine, tmp_path: Path) -> None:
    """With only `iotistic[agent]` installed there is no SQLAlchemy, Alembic or cloud package: the agent commands
    must work without them (the agent's own run is `python -m iotistic.agent`, covered by the import contract)."""
    code = """
import sys
from importlib.abc import MetaPathFinder
class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sqlalchemy", "alembic", "asyncpg", "aiosqlite", "argon2") or \\
                name.startswith(("iotistic.cloud", "iotistic.migrations")):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
from iotistic.cli import app
sys.argv = ["iotistic", "agent", *sys.argv[1:]]
app()
"""
    env = agent_env(tmp_path / "agent", engine)
    (tmp_path / "t.json").write_text('{"apps": {}}')
    for args in (["status", "--json"], ["apply", str(tmp_path / "t.json")], ["deprovision", "--yes"],
                 ["factory-reset", "--yes"], ["--help"]):
        result = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, (args, result.stderr)
