"""The VPN supervisor's own duties, with the real `openvpn` binary but no tunnel: a client that cannot reach a
server (it only sends UDP to a closed loopback port), a binary that is missing, a configuration it refuses, a
configuration that arrives later, and stopping (the client never outlives its supervisor)."""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from iotistic.agent.settings import AgentSettings, load_agent_settings
from iotistic.agent.vpn.files import save_config
from iotistic.agent.vpn.supervisor import VpnSupervisor
from tests.agent.conftest import free_port
from tests.vpn.conftest import make_pki

Config = Callable[[int], str]


@pytest.fixture(scope="module")
def client_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A device's real .ovpn (from iotistic.vpn's PKI) pointed at a loopback port where no server listens."""
    pki = make_pki(tmp_path_factory.mktemp("pki") / "pki")
    bundle = pki.issue("supervised1", "custA")
    return lambda port: pki.client_config(bundle, "127.0.0.1", port)


def settings(tmp_path: Path, **env: Any) -> AgentSettings:
    values: dict[str, Any] = {"AGENT_DATA_DIR": str(tmp_path / "agent"), "VPN_ENABLED": "true",
                              "VPN_BACKOFF_BASE_SECONDS": "0.2", "VPN_BACKOFF_MAX_SECONDS": "0.4"}
    values.update(env)
    return load_agent_settings(**values)


async def until(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def runtime_dirs() -> set[Path]:
    return {p for p in Path(tempfile.gettempdir()).glob("iotistic-vpn-*") if not p.name.startswith("iotistic-vpn-lab")}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


Running = Callable[[AgentSettings], Awaitable[tuple[VpnSupervisor, asyncio.Event, "asyncio.Task[None]"]]]


@pytest.fixture
async def running() -> Any:
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(agent_settings: AgentSettings) -> tuple[VpnSupervisor, asyncio.Event, asyncio.Task[None]]:
        supervisor = VpnSupervisor(agent_settings)
        stop = asyncio.Event()
        task = asyncio.create_task(supervisor.run(stop))
        started.append((stop, task))
        return supervisor, stop, task

    yield start
    for stop, task in started:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 20)


async def test_a_client_that_cannot_connect_keeps_starting_and_stops_with_its_supervisor(
        tmp_path: Path, running: Running, client_config: Config) -> None:
    agent_settings = settings(tmp_path)
    save_config(agent_settings.vpn_config_file, client_config(free_port()))
    before = runtime_dirs()
    supervisor, stop, task = await running(agent_settings)
    await until(lambda: supervisor.tracker.pid is not None)
    pid = supervisor.tracker.pid
    assert pid is not None and alive(pid)
    # The client's copy of the configuration and its management socket sit in a folder only the agent can enter.
    (runtime,) = runtime_dirs() - before
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    await until(lambda: (runtime / "management.sock").exists())
    assert stat.S_IMODE((runtime / "client.ovpn").stat().st_mode) == 0o600
    status = supervisor.status()
    assert (status["state"], status["connected"]) == ("starting", False)
    assert status["server"].startswith("127.0.0.1:")
    assert status["configPath"] == str(agent_settings.vpn_config_file)
    stop.set()
    await asyncio.wait_for(task, 15)
    assert not alive(pid)
    assert supervisor.status()["state"] == "stopped"
    assert not runtime.exists()


async def test_a_cancelled_supervisor_takes_its_client_down(tmp_path: Path, running: Running,
                                                            client_config: Config) -> None:
    agent_settings = settings(tmp_path)
    save_config(agent_settings.vpn_config_file, client_config(free_port()))
    supervisor, _stop, task = await running(agent_settings)
    await until(lambda: supervisor.tracker.pid is not None)
    pid = supervisor.tracker.pid
    assert pid is not None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await until(lambda: not alive(pid), 10)


async def test_a_missing_binary_is_retried_with_backoff_and_reported(tmp_path: Path, running: Running,
                                                                     client_config: Config) -> None:
    agent_settings = settings(tmp_path, VPN_OPENVPN_BINARY=str(tmp_path / "no-openvpn-here"))
    save_config(agent_settings.vpn_config_file, client_config(free_port()))
    supervisor, _stop, _task = await running(agent_settings)
    await until(lambda: supervisor.tracker.restarts >= 2)
    status = supervisor.status()
    assert status["state"] in ("retrying", "starting") and status["connected"] is False
    assert f"cannot start {tmp_path / 'no-openvpn-here'}: No such file or directory" in status["lastError"]


async def test_a_refused_configuration_is_not_run(tmp_path: Path, running: Running, client_config: Config) -> None:
    agent_settings = settings(tmp_path)
    save_config(agent_settings.vpn_config_file, client_config(free_port()))
    # Replaced behind the agent's back by one with a script hook: it must not run.
    agent_settings.vpn_config_file.write_text(client_config(1194).replace("nobind", "up /bin/touch /tmp/x"))
    supervisor, _stop, _task = await running(agent_settings)
    await until(lambda: supervisor.tracker.last_error is not None)
    status = supervisor.status()
    assert status["state"] == "no_config" and status["pid"] is None
    assert "configuration refused" in status["lastError"] and "'up'" in status["lastError"]


async def test_a_configuration_that_arrives_later_is_picked_up(tmp_path: Path, running: Running,
                                                               client_config: Config) -> None:
    agent_settings = settings(tmp_path)
    supervisor, _stop, _task = await running(agent_settings)
    await until(lambda: supervisor.tracker.last_error is not None)
    assert supervisor.status()["state"] == "no_config"
    assert "no VPN configuration at" in supervisor.status()["lastError"]
    save_config(agent_settings.vpn_config_file, client_config(free_port()))
    supervisor.config_changed()
    await until(lambda: supervisor.tracker.pid is not None, 5)
    assert supervisor.status()["state"] == "starting"


async def test_disabled_supervisor_runs_nothing(tmp_path: Path, running: Running) -> None:
    supervisor, _stop, task = await running(settings(tmp_path, VPN_ENABLED="false"))
    await asyncio.wait_for(task, 5)
    assert supervisor.status()["state"] == "disabled" and supervisor.status()["configPath"] is None
