"""The agent keeps a real OpenVPN client running: a real `Agent` (local mode, real Docker runtime) whose VPN
supervisor starts `openvpn` inside a device network namespace (VPN_COMMAND_PREFIX=`ip netns exec <ns>`, the
seam that places the client; nothing is stubbed), against a real OpenVPN server configured by iotistic.vpn in
the server namespace (tests/vpn/netns.py).

The device's `.ovpn` is what the certificate manager renders for a public server name; the device reaches the
server at its underlay address through VPN_SERVER_HOST, as a device behind a NAT or split DNS would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from iotistic.agent.main import Agent
from iotistic.agent.settings import load_agent_settings
from iotistic.agent.vpn.files import save_config
from iotistic.vpn.pki import DeviceBundle, Pki
from tests.agent.conftest import DockerEngine, free_port
from tests.vpn.conftest import PASSPHRASE
from tests.vpn.netns import SERVER_UNDERLAY, NetLab, OpenVpnServer

CUSTOMER = "custA"
PUBLIC_NAME = "vpn.iotistic.invalid"  # what the certificate manager writes into the .ovpn; never resolved here
SERVICE_PORT = 48500  # a listener on the server's tunnel address: traffic through the tunnel reaches it
RECONNECT_BOUND = 20.0  # seconds from the restarted server being up to the agent connected again
_SCRIPT = Path(sys.executable).parent / "iotistic"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "iotistic.cli"]


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> float:
    """Poll until `check()` is true; the seconds it took. Fails with `what` after `seconds`."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds:.0f} s: {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


@dataclass
class VpnDevice:
    lab: NetLab
    pki: Pki
    server: OpenVpnServer
    server_ns: str
    device_ns: str
    bundle: DeviceBundle
    agent: Agent
    task: asyncio.Task[None]
    restarts: int = 0

    async def vpn(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=f"http://{self.agent.api_address}", timeout=10,
                                     headers={"X-API-Key": self.agent.identity.local_api_key}) as client:
            response = await client.get("/v2/device/vpn")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == "success"
        return dict(body["vpn"])

    async def connected(self) -> bool:
        return self.agent.api_address is not None and (await self.vpn())["connected"] is True

    async def tun_addresses(self) -> list[str]:
        return await asyncio.to_thread(self.lab.addresses, self.device_ns, "tun0")

    async def stop_server(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def start_server(self) -> None:
        self.restarts += 1  # a new name: a fresh log, so "started" is not read from the old server's log
        self.server = await asyncio.to_thread(self.lab.start_server, self.server_ns, self.pki, PASSPHRASE,
                                              name=f"server{self.restarts}")


async def start_device(netlab: NetLab, lab_pki: Pki, engine: DockerEngine, tmp_path: Path,
                       **env: Any) -> VpnDevice:
    server_ns = await asyncio.to_thread(netlab.server_namespace)
    server = await asyncio.to_thread(netlab.start_server, server_ns, lab_pki, PASSPHRASE)
    device_ns = await asyncio.to_thread(netlab.device_namespace)
    bundle = lab_pki.issue(uuid.uuid4().hex, CUSTOMER)
    settings = load_agent_settings(
        AGENT_DATA_DIR=str(tmp_path / "agent"), DOCKER_HOST=engine.base_url, DEVICE_API_PORT=free_port(),
        VPN_ENABLED="true", VPN_SERVER_HOST=str(SERVER_UNDERLAY), VPN_SERVER_PORT=str(server.port),
        VPN_COMMAND_PREFIX=f"ip netns exec {device_ns}", VPN_BACKOFF_BASE_SECONDS="0.5",
        VPN_BACKOFF_MAX_SECONDS="2", **env)
    # The manual route of the product README: the device's .ovpn placed at VPN_CONFIG_PATH.
    save_config(settings.vpn_config_file, lab_pki.client_config(bundle, PUBLIC_NAME, 1194))
    agent = Agent(settings, reconcile_interval=5.0)
    task = asyncio.create_task(agent.run())
    return VpnDevice(netlab, lab_pki, server, server_ns, device_ns, bundle, agent, task)


@pytest.fixture
async def device_factory(netlab: NetLab, lab_pki: Pki, engine: DockerEngine, tmp_path: Path
                         ) -> AsyncIterator[Callable[..., Awaitable[VpnDevice]]]:
    started: list[VpnDevice] = []

    async def make(**env: Any) -> VpnDevice:
        device = await start_device(netlab, lab_pki, engine, tmp_path, **env)
        started.append(device)
        return device

    yield make
    for device in started:
        device.agent.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(device.task, 30)


async def agent_status(device: VpnDevice, *args: str) -> str:
    """`iotistic agent status` in a subprocess (it asks the running agent through its Device API)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPN_", "CLOUD_API_ENDPOINT"))}
    env.update(AGENT_DATA_DIR=str(device.agent.settings.data_dir), DOCKER_HOST=str(device.agent.settings.docker_host),
               COLUMNS="200")
    process = await asyncio.create_subprocess_exec(*CLI, "agent", "status", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_agent_connects_with_the_customers_fixed_address(device_factory: Callable[..., Awaitable[VpnDevice]]
                                                               ) -> None:
    device = await device_factory()
    took = await eventually(device.connected, 30, "the agent's VPN client connected")
    print(f"\nagent start to VPN connected: {took:.2f} s")
    address = device.bundle.record.address
    vpn = await device.vpn()
    assert vpn["enabled"] is True and vpn["state"] == "connected"
    assert vpn["tunnelAddress"] == address
    assert vpn["server"] == f"{SERVER_UNDERLAY}:1194"  # VPN_SERVER_HOST replaced the .ovpn's public name
    assert vpn["since"] is not None and vpn["pid"] is not None
    assert (vpn["reconnects"], vpn["restarts"]) == (0, 0)
    # The kernel agrees: the device namespace's tun0 holds the customer's fixed address.
    assert await device.tun_addresses() == [f"{address}/{device.pki.plan.network.prefixlen}"]
    # And the tunnel carries traffic: a TCP listener on the server's tunnel address answers the device.
    server_tunnel = str(device.pki.plan.server_address)
    await asyncio.to_thread(device.lab.listen, device.server_ns, server_tunnel, SERVICE_PORT)
    assert await asyncio.to_thread(device.lab.can_connect, device.device_ns, server_tunnel, SERVICE_PORT)
    # `iotistic agent status` shows the same, as JSON and for people.
    status = json.loads(await agent_status(device, "--json"))
    assert status["vpn"]["connected"] is True and status["vpn"]["tunnelAddress"] == address
    line = next(line for line in (await agent_status(device)).splitlines() if line.startswith("VPN"))
    assert f"connected {address} via {SERVER_UNDERLAY}:1194" in line


async def test_agent_reconnects_after_the_server_restarts(device_factory: Callable[..., Awaitable[VpnDevice]]
                                                          ) -> None:
    device = await device_factory()
    await eventually(device.connected, 30, "the agent's VPN client connected")
    first_pid = (await device.vpn())["pid"]

    await device.stop_server()
    await eventually(lambda: _not(device.connected), 10, "the agent noticed the server went away")
    down = await device.vpn()
    assert down["tunnelAddress"] is None
    assert "server-pushed-connection-reset" in (down["lastError"] or "")  # the server said so on its way out
    await asyncio.sleep(1.5)  # the server stays away a moment: the client is restarted and keeps trying

    await device.start_server()
    took = await eventually(device.connected, RECONNECT_BOUND, "the agent reconnected to the restarted server")
    print(f"\nrestarted server up to agent connected again: {took:.2f} s")
    vpn = await device.vpn()
    assert vpn["reconnects"] == 1
    assert vpn["restarts"] >= 1 and vpn["pid"] != first_pid  # the supervisor started a new client
    assert vpn["tunnelAddress"] == device.bundle.record.address
    assert await device.tun_addresses() == [f"{device.bundle.record.address}/{device.pki.plan.network.prefixlen}"]


async def test_without_auto_reconnect_the_agent_stays_down(device_factory: Callable[..., Awaitable[VpnDevice]]
                                                           ) -> None:
    device = await device_factory(VPN_AUTO_RECONNECT="false")
    await eventually(device.connected, 30, "the agent's VPN client connected")

    await device.stop_server()
    await eventually(lambda: _state_is(device, "down"), 10, "the agent's VPN client down")
    await device.start_server()
    await asyncio.sleep(4)  # longer than the backoff (2 s at most) and than a reconnection takes
    vpn = await device.vpn()
    assert (vpn["state"], vpn["connected"], vpn["autoReconnect"], vpn["pid"]) == ("down", False, False, None)
    assert "VPN_AUTO_RECONNECT is off" in vpn["lastError"]
    assert (vpn["reconnects"], vpn["restarts"]) == (0, 0)
    assert await device.tun_addresses() == []  # no client, no tunnel device


async def _not(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()


async def _state_is(device: VpnDevice, state: str) -> bool:
    return (await device.vpn())["state"] == state


async def test_deprovisioning_removes_the_configuration_and_ends_the_tunnel(
        device_factory: Callable[..., Awaitable[VpnDevice]]) -> None:
    device = await device_factory()
    await eventually(device.connected, 30, "the agent's VPN client connected")
    config = device.agent.settings.vpn_config_file
    assert config.exists()
    await device.agent.deprovision()
    await eventually(lambda: _state_is(device, "no_config"), 15, "the VPN client stopped for want of a configuration")
    assert not config.exists()  # the key belonged to the identity just forgotten
    vpn = await device.vpn()
    assert (vpn["connected"], vpn["pid"], vpn["tunnelAddress"]) == (False, None, None)
    assert "no VPN configuration at" in vpn["lastError"]
    assert await device.tun_addresses() == []
