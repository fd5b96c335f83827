"""End to end: a real agent provisions with the real cloud, which gets the device's configuration from the real
certificate manager; the agent stores it and its OpenVPN client (in a device network namespace) connects to a
real OpenVPN server using the same PKI, with the fixed address the certificate manager gave the device."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iotistic.agent.main import Agent
from iotistic.vpn.pki import Pki
from tests.agent.conftest import DockerEngine, free_port
from tests.agent.conftest_cloud import AgentEnv, CloudAdmin, CloudServer
from tests.conftest import LicenseKeys, make_settings
from tests.vpn.conftest import PASSPHRASE
from tests.vpn.netns import SERVER_UNDERLAY, NetLab
from tests.vpn.test_cloud_vpn import CUSTOMER, SERVICE_TOKEN, CertManagerServer, cert_manager_settings

pytest_plugins = ["tests.agent.conftest_cloud"]


@pytest.fixture
def manager(lab_pki: Pki, tmp_path: Path) -> Iterator[CertManagerServer]:
    """The certificate manager over the lab's PKI (the one the OpenVPN server in the lab uses)."""
    server = CertManagerServer(cert_manager_settings(tmp_path / "vpn", VPN_PKI_DIR=str(lab_pki.paths.root)),
                               free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cloud(cloud_template_db: Path, tmp_path: Path, license_keys: LicenseKeys, manager: CertManagerServer
          ) -> Iterator[CloudServer]:
    """The cloud API with VPN on, pointed at the certificate manager."""
    data = tmp_path / "cloud"
    data.mkdir()
    db = data / "cloud.db"
    shutil.copy(cloud_template_db, db)
    settings = make_settings(f"sqlite+aiosqlite:///{db}", data, license_keys, VPN_ENABLED="true",
                             VPN_CERT_MANAGER_URL=manager.url, VPN_SERVICE_TOKEN=SERVICE_TOKEN,
                             VPN_CERT_MANAGER_TIMEOUT_SECONDS=3)
    server = CloudServer(settings, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def run_agent(admin: CloudAdmin, agent_env: AgentEnv, engine: DockerEngine, netlab: NetLab, lab_pki: Pki
                    ) -> AsyncIterator[Callable[[], Awaitable[Agent]]]:
    """Starts the lab's OpenVPN server and a provisioning agent whose VPN client runs in a device namespace."""
    agents: list[tuple[Agent, asyncio.Task[None]]] = []

    async def start() -> Agent:
        server_ns = await asyncio.to_thread(netlab.server_namespace)
        await asyncio.to_thread(netlab.start_server, server_ns, lab_pki, PASSPHRASE)
        device_ns = await asyncio.to_thread(netlab.device_namespace)
        key = await admin.provisioning_key()
        settings = agent_env.settings(
            PROVISIONING_KEY=key["key"], DOCKER_HOST=engine.base_url, DEVICE_API_PORT=free_port(),
            VPN_ENABLED="true", VPN_SERVER_HOST=str(SERVER_UNDERLAY), VPN_COMMAND_PREFIX=f"ip netns exec {device_ns}",
            VPN_BACKOFF_BASE_SECONDS="0.5", VPN_BACKOFF_MAX_SECONDS="2")
        agent = Agent(settings, reconcile_interval=5.0)
        agents.append((agent, asyncio.create_task(agent.run())))
        return agent

    yield start
    for agent, task in agents:
        agent.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def vpn_status(agent: Agent) -> dict[str, Any]:
    if agent.api_address is None:
        return {}
    async with httpx.AsyncClient(base_url=f"http://{agent.api_address}", timeout=10,
                                 headers={"X-API-Key": agent.identity.local_api_key}) as client:
        response = await client.get("/v2/device/vpn")
    assert response.status_code == 200, response.text
    return dict(response.json()["vpn"])


async def wait_connected(agent: Agent, seconds: float) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    while True:
        status = await vpn_status(agent)
        if status.get("connected"):
            return status, time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"the agent's VPN did not connect within {seconds:.0f} s: {status}")
        await asyncio.sleep(0.1)


async def test_registered_agent_connects_with_the_configuration_from_the_cloud(
        run_agent: Callable[[], Awaitable[Agent]], manager: CertManagerServer, cloud: CloudServer) -> None:
    agent = await run_agent()
    status, took = await wait_connected(agent, 40)
    print(f"\nagent start (provisioning included) to VPN connected: {took:.2f} s")
    device_uuid = agent.identity.uuid
    (certificate,) = manager.certificates(device_uuid)
    assert certificate.record.common_name == f"device-{device_uuid}-{CUSTOMER}"
    assert status["tunnelAddress"] == certificate.record.address
    assert status["server"] == f"{SERVER_UNDERLAY}:1194"
    # It came with the registration reply (no separate ask), and is stored privately.
    assert cloud.device_calls("GET", "/vpn") == []
    path = agent.settings.vpn_config_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "<key>" in path.read_text()


async def test_agent_registered_while_the_certificate_manager_was_down_connects_once_it_is_back(
        run_agent: Callable[[], Awaitable[Agent]], manager: CertManagerServer, cloud: CloudServer) -> None:
    manager.stop()
    agent = await run_agent()
    deadline = time.monotonic() + 30
    while "from the cloud" not in ((waiting := await vpn_status(agent)).get("lastError") or ""):
        assert time.monotonic() < deadline, f"the agent did not ask the cloud for its VPN configuration: {waiting}"
        await asyncio.sleep(0.1)
    assert agent.identity.provisioned and waiting["state"] == "no_config"
    assert "waiting for the VPN configuration from the cloud" in waiting["lastError"]
    assert "HTTP 503" in waiting["lastError"]
    assert not agent.settings.vpn_config_file.exists()
    await asyncio.sleep(1)
    assert len(cloud.device_calls("GET", "/vpn")) >= 1  # it keeps asking

    await asyncio.to_thread(manager.start)
    status, took = await wait_connected(agent, 30)
    print(f"\ncertificate manager back to agent connected: {took:.2f} s")
    (certificate,) = manager.certificates(agent.identity.uuid)
    assert status["tunnelAddress"] == certificate.record.address
    assert cloud.device_calls("GET", "/vpn")[-1].status == 200
