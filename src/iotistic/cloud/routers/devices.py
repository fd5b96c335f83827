from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from pydantic import StringConstraints

from iotistic.cloud.deps import Admin, Ctx, Operator, Session, Viewer
from iotistic.cloud.errors import bad_request
from iotistic.cloud.models import Device, DeviceStatus
from iotistic.cloud.schemas import (
    TAG_KEY_PATTERN,
    CurrentStateOut,
    DeploymentOut,
    DeviceCreate,
    DeviceCreated,
    DeviceOut,
    DevicePage,
    DeviceUpdate,
    FleetRef,
    LogOut,
    MetricOut,
    TargetOut,
)
from iotistic.cloud.services import audit, devices, provisioning, reports, targets, vpn
from iotistic.cloud.services.service_actions import ServiceAction, control
from iotistic.core.schemas.target_state import TargetState

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


def device_out(device: Device, offline_after: int) -> DeviceOut:
    return DeviceOut(
        id=device.id, uuid=device.uuid, name=device.name, device_type=device.device_type,
        status=DeviceStatus(device.status), online=devices.is_online(device, offline_after),
        fleet=FleetRef.model_validate(device.fleet) if device.fleet else None,
        tags={t.key: t.value for t in device.tags}, last_seen_at=device.last_seen_at,
        os_version=device.os_version, agent_version=device.agent_version, ip_address=device.ip_address,
        created_at=device.created_at,
    )


def parse_tag(tag: str) -> tuple[str, str | None]:
    key, sep, value = tag.partition(":")
    if not key:
        raise bad_request("tag must be key or key:value")
    return key, (value if sep else None)


@router.get("", response_model=DevicePage)
async def list_devices(
    _: Viewer, ctx: Ctx, session: Session,
    status: DeviceStatus | None = None,
    online: bool | None = None,
    tag: Annotated[str | None, Query(max_length=321, description="key or key:value")] = None,
    text: Annotated[str | None, Query(max_length=128, description="part of the name or uuid")] = None,
    fleet: Annotated[str | None, Query(max_length=64, description="fleet id or name")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DevicePage:
    tag_key, tag_value = parse_tag(tag) if tag else (None, None)
    fleet_row = await provisioning.resolve_fleet(session, fleet)
    f = devices.DeviceFilter(status=status, online=online, tag_key=tag_key, tag_value=tag_value, text=text,
                             fleet_id=fleet_row.id if fleet_row else None)
    after = ctx.settings.device_offline_after_seconds
    rows, total = await devices.list_devices(session, f, limit=limit, offset=offset, offline_after_seconds=after)
    return DevicePage(items=[device_out(d, after) for d in rows], total=total, limit=limit, offset=offset)


@router.post("", response_model=DeviceCreated, status_code=201)
async def create_device(body: DeviceCreate, principal: Admin, ctx: Ctx, session: Session) -> DeviceCreated:
    """Pre-register a device by hand; its API key is in this response only."""
    device, api_key = await devices.create_by_user(session, ctx.licenses, device_uuid=body.uuid, name=body.name,
                                                   device_type=body.device_type, fleet=body.fleet)
    audit.record(session, actor=principal.name, action="device.created", target_type="device",
                 target_id=device.uuid, ip=principal.ip)
    await session.commit()
    await session.refresh(device, ["fleet", "tags"])
    out = device_out(device, ctx.settings.device_offline_after_seconds)
    return DeviceCreated(**out.model_dump(), device_api_key=api_key)


@router.get("/{uuid}", response_model=DeviceOut)
async def get_device(uuid: str, _: Viewer, ctx: Ctx, session: Session) -> DeviceOut:
    return device_out(await devices.get_device(session, uuid), ctx.settings.device_offline_after_seconds)


@router.patch("/{uuid}", response_model=DeviceOut)
async def update_device(uuid: str, body: DeviceUpdate, principal: Operator, ctx: Ctx,
                        session: Session) -> DeviceOut:
    device = await devices.get_device(session, uuid)
    if body.name is not None:
        device.name = body.name
    if body.device_type is not None:
        device.device_type = body.device_type
    if "fleet" in body.model_fields_set:
        fleet = await provisioning.resolve_fleet(session, body.fleet)
        device.fleet_id = fleet.id if fleet else None
    if body.status is not None and body.status != device.status:
        await devices.set_status(session, device, body.status)
        audit.record(session, actor=principal.name, action=f"device.{body.status.value}", target_type="device",
                     target_id=uuid, ip=principal.ip)
    await session.commit()
    await session.refresh(device, ["fleet"])
    return device_out(device, ctx.settings.device_offline_after_seconds)


@router.delete("/{uuid}", status_code=204)
async def delete_device(uuid: str, principal: Admin, ctx: Ctx, session: Session) -> None:
    """Removes the device and every credential it had (API key, MQTT account and ACLs; its VPN certificate is
    revoked when VPN is on)."""
    device = await devices.get_device(session, uuid)
    await devices.delete(session, device)
    audit.record(session, actor=principal.name, action="device.deleted", target_type="device", target_id=uuid,
                 ip=principal.ip)
    await session.commit()
    await vpn.revoke_deleted(ctx.settings, await ctx.licenses.current(session), uuid)


TagMap = dict[
    Annotated[str, StringConstraints(pattern=TAG_KEY_PATTERN)], Annotated[str, StringConstraints(max_length=256)]
]


@router.get("/{uuid}/tags", response_model=dict[str, str])
async def get_tags(uuid: str, _: Viewer, session: Session) -> dict[str, str]:
    device = await devices.get_device(session, uuid)
    return {t.key: t.value for t in device.tags}


@router.put("/{uuid}/tags", response_model=dict[str, str])
async def put_tags(uuid: str, principal: Operator, session: Session,
                   tags: Annotated[TagMap, Body(max_length=100)]) -> dict[str, str]:
    """Replace all tags of the device."""
    device = await devices.get_device(session, uuid)
    await devices.set_tags(session, device, tags)
    audit.record(session, actor=principal.name, action="device.tags_set", target_type="device", target_id=uuid,
                 ip=principal.ip)
    await session.commit()
    return dict(sorted(tags.items()))


def target_out(target: object) -> TargetOut:
    t = target
    return TargetOut(staged=t.staged, deployed=t.deployed, version=t.version,  # type: ignore[attr-defined]
                     release_id=t.release_id, staged_at=t.staged_at,  # type: ignore[attr-defined]
                     deployed_at=t.deployed_at, pending=t.staged != t.deployed)  # type: ignore[attr-defined]


@router.get("/{uuid}/target-state", response_model=TargetOut)
async def get_target_state(uuid: str, _: Viewer, session: Session) -> TargetOut:
    device = await devices.get_device(session, uuid)
    target = await targets.get_target(session, device)
    await session.commit()
    return target_out(target)


@router.put("/{uuid}/target-state", response_model=TargetOut)
async def put_target_state(uuid: str, body: TargetState, principal: Operator, session: Session) -> TargetOut:
    """Stage a target; devices see it only after `deploy`."""
    device = await devices.get_device(session, uuid)
    target = await targets.stage(session, device, body)
    await session.commit()
    return target_out(target)


@router.post("/{uuid}/deploy", response_model=TargetOut)
async def deploy(uuid: str, principal: Operator, session: Session) -> TargetOut:
    """Deploy the staged target: version + 1, kept in the history."""
    device = await devices.get_device(session, uuid)
    target = await targets.deploy_staged(session, device, principal.name)
    audit.record(session, actor=principal.name, action="device.deployed", target_type="device", target_id=uuid,
                 details={"version": target.version}, ip=principal.ip)
    await session.commit()
    return target_out(target)


@router.post("/{uuid}/apps/{app_id}/services/{service_name}/{action}", response_model=TargetOut,
             responses={404: {"description": "no such service in the deployed target"},
                        409: {"description": "the service is already in that state"}})
async def control_service(uuid: str, app_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                          service_name: Annotated[str, Path(max_length=64)], action: ServiceAction,
                          principal: Operator, session: Session) -> TargetOut:
    """Start, stop, pause or restart one service: deploys a new target version with the service's `state`
    changed (`restart` recreates its container once). Pending staged edits are kept, with the same change."""
    device = await devices.get_device(session, uuid)
    target = await control(session, device, app_id, service_name, action, principal.name)
    audit.record(session, actor=principal.name, action=f"device.service_{action.value}", target_type="device",
                 target_id=uuid, details={"app_id": app_id, "service": service_name, "version": target.version},
                 ip=principal.ip)
    await session.commit()
    return target_out(target)


@router.get("/{uuid}/target-state/history", response_model=list[DeploymentOut])
async def target_history(uuid: str, _: Viewer, session: Session,
                         limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[DeploymentOut]:
    device = await devices.get_device(session, uuid)
    return [DeploymentOut.model_validate(d) for d in await targets.history(session, device, limit)]


@router.get("/{uuid}/current-state", response_model=CurrentStateOut)
async def get_current_state(uuid: str, _: Viewer, session: Session) -> CurrentStateOut:
    device = await devices.get_device(session, uuid)
    current = await reports.current_state(session, device)
    return CurrentStateOut(uuid=uuid, state=current.document if current else None,
                           reported_at=current.reported_at if current else None)


@router.get("/{uuid}/logs", response_model=list[LogOut])
async def get_logs(
    uuid: str, _: Viewer, session: Session,
    service: Annotated[str | None, Query(max_length=64)] = None,
    since: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[LogOut]:
    device = await devices.get_device(session, uuid)
    rows = await reports.logs(session, device, service=service, since=_aware(since), limit=limit)
    return [LogOut.model_validate(r) for r in rows]


@router.get("/{uuid}/metrics", response_model=list[MetricOut])
async def get_metrics(
    uuid: str, _: Viewer, session: Session,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[MetricOut]:
    device = await devices.get_device(session, uuid)
    rows = await reports.metrics(session, device, since=_aware(since), until=_aware(until), limit=limit)
    return [MetricOut.model_validate(r) for r in rows]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """Query times without a zone are taken as UTC."""
    if value is None:
        return None
    try:
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    except (OverflowError, ValueError):
        raise bad_request("time out of range") from None
