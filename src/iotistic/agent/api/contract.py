"""What the Device API needs from the running agent. `iotistic.agent.main.Agent` implements it.

Kept as a Protocol so the HTTP layer stays thin and can be tested against the real agent or read on its own.
"""

from __future__ import annotations

from typing import Any, Protocol

from iotistic.agent.identity import Identity
from iotistic.agent.logs import LogBuffer
from iotistic.agent.reconcile.executor import Executor
from iotistic.agent.runtime.base import Runtime
from iotistic.agent.settings import AgentSettings
from iotistic.agent.store import AgentStore
from iotistic.agent.sync.client import CloudSync
from iotistic.core.schemas.target_state import TargetState


class HostActionRefused(Exception):
    """Reboot/shutdown not possible now (an update lock is held, or no host command is configured)."""


class AgentCore(Protocol):
    settings: AgentSettings
    store: AgentStore
    runtime: Runtime
    executor: Executor
    logs: LogBuffer

    @property
    def identity(self) -> Identity:
        """The device's identity (uuid, keys); created at first start, also in local mode."""

    @property
    def sync(self) -> CloudSync | None:
        """The cloud sync, or None in local mode / before provisioning."""

    @property
    def local_mode(self) -> bool: ...

    @property
    def applied_version(self) -> int | None:
        """Version of the target the device runs (the cloud's deploy counter, or the local one); None before
        the first target converged. The Device API shows it as balena's `commit` / `release`."""

    async def set_local_target(self, target: TargetState) -> None:
        """Local mode: persist the target and apply it (what `/v2/local/target-state` POST and `agent apply` do)."""

    def local_target(self) -> TargetState | None:
        """The target in force (cloud or local), as last persisted."""

    async def reboot(self, *, force: bool = False) -> None:
        """Run the configured host reboot action; raises HostActionRefused under an update lock unless forced."""

    async def shutdown(self, *, force: bool = False) -> None:
        """Same for shutdown."""

    async def provision(self, *, cloud_endpoint: str, provisioning_key: str, device_name: str | None = None,
                        device_type: str | None = None) -> dict[str, Any]:
        """Provision now (`/v1/provision`): register, key exchange; returns the provisioning status."""

    def provision_status(self) -> dict[str, Any]:
        """`/v1/provision/status`: uuid, registered, keyExchanged, provisioned, lastError (no secrets)."""

    async def deprovision(self) -> None:
        """Forget the cloud identity; keep running the last target."""

    async def factory_reset(self) -> None:
        """Remove every managed workload, wipe the agent's data; the process exits afterwards."""

    def regenerate_local_api_key(self) -> str:
        """New key for the Device API; the old one stops working at once."""

    def device_name(self) -> str: ...

    async def set_device_name(self, name: str) -> None: ...

    def tags(self) -> dict[str, str]: ...

    async def set_tags(self, tags: dict[str, str]) -> None: ...

    def vpn_status(self) -> dict[str, Any]:
        """The VPN client (`iotistic.agent.vpn`): enabled, state, connected, tunnel address, server, since,
        reconnects, last error."""

    def status_summary(self) -> dict[str, Any]:
        """What `iotistic agent status` and `/v1/device` show: runtime, apply status, pending, last sync."""
