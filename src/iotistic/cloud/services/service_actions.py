"""Start, stop, pause or restart one service of one device: a new deployed target with that service changed.

The agent converges on the target, so a control is a deployment like any other (versioned, in the history, kept
while the device is offline and applied when it comes back) rather than a one-shot command that could be lost.
`restart` bumps a restart-generation label in the service's config; labels are part of the config hash the agent
compares, so the container is recreated once with the same image and settings. Pending staged edits survive: the
same change is applied to the staged document too.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import ApiError, not_found
from iotistic.cloud.models import Device, DeviceTarget
from iotistic.cloud.services import targets
from iotistic.core.schemas.target_state import TargetState

RESTART_LABEL = "io.iotistic.restart-generation"


class ServiceAction(StrEnum):
    start = "start"
    stop = "stop"
    pause = "pause"
    restart = "restart"


_STATE = {ServiceAction.start: "running", ServiceAction.stop: "stopped", ServiceAction.pause: "paused",
          ServiceAction.restart: "running"}


def _find(document: dict[str, Any], app_id: int, service_name: str) -> dict[str, Any] | None:
    app = (document.get("apps") or {}).get(str(app_id))
    if not app:
        return None
    return next((s for s in app.get("services", []) if s.get("serviceName") == service_name), None)


def _apply(document: dict[str, Any], app_id: int, service_name: str, action: ServiceAction,
           generation: int) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    service = _find(changed, app_id, service_name)
    if service is not None:
        service["state"] = _STATE[action]
        if action is ServiceAction.restart:
            labels = service.setdefault("config", {}).setdefault("labels", {})
            labels[RESTART_LABEL] = str(generation)
    # Canonical form (defaults filled), exactly as a staged-then-deployed document would be stored.
    return TargetState.model_validate(changed).document()


def _generation(service: dict[str, Any]) -> int:
    raw = ((service.get("config") or {}).get("labels") or {}).get(RESTART_LABEL, "0")
    return int(raw) + 1 if str(raw).isdigit() else 1


async def control(session: AsyncSession, device: Device, app_id: int, service_name: str, action: ServiceAction,
                  actor: str) -> DeviceTarget:
    target = await targets.get_target(session, device)
    service = _find(target.deployed, app_id, service_name)
    if service is None:
        raise not_found(f"service {service_name!r} of app {app_id} in the device's deployed target")
    if action is not ServiceAction.restart and service.get("state", "running") == _STATE[action]:
        raise ApiError(409, "conflict", f"service {service_name!r} is already {_STATE[action]} in the target")
    generation = _generation(service)
    pending = target.staged != target.deployed
    staged = target.staged
    target.staged = _apply(target.deployed, app_id, service_name, action, generation)
    await targets.deploy_staged(session, device, actor)
    if pending:
        target.staged = _apply(staged, app_id, service_name, action, generation)
    return target
