"""End to end: the real cloud API (uvicorn on a loopback port) and the real agent (`Agent`, in this process) on a
real Docker engine (a private dockerd with busybox-only images).

One device's life: provisioned with a provisioning key; a two-service release deployed from the cloud to its
fleet; both containers running; the cloud shows the reported state with `appliedVersion` and the services'
output. Then the cloud goes away while the device changes (a service stopped and started again through the
Device API, logs written): nothing queued meanwhile is lost or reordered once the cloud is back. Finally the agent
restarts on the same data folder: no second provisioning, the containers are adopted (same ids, not restarted),
and no log line is shipped twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from iotistic.agent.main import Agent
from iotistic.agent.settings import AgentSettings
from tests.docker_engine import DockerEngine, free_port

if TYPE_CHECKING:
    from tests.agent.conftest_cloud import AgentEnv, CloudAdmin, CloudServer

pytest_plugins = ["tests.agent.conftest_cloud"]

APP_ID = 41
_SCRIPT = Path(sys.executable).parent / "iotistic"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "iotistic.cli"]


async def eventually(check: Callable[[], Awaitable[Any] | Any], what: str, seconds: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.2)


def release_target(engine: DockerEngine) -> dict[str, Any]:
    """Two services; each prints a line when it starts, so their logs show every start."""
    def service(service_id: int, name: str) -> dict[str, Any]:
        return {"serviceId": service_id, "serviceName": name,
                "config": {"image": engine.image, "command": ["sh", "-c", f"echo {name} started; sleep 100000"],
                           "environment": {"ROLE": name}}}

    return {"apps": {str(APP_ID): {"appId": APP_ID, "appName": "shop",
                                   "services": [service(1, "web"), service(2, "worker")]}}}


def containers(engine: DockerEngine) -> dict[str, dict[str, Any]]:
    """service name -> {id, status, startedAt} of the app's containers."""
    found = {}
    for c in engine.api.containers(all=True, filters={"label": f"io.iotistic.app-id={APP_ID}"}):
        state = engine.api.inspect_container(c["Id"])["State"]
        found[c["Labels"]["io.iotistic.service-name"]] = {"id": c["Id"], "status": state["Status"],
                                                        "startedAt": state["StartedAt"]}
    return found


def running(engine: DockerEngine) -> dict[str, str]:
    return {name: c["status"] for name, c in containers(engine).items()}


class RunningAgent:
    """An `Agent` run as a task, the way `iotistic agent` runs it."""

    def __init__(self, settings: AgentSettings) -> None:
        self.agent = Agent(settings, reconcile_interval=1.0)
        self.task = asyncio.create_task(self.agent.run())

    async def stop(self) -> None:
        self.agent.stop()
        await asyncio.wait_for(self.task, 30)

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://{self.agent.api_address}", timeout=60,
                                 headers={"X-API-Key": self.agent.identity.local_api_key})


@pytest.fixture
async def settings(admin: CloudAdmin, agent_env: AgentEnv, engine: DockerEngine) -> AgentSettings:
    fleet = await admin._ok("POST", "/api/v1/fleets", 201, json={"name": "shops"})
    key = await admin.provisioning_key(fleet=fleet["id"])
    return agent_env.settings(PROVISIONING_KEY=key["key"], DOCKER_HOST=engine.base_url,
                              DEVICE_API_PORT=free_port(), LOG_BATCH_SECONDS=0.3)


@pytest.fixture
async def device(settings: AgentSettings) -> AsyncIterator[RunningAgent]:
    running_agent = RunningAgent(settings)
    try:
        yield running_agent
    finally:
        with contextlib.suppress(Exception):
            await running_agent.stop()


async def cli_status(settings: AgentSettings, engine: DockerEngine) -> str:
    """`iotistic agent status` in a subprocess, without blocking this loop (the agent answers from it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CLOUD_API_ENDPOINT", "PROVISIONING_KEY")}
    env.update(AGENT_DATA_DIR=str(settings.data_dir), DOCKER_HOST=engine.base_url, COLUMNS="200")
    process = await asyncio.create_subprocess_exec(*CLI, "agent", "status", env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


def reports_after(cloud: CloudServer, index: int, uuid: str) -> list[dict[str, Any]]:
    """The state reports the cloud accepted from call number `index` on, in arrival order."""
    return [c.json()[uuid] for c in cloud.calls[index:]
            if c.method == "PATCH" and c.path == "/api/v1/device/state" and c.status == 204]


def services_of(report: dict[str, Any]) -> dict[str, str]:
    app = (report.get("apps") or {}).get(str(APP_ID)) or {}
    return {s["serviceName"]: s["status"] for s in app.get("services", [])}


async def test_provision_deploy_report_outage_and_restart(
    cloud: CloudServer, admin: CloudAdmin, engine: DockerEngine, settings: AgentSettings, device: RunningAgent,
) -> None:
    agent = device.agent

    # 1. Provisioning: the agent registers and exchanges keys while its Device API is already up.
    await eventually(lambda: agent.api_address, "the Device API")
    await eventually(lambda: agent.provision_status()["provisioned"] and agent.sync is not None, "provisioning")
    uuid = agent.identity.uuid
    assert (await admin.device(uuid) or {}).get("fleet", {}).get("name") == "shops"

    # 2. A two-service release, deployed to the device's fleet.
    release = await admin._ok("POST", "/api/v1/releases", 201,
                              json={"name": "shop 1.0", "fleet": "shops", "target": release_target(engine)})
    deployed = await admin._ok("POST", f"/api/v1/releases/{release['id']}/deploy", json={"fleet": "shops"})
    assert deployed["devices"] == [uuid]
    version = (await admin._ok("GET", f"/api/v1/devices/{uuid}/target-state"))["version"]

    # 3. Both containers run, and the cloud shows it with the applied version.
    await eventually(lambda: running(engine) == {"web": "running", "worker": "running"}, "both containers running")

    async def cloud_state_is(expected: dict[str, str]) -> bool:
        state = await admin.current_state(uuid) or {}
        return state.get("appliedVersion") == version and services_of(state) == expected

    await eventually(lambda: cloud_state_is({"web": "running", "worker": "running"}), "the reported state")
    state = await admin.current_state(uuid)
    assert state is not None and state["status"] == "applied"
    web = next(s for s in state["apps"][str(APP_ID)]["services"] if s["serviceName"] == "web")
    assert web["containerId"] == containers(engine)["web"]["id"] and web["image"] == engine.image

    async def cloud_logs(message: str) -> list[dict[str, Any]]:
        return [line for line in await admin.logs(uuid) if line["message"] == message]

    await eventually(lambda: cloud_logs("worker started"), "the worker's first line in the cloud")
    await eventually(lambda: cloud_logs("web started"), "the web's first line in the cloud")

    # `iotistic agent status` (another process) asks the running agent: what runs, and the cloud link.
    shown = await cli_status(settings, engine)
    for expected in (uuid, "running (pid", "cloud (" + cloud.url, "applied", f"target v{version}, applied v{version}",
                     "web", "worker", "Nothing pending.", "provisioned", "online", "0 item(s) queued"):
        assert expected in shown, (expected, shown)

    # 4. The cloud goes away; the device changes meanwhile: the worker stopped, then started again (it prints
    #    its line once more).
    cloud.stop()
    await eventually(lambda: agent.sync is not None and not agent.sync.status().online, "the agent noticing")
    calls_before_return = len(cloud.calls)
    async with device.api() as api:
        r = await api.post(f"/v2/applications/{APP_ID}/stop-service", json={"serviceName": "worker"})
        assert r.status_code == 200, r.text
        await eventually(lambda: running(engine)["worker"] == "exited", "the worker stopped")
        await eventually(lambda: any(services_of(p).get("worker") == "exited"
                                     for _, kind, p in agent.store.peek(1000) if kind == "report"),
                         "the stopped worker's report queued")
        r = await api.post(f"/v2/applications/{APP_ID}/start-service", json={"serviceName": "worker"})
        assert r.status_code == 200, r.text
    await eventually(lambda: running(engine)["worker"] == "running", "the worker running again")
    await eventually(lambda: any(services_of(p) == {"web": "running", "worker": "running"}
                                 for _, kind, p in agent.store.peek(1000) if kind == "report"),
                     "the running worker's report queued")
    await eventually(lambda: any(line.get("message") == "worker started"
                                 for _, kind, p in agent.store.peek(1000) if kind == "logs" for line in p),
                     "the worker's second line queued")
    queued = agent.store.peek(1000)
    queued_reports = [p for _, kind, p in queued if kind == "report"]
    queued_lines = [line for _, kind, p in queued if kind == "logs" for line in p]
    assert agent.sync is not None and not agent.sync.status().online
    assert len(cloud.calls) == calls_before_return  # nothing got through: it really was down

    # 5. The cloud is back: everything queued arrives, in order, and the current state is right again.
    cloud.start()
    await eventually(lambda: agent.store.outbox_size() == 0, "the outbox to drain")
    delivered = reports_after(cloud, calls_before_return, uuid)
    position = 0
    for report in queued_reports:  # each queued report arrived, in the order it was queued
        position = next((i for i in range(position, len(delivered)) if delivered[i] == report), -1) + 1
        assert position > 0, f"queued report not delivered: {report}"
    assert any(services_of(r).get("worker") == "exited" for r in delivered)
    assert agent.sync.status().outbox_dropped == 0 and agent.sync.status().rejected == 0
    stored = await admin.logs(uuid)
    for line in queued_lines:
        assert any(s["message"] == line["message"] and s["timestamp"].startswith(line["timestamp"][:19])
                   for s in stored), line
    assert len(await cloud_logs("worker started")) == 2
    await eventually(lambda: cloud_state_is({"web": "running", "worker": "running"}), "the state after the outage")

    # 6. The agent restarts on the same data folder: same device, no provisioning, containers adopted.
    before = containers(engine)
    await device.stop()
    registrations = len(cloud.device_calls("POST", "/register"))
    exchanges = len(cloud.device_calls("POST", "/key-exchange"))
    calls_at_restart = len(cloud.calls)
    restarted = RunningAgent(settings)
    try:
        again = restarted.agent
        assert again.identity.uuid == uuid
        await eventually(lambda: again.sync is not None and again.sync.status().online, "the restarted agent online")
        await eventually(lambda: again.applied_version == version and again.status_summary()["status"] == "applied",
                         "the restarted agent applied")
        await asyncio.sleep(2.5)  # a few reconcile rounds and log flushes
        assert containers(engine) == before  # same ids, same StartedAt: nothing was restarted
        assert len(cloud.device_calls("POST", "/register")) == registrations == 1
        assert len(cloud.device_calls("POST", "/key-exchange")) == exchanges == 1
        assert all(c.headers.get("x-device-api-key") for c in cloud.calls[calls_at_restart:])
        assert len(await cloud_logs("web started")) == 1  # no line shipped twice after the restart
        assert len(await cloud_logs("worker started")) == 2
        assert await cloud_state_is({"web": "running", "worker": "running"})
    finally:
        await restarted.stop()
