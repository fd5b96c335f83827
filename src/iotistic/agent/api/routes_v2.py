"""The v2 routes: application and service state and actions, the local target state, logs, device name and tags."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

import iotistic
from iotistic.agent.api.common import (
    Core,
    app_keys,
    app_name,
    change_services,
    release,
    restart,
    service_key,
    statuses,
)
from iotistic.agent.api.contract import AgentCore
from iotistic.agent.api.errors import ApiError, conflict
from iotistic.agent.api.schemas import MAX_TAGS, DeviceNameBody, ServiceBody, TagsPatch
from iotistic.agent.logs import LogEntry
from iotistic.agent.reconcile.executor import ApplyStatus, ServiceStatus
from iotistic.core.schemas.target_state import ServiceState, TargetState

router = APIRouter()

NDJSON = "application/x-ndjson"


# --- applications --------------------------------------------------------------------------------------------------
def _service_state(s: ServiceStatus, commit: str | None) -> dict[str, Any]:
    return {
        "status": s.status,
        "serviceId": s.service_id,
        "containerId": s.container_id,
        "image": s.image,
        "targetState": s.target_state,
        "restartCount": s.restart_count,
        "error": s.error,
        "locked": s.locked,
        "releaseId": commit,
        "downloadProgress": None,
    }


def _app_state(core: AgentCore, app_id: int) -> dict[str, Any]:
    commit = release(core)
    return {
        "appId": app_id,
        "appName": app_name(core, app_id),
        "commit": commit,
        "services": {s.service_name: _service_state(s, commit) for s in statuses(core, app_keys(core, app_id))},
    }


def _app_ids(core: AgentCore) -> list[int]:
    target = core.executor.target
    ids = [app.app_id for app in target.apps.values()] if target is not None else []
    return ids + sorted({s.app_id for s in core.executor.status().services} - set(ids))


@router.get("/v2/applications/state")
async def applications_state(core: Core) -> dict[str, Any]:
    """Every app, keyed by its name (balena's shape; by its id when the name is unknown or taken)."""
    apps: dict[str, Any] = {}
    for app_id in _app_ids(core):
        state = _app_state(core, app_id)
        name = state["appName"]
        apps[name if name and name not in apps else str(app_id)] = state
    return apps


@router.get("/v2/applications/{app_id}/state")
async def application_state(core: Core, app_id: int) -> dict[str, Any]:
    return _app_state(core, app_id)


@router.post("/v2/applications/{app_id}/restart-service", response_class=PlainTextResponse)
async def restart_service(core: Core, app_id: int, body: ServiceBody) -> str:
    """Restart the service's container in place; 423 under its update lock unless forced."""
    await restart(core, service_key(core, app_id, body.service_name), force=body.force)
    return "OK"


async def _service_action(core: AgentCore, request: Request, app_id: int, body: ServiceBody,
                          state: ServiceState) -> PlainTextResponse:
    key = service_key(core, app_id, body.service_name)
    done = await change_services(core, [key], state, force=body.force, wait=request.app.state.apply_wait)
    return PlainTextResponse("OK" if done else "Accepted", status_code=200 if done else 202)


@router.post("/v2/applications/{app_id}/stop-service", response_class=PlainTextResponse)
async def stop_service(core: Core, request: Request, app_id: int, body: ServiceBody) -> PlainTextResponse:
    """Keep the service stopped until a new target (or start-service)."""
    return await _service_action(core, request, app_id, body, ServiceState.stopped)


@router.post("/v2/applications/{app_id}/start-service", response_class=PlainTextResponse)
async def start_service(core: Core, request: Request, app_id: int, body: ServiceBody) -> PlainTextResponse:
    """Run the service again."""
    return await _service_action(core, request, app_id, body, ServiceState.running)


@router.get("/v2/state/status")
async def state_status(core: Core) -> dict[str, Any]:
    """balena's overall status: `appState` applying|applied, containers, images and the release."""
    status = core.executor.status()
    try:
        present = await core.runtime.images_present()
    except Exception:
        present = frozenset()
    applied = status.status in (ApplyStatus.applied, ApplyStatus.idle) and not status.update_pending
    containers = [
        {"status": s.status, "serviceName": s.service_name, "appId": s.app_id, "serviceId": s.service_id,
         "imageId": s.image, "containerId": s.container_id, "startedAt": s.started_at.isoformat()
         if s.started_at else None, "restartCount": s.restart_count, "error": s.error}
        for s in status.services if s.container_id
    ]
    images = [
        {"name": s.image, "appId": s.app_id, "serviceName": s.service_name, "serviceId": s.service_id,
         "status": "Downloaded" if s.image in present else ("Downloading" if s.status == "downloading"
                                                             else "Pending"),
         "downloadProgress": None}
        for s in status.services if s.image and s.target_state is not None
    ]
    return {
        "status": "success",
        "appState": "applied" if applied else "applying",
        "applyStatus": status.status.value,
        "overallDownloadProgress": None,
        "containers": containers,
        "images": images,
        "release": release(core),
        "lastError": status.last_error,
    }


@router.get("/v2/version")
async def version() -> dict[str, str]:
    return {"status": "success", "version": iotistic.__version__}


# --- local target state --------------------------------------------------------------------------------------------
def require_local_mode(core: Core) -> None:
    if not core.local_mode:
        raise conflict(
            f"this device is managed by the cloud ({core.settings.cloud_api_endpoint}); a local target state is "
            "accepted only in local mode (agent started without CLOUD_API_ENDPOINT)", error="cloud_mode")


@router.get("/v2/local/target-state")
async def get_target_state(core: Core) -> dict[str, Any]:
    """The target in force as the `{apps, config}` document (empty before the first one): GET, edit, POST."""
    target = core.local_target()
    return (target or TargetState()).document()


@router.post("/v2/local/target-state", status_code=202, dependencies=[Depends(require_local_mode)])
async def set_target_state(core: Core, target: TargetState) -> dict[str, str]:
    """Local mode: the `{apps, config}` document the cloud would send (no uuid wrapper); saved, then applied."""
    await core.set_local_target(target)
    return {"status": "success", "message": "target state accepted; the device is applying it"}


# --- logs ----------------------------------------------------------------------------------------------------------
def _line(entry: LogEntry) -> bytes:
    return (json.dumps(entry.to_wire(), ensure_ascii=False) + "\n").encode()


@router.get("/v2/local/logs", response_class=StreamingResponse)
async def local_logs(
    core: Core,
    service_name: str | None = Query(default=None, alias="serviceName", min_length=1, max_length=63),
    follow: bool = Query(default=True, description="keep the stream open for new lines"),
    backlog: bool = Query(default=True, description="start with the recent lines kept in memory"),
    limit: int | None = Query(default=None, ge=1, le=100_000, description="at most this many recent lines"),
) -> Response:
    """NDJSON, one `{timestamp, message, isStderr, serviceName}` per line: recent lines, then live ones."""
    logs = core.logs
    if not follow:
        lines = logs.recent(limit, service_name) if backlog else []
        return Response(b"".join(_line(e) for e in lines), media_type=NDJSON)
    skip = max(0, len(logs.recent(service=service_name)) - limit) if backlog and limit else 0

    async def stream() -> AsyncIterator[bytes]:
        # An async generator (typed as an iterator): closing it unsubscribes at once.
        subscription = cast(AsyncGenerator[LogEntry, None], logs.subscribe(backlog=backlog, service=service_name))
        async with contextlib.aclosing(subscription) as entries:
            seen = 0
            async for entry in entries:
                seen += 1
                if seen > skip:
                    yield _line(entry)

    return StreamingResponse(stream(), media_type=NDJSON, headers={"Cache-Control": "no-cache",
                                                                   "X-Accel-Buffering": "no"})


# --- device name, tags, VPN ----------------------------------------------------------------------------------------
@router.get("/v2/device/name")
async def get_device_name(core: Core) -> dict[str, str]:
    return {"status": "success", "deviceName": core.device_name()}


@router.patch("/v2/device/name")
async def set_device_name(core: Core, body: DeviceNameBody) -> dict[str, str]:
    try:
        await core.set_device_name(body.device_name)
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"deviceName: {exc}") from None
    return {"status": "success", "deviceName": core.device_name()}


@router.get("/v2/device/tags")
async def get_tags(core: Core) -> dict[str, Any]:
    return {"status": "success", "tags": core.tags()}


@router.patch("/v2/device/tags")
async def patch_tags(core: Core, body: TagsPatch) -> dict[str, Any]:
    """A merge patch: `{"tags": {"site": "A", "old": null}}` sets `site` and removes `old`."""
    tags = {**core.tags(), **{k: v for k, v in body.tags.items() if v is not None}}
    for key in (k for k, v in body.tags.items() if v is None):
        tags.pop(key, None)
    if len(tags) > MAX_TAGS:
        raise ApiError(422, "validation_error", f"tags: at most {MAX_TAGS} tags")
    try:
        await core.set_tags(tags)
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"tags: {exc}") from None
    return {"status": "success", "tags": core.tags()}


@router.get("/v2/device/vpn")
async def vpn(core: Core) -> dict[str, Any]:
    """The VPN client: `enabled`, `state` (disabled, no_config, starting, connected, retrying, down, stopped),
    `connected`, `tunnelAddress`, `server`, `since`, `reconnects`, `restarts`, `lastError`, byte counts."""
    return {"status": "success", "vpn": core.vpn_status()}
