"""The running agent (`iotistic.agent.main.Agent`) in local mode: what survives a restart (crash-loop backoff, log
cursors), and what must not bring it down (no container engine, the Device API port taken, a second agent).

The Device API's behaviour over the agent is in test_device_api.py; the cloud side in tests/e2e.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from iotistic.agent.main import BACKOFF_KEY, LOG_CURSORS_KEY, Agent, AgentAlreadyRunning
from iotistic.agent.settings import AgentSettings, load_agent_settings
from iotistic.agent.state import ServiceKey
from iotistic.agent.store import AgentStore
from iotistic.core.schemas.target_state import TargetState
from tests.docker_engine import DockerEngine, free_port

APP_ID = 31


async def eventually(check: Callable[[], Any], what: str, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def settings_for(data_dir: Path, docker_host: str, **env: Any) -> AgentSettings:
    return load_agent_settings(AGENT_DATA_DIR=str(data_dir), DOCKER_HOST=docker_host,
                               DEVICE_API_PORT=env.pop("DEVICE_API_PORT", free_port()), LOG_BATCH_SECONDS=0.2,
                               CLOUD_API_ENDPOINT="", PROVISIONING_KEY="", **env)


@contextlib.asynccontextmanager
async def running(settings: AgentSettings) -> AsyncIterator[Agent]:
    agent = Agent(settings, reconcile_interval=0.5)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.sleep(0)
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)


def one_service(image: str, **config: Any) -> TargetState:
    return TargetState.model_validate({"apps": {str(APP_ID): {"appId": APP_ID, "appName": "t", "services": [
        {"serviceId": 1, "serviceName": "svc", "config": {"image": image, "restart": "no", **config}}]}}})


async def test_crash_backoff_and_log_cursors_survive_a_restart(engine: DockerEngine, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "agent", engine.base_url)
    key = ServiceKey(APP_ID, "svc")
    async with running(settings) as agent:
        await agent.set_local_target(one_service(engine.crash_image))
        status = await eventually(lambda: (s := agent.executor.status().service(*key)) and s.failures >= 2 and s,
                                  "two crashes counted")
        await eventually(lambda: len([e for e in agent.logs.recent() if e.message == "boom"]) >= 2, "the crash logs")
        assert all(e.is_stderr and e.service_name == "svc" for e in agent.logs.recent())
    store = AgentStore(settings.store_path)
    try:
        saved = store.get(BACKOFF_KEY)
        assert saved["crashes"][str(key)]["failures"] >= status.failures
        assert status.container_id in store.get(LOG_CURSORS_KEY)
    finally:
        store.close()

    # The restarted agent remembers the backoff (no immediate restart of a crash-looping service) and does not
    # read the container's old lines again.
    async with running(settings) as again:
        restored = await eventually(lambda: again.executor.status().service(*key), "the service's status")
        assert restored.failures >= status.failures and restored.retry_at is not None
        assert "crash-looping" in (restored.error or "")
        await asyncio.sleep(1.0)
        assert [e.message for e in again.logs.recent()].count("boom") <= 1  # at most the next crash's line


async def test_no_engine_no_crash(tmp_path: Path) -> None:
    """The engine's socket does not exist: the agent runs, says so, and stops cleanly."""
    settings = settings_for(tmp_path / "agent", f"unix://{tmp_path}/missing.sock")
    async with running(settings) as agent:
        await eventually(lambda: agent.api_address, "the Device API")
        await agent.set_local_target(one_service("local/whatever:1"))
        status = await eventually(lambda: (s := agent.executor.status()).last_error and s, "the engine error")
        assert "not reachable" in (status.last_error or "")
        summary = agent.status_summary()
        assert summary["status"] == "error" and summary["targetVersion"] == 1 and summary["appliedVersion"] is None


async def test_a_taken_port_and_a_second_agent(engine: DockerEngine, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(tmp_path / "agent", engine.base_url, DEVICE_API_PORT=port)
        async with running(settings) as agent:
            await agent.set_local_target(one_service(engine.image))
            await eventually(lambda: agent.applied_version == 1, "the target applied without a Device API")
            assert agent.api_address is None

            second = Agent(settings)
            with pytest.raises(AgentAlreadyRunning, match="another agent"):
                await second.run()
