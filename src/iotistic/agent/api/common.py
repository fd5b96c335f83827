"""What several routes share: finding an app's services, refusing under update locks, local holds and applying
now, the release in force, host addresses. The work itself is the executor's; this is the glue."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request

from iotistic.agent.api.contract import AgentCore
from iotistic.agent.api.errors import ApiError, conflict, locked, not_found
from iotistic.agent.reconcile.executor import (
    ApplyReport,
    ServiceLocked,
    ServiceNotFound,
    ServiceStatus,
    service_keys,
)
from iotistic.agent.runtime.base import StepFailed
from iotistic.agent.state import ServiceKey
from iotistic.core.schemas.target_state import ServiceState

log = logging.getLogger(__name__)

#: Interfaces whose addresses are the engine's or a VPN's plumbing, not the device's (as balena leaves them out).
_PLUMBING = ("lo", "docker", "br-", "veth", "balena", "resin", "cni", "flannel", "tun", "tap")
#: Applies started by a request keep running when the request gives up waiting (or its client goes away).
_background: set[asyncio.Task[Any]] = set()


def get_core(request: Request) -> AgentCore:
    core: AgentCore = request.app.state.core
    return core


Core = Annotated[AgentCore, Depends(get_core)]


# --- apps and services -----------------------------------------------------------------------------------------
def app_keys(core: AgentCore, app_id: int) -> list[ServiceKey]:
    """The app's services: those of the target, then any container still on the device; 404 when none."""
    target = core.executor.target
    keys = service_keys(target, app_id) if target is not None else []
    keys += [s_key for s in core.executor.status().services
             if (s_key := ServiceKey(s.app_id, s.service_name)).app_id == app_id and s_key not in keys]
    if not keys:
        raise not_found(f"no application {app_id} on this device")
    return keys


def service_key(core: AgentCore, app_id: int, service_name: str) -> ServiceKey:
    key = ServiceKey(app_id, service_name)
    if key not in app_keys(core, app_id):
        raise not_found(f"application {app_id} has no service {service_name!r}")
    return key


def statuses(core: AgentCore, keys: Iterable[ServiceKey]) -> list[ServiceStatus]:
    status = core.executor.status()
    found = (status.service(key.app_id, key.service_name) for key in keys)
    return [s for s in found if s is not None]


def app_name(core: AgentCore, app_id: int) -> str | None:
    target = core.executor.target
    app = target.apps.get(str(app_id)) if target is not None else None
    return app.app_name if app is not None else core.executor.status().app_names.get(app_id)


def target_service_state(core: AgentCore, key: ServiceKey) -> ServiceState | None:
    target = core.executor.target
    app = target.apps.get(str(key.app_id)) if target is not None else None
    service = next((s for s in app.services if s.service_name == key.service_name), None) if app else None
    return service.state if service is not None else None


def refuse_if_locked(core: AgentCore, keys: Iterable[ServiceKey], force: bool) -> None:
    """423 when one of `keys` holds its update lock and the request is not forced."""
    if force:
        return
    held = sorted(str(k) for k in set(keys) & core.executor.locks_held())
    if held:
        raise locked(f"update lock held by {', '.join(held)}; retry with force=true to override it")


# --- local holds (stop/start) ----------------------------------------------------------------------------------
def hold(core: AgentCore, key: ServiceKey, state: ServiceState) -> None:
    """Keep `key` in `state` until the next target; a hold equal to what the target says is just released."""
    core.executor.hold(key, None if target_service_state(core, key) is state else state)


async def apply_now(core: AgentCore, *, force: bool, wait: float) -> ApplyReport | None:
    """Run an apply (`force` overrides update locks for it) and wait up to `wait` seconds for it to finish;
    None if it is still running (it carries on in the background, in any case)."""
    task = asyncio.ensure_future(core.executor.apply(force=force))
    _background.add(task)
    task.add_done_callback(_background.discard)
    done, _ = await asyncio.wait({task}, timeout=wait)
    return task.result() if done else None


async def change_services(core: AgentCore, keys: list[ServiceKey], state: ServiceState, *, force: bool,
                          wait: float) -> bool:
    """Hold `keys` in `state` and apply now. True when done; False when still applying after `wait` seconds.
    Raises 423 under an update lock (unless forced) and 409 with the service's error when the apply failed."""
    refuse_if_locked(core, keys, force)
    for key in keys:
        hold(core, key, state)
    report = await apply_now(core, force=force, wait=wait)
    if report is None:
        return False
    if report.error:
        raise ApiError(503, "runtime_unavailable", report.error)
    failed = [f"{s.app_id}/{s.service_name}: {s.error}" for s in statuses(core, keys) if s.error]
    if failed:
        raise conflict("; ".join(failed), error="apply_failed")
    return True


async def restart(core: AgentCore, key: ServiceKey, *, force: bool) -> None:
    """Restart one service's container in place (the executor refuses under its update lock unless forced)."""
    try:
        await core.executor.restart_service(key, force=force)
    except ServiceLocked as exc:
        raise locked(f"{exc}; retry with force=true to override it") from None
    except ServiceNotFound as exc:
        raise not_found(str(exc)) from None
    except StepFailed as exc:
        raise conflict(f"could not restart {key}: {exc.message}", error="restart_failed") from None


# --- release and host ------------------------------------------------------------------------------------------
def release(core: AgentCore) -> str | None:
    """The version of the target the device runs (balena's `commit`), when there is one."""
    version = core.applied_version
    return None if version is None else str(version)


def host_addresses() -> tuple[list[str], str | None]:
    """The device's own IPv4 addresses and the MAC address of the first interface that has one."""
    import psutil

    addresses: list[str] = []
    mac: str | None = None
    try:
        interfaces = psutil.net_if_addrs()
    except OSError:
        return [], None
    for name, entries in sorted(interfaces.items()):
        if name.startswith(_PLUMBING):
            continue
        ipv4 = []
        for entry in entries:
            if entry.family.name == "AF_INET":
                ip = ipaddress.ip_address(entry.address)
                if not (ip.is_loopback or ip.is_link_local):
                    ipv4.append(entry.address)
        if ipv4:
            addresses += ipv4
            if mac is None:
                mac = next((e.address for e in entries if e.family.name == "AF_PACKET"), None)
    return addresses, mac
