"""`/ping` and the v1 routes (balena-supervisor shapes), plus provisioning, deprovision and factory reset."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

import iotistic
from iotistic.agent.api.common import (
    Core,
    app_keys,
    change_services,
    host_addresses,
    refuse_if_locked,
    release,
    restart,
    statuses,
)
from iotistic.agent.api.contract import AgentCore, HostActionRefused
from iotistic.agent.api.errors import ApiError, conflict, locked
from iotistic.agent.api.schemas import AppForceBody, FactoryResetBody, ForceBody, ProvisionBody
from iotistic.agent.identity import FactoryResetError, ProvisioningError, os_version
from iotistic.agent.reconcile.executor import ApplyStatus
from iotistic.agent.runtime.base import ContainerNotFound
from iotistic.agent.state import ServiceKey
from iotistic.agent.sync.http import CloudError
from iotistic.core.schemas.target_state import ServiceState
from iotistic.core.settings import ConfigError

log = logging.getLogger(__name__)

open_router = APIRouter()
router = APIRouter()

OptionalForce = ForceBody | None


def _force(body: ForceBody | None) -> bool:
    return body is not None and body.force


def _wait(request: Request) -> float:
    wait: float = request.app.state.apply_wait
    return wait


@open_router.get("/ping", response_class=PlainTextResponse)
async def ping() -> str:
    """Open to anyone (health checks): the API answers."""
    return "OK"


@router.get("/v1/healthy", response_class=PlainTextResponse)
async def healthy(core: Core) -> str:
    """OK when the container engine answers."""
    if not await core.runtime.ping():
        raise ApiError(503, "unhealthy", f"the container engine ({core.runtime.name}) does not answer")
    return "OK"


# --- device ----------------------------------------------------------------------------------------------------
def _device_status(status: ApplyStatus, downloading: bool) -> str:
    if status is ApplyStatus.error:
        return "Error"
    if status is ApplyStatus.applying:
        return "Downloading" if downloading else "Installing"
    return "Idle"


@router.get("/v1/device")
async def device(core: Core) -> dict[str, Any]:
    """balena's device summary (`status`, `update_*`, addresses, versions), plus the agent's own summary."""
    status = core.executor.status()
    target = core.executor.target
    wanted = {s.config.image for app in target.apps.values() for s in app.services} if target else set()
    try:
        present = await core.runtime.images_present()
    except Exception:
        present = frozenset()
    downloaded = wanted <= present
    pending = status.update_pending or status.status is ApplyStatus.applying
    addresses, mac = await asyncio.to_thread(host_addresses)
    return {
        "status": _device_status(status.status, any(s.status == "downloading" for s in status.services)),
        "apply_status": status.status.value,
        "update_pending": pending,
        "update_downloaded": pending and downloaded,
        "update_failed": status.status is ApplyStatus.error,
        "download_progress": None,
        "commit": release(core),
        "ip_address": " ".join(addresses),
        "mac_address": mac,
        "api_port": core.settings.device_api_port,
        "os_version": os_version(),
        "supervisor_version": iotistic.__version__,
        "uuid": core.identity.uuid,
        "local_mode": core.local_mode,
        "agent": core.status_summary(),
    }


@router.post("/v1/update", status_code=204)
async def update(core: Core, body: OptionalForce = Body(default=None)) -> Response:
    """Poll the cloud now (cloud mode) and apply; `force` overrides update locks for that apply."""
    sync = core.sync
    if sync is not None:
        sync.poll_soon()
    core.executor.request_apply(force=_force(body))
    return Response(status_code=204)


@router.post("/v1/restart", response_class=PlainTextResponse)
async def restart_app(core: Core, body: AppForceBody) -> str:
    """Restart every service of the app that should be running (containers keep their ids)."""
    keys = app_keys(core, body.app_id)
    refuse_if_locked(core, keys, body.force)
    for s in statuses(core, keys):
        if s.target_state == ServiceState.running.value and s.container_id:
            await restart(core, ServiceKey(s.app_id, s.service_name), force=body.force)
    return "OK"


async def _host_action(core: AgentCore, action: str, force: bool) -> JSONResponse:
    try:
        await (core.reboot(force=force) if action == "reboot" else core.shutdown(force=force))
    except HostActionRefused as exc:
        if not force and core.executor.locks_held():
            raise locked(f"{exc}; retry with force=true to override the update lock") from None
        raise conflict(str(exc), error="host_action_refused") from None
    except RuntimeError as exc:  # the host command ran and failed: the host's problem, not the caller's input
        raise ApiError(500, "host_action_failed", str(exc)) from None
    log.warning("host %s requested through the Device API%s", action, " (forced)" if force else "")
    return JSONResponse({"Data": "OK", "Error": None}, status_code=202)


@router.post("/v1/reboot", status_code=202)
async def reboot(core: Core, body: OptionalForce = Body(default=None)) -> JSONResponse:
    """Reboot the host through the configured command; refused (423) under an update lock unless forced."""
    return await _host_action(core, "reboot", _force(body))


@router.post("/v1/shutdown", status_code=202)
async def shutdown(core: Core, body: OptionalForce = Body(default=None)) -> JSONResponse:
    """Shut the host down; refused (423) under an update lock unless forced."""
    return await _host_action(core, "shutdown", _force(body))


# --- one application ---------------------------------------------------------------------------------------------
async def _app_action(core: AgentCore, request: Request, app_id: int, state: ServiceState,
                      body: ForceBody | None) -> JSONResponse:
    keys = app_keys(core, app_id)
    done = await change_services(core, keys, state, force=_force(body), wait=_wait(request))
    first = next((s.container_id for s in statuses(core, keys) if s.container_id), None)
    return JSONResponse({"containerId": first}, status_code=200 if done else 202)


@router.post("/v1/apps/{app_id}/stop")
async def stop_app(core: Core, request: Request, app_id: int,
                   body: OptionalForce = Body(default=None)) -> JSONResponse:
    """Keep every service of the app stopped (until a new target or a start)."""
    return await _app_action(core, request, app_id, ServiceState.stopped, body)


@router.post("/v1/apps/{app_id}/start")
async def start_app(core: Core, request: Request, app_id: int,
                    body: OptionalForce = Body(default=None)) -> JSONResponse:
    """Run every service of the app again."""
    return await _app_action(core, request, app_id, ServiceState.running, body)


@router.get("/v1/apps/{app_id}")
async def get_app(core: Core, app_id: int) -> dict[str, Any]:
    """balena's single-app view, of the app's first service: container, environment and image ids."""
    keys = app_keys(core, app_id)
    first = statuses(core, keys[:1])
    status = first[0] if first else None
    env: dict[str, str] = {}
    image_id: str | None = None
    container_id = status.container_id if status else None
    if container_id:
        try:
            details = await core.runtime.inspect(container_id)
            env, image_id = dict(details.environment), details.image_id
        except ContainerNotFound:
            container_id = None
    if not container_id:
        target = core.executor.target
        app = target.apps.get(str(app_id)) if target else None
        service = next((s for s in app.services if s.service_name == keys[0].service_name), None) if app else None
        env = dict(service.config.environment) if service else {}
    return {
        "appId": app_id,
        "serviceName": keys[0].service_name,
        "containerId": container_id,
        "env": env,
        "image": status.image if status else None,
        "imageId": image_id,
        "releaseId": release(core),
        "commit": release(core),
    }


# --- local API key -----------------------------------------------------------------------------------------------
@router.post("/v1/regenerate-api-key", response_class=PlainTextResponse)
async def regenerate_api_key(core: Core) -> str:
    """A new local API key, returned as text; the old one stops working at once."""
    key = await asyncio.to_thread(core.regenerate_local_api_key)
    log.warning("the Device API key was regenerated")
    return key


# --- provisioning ------------------------------------------------------------------------------------------------
@router.post("/v1/provision")
async def provision(core: Core, body: ProvisionBody) -> dict[str, Any]:
    """Join a cloud now: register with the provisioning key, exchange keys; returns the provisioning status."""
    current = core.provision_status()
    if current.get("provisioned"):
        raise conflict(f"already provisioned as {current.get('uuid')}; POST /v1/deprovision first",
                       error="already_provisioned")
    try:
        return await core.provision(cloud_endpoint=body.cloud_endpoint, provisioning_key=body.provisioning_key,
                                    device_name=body.device_name, device_type=body.device_type)
    except ConfigError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    except ProvisioningError as exc:
        raise ApiError(400, "provisioning_refused", str(exc)) from None
    except CloudError as exc:
        raise ApiError(502, "cloud_unreachable", f"the cloud at {body.cloud_endpoint} did not answer: {exc}; "
                       "see /v1/provision/status") from None


@router.get("/v1/provision/status")
async def provision_status(core: Core) -> dict[str, Any]:
    return core.provision_status()


@router.post("/v1/deprovision")
async def deprovision(core: Core) -> dict[str, Any]:
    """Forget the cloud identity; the containers keep running their last target, the local key stays."""
    await core.deprovision()
    return core.provision_status()


@router.post("/v1/factory-reset", status_code=202)
async def factory_reset(core: Core, body: FactoryResetBody) -> dict[str, str]:
    """Remove every managed workload and the device's identity and data; the agent exits afterwards.
    Needs `{"confirm": true}`."""
    try:
        await core.factory_reset()
    except FactoryResetError as exc:
        raise conflict(str(exc), error="factory_reset_failed") from None
    log.warning("factory reset through the Device API")
    return {"status": "success", "message": "factory reset done; the agent is exiting"}
