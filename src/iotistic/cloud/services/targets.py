"""Target state: staged per device by users, deployed (version + 1) to devices, history kept; releases."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import bad_request, not_found
from iotistic.cloud.models import Device, DeviceTag, DeviceTarget, Release, TargetDeployment
from iotistic.cloud.services.provisioning import resolve_fleet
from iotistic.core.db import utcnow
from iotistic.core.schemas.target_state import TargetState

EMPTY_TARGET: dict[str, Any] = TargetState().document()


def compute_etag(version: int, document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{version}:{canonical}".encode()).hexdigest()[:32]


def new_device_target(device: Device) -> DeviceTarget:
    return DeviceTarget(device_id=device.id, staged=EMPTY_TARGET, deployed=EMPTY_TARGET, version=0,
                        etag=compute_etag(0, EMPTY_TARGET))


async def get_target(session: AsyncSession, device: Device) -> DeviceTarget:
    target = await session.get(DeviceTarget, device.id)
    if target is None:  # devices always get one at creation; this keeps old rows working
        target = new_device_target(device)
        session.add(target)
        await session.flush()
    return target


async def stage(session: AsyncSession, device: Device, document: TargetState) -> DeviceTarget:
    target = await get_target(session, device)
    target.staged = document.document()
    target.staged_at = utcnow()
    target.release_id = None
    return target


def _deploy(target: DeviceTarget, document: dict[str, Any], actor: str,
            release_id: int | None) -> TargetDeployment:
    target.version += 1
    target.deployed = document
    target.staged = document
    target.etag = compute_etag(target.version, document)
    target.deployed_at = utcnow()
    target.release_id = release_id
    return TargetDeployment(device_id=target.device_id, version=target.version, document=document,
                            release_id=release_id, deployed_by=actor)


async def deploy_staged(session: AsyncSession, device: Device, actor: str) -> DeviceTarget:
    target = await get_target(session, device)
    session.add(_deploy(target, target.staged, actor, target.release_id))
    return target


async def history(session: AsyncSession, device: Device, limit: int) -> list[TargetDeployment]:
    query = (select(TargetDeployment).where(TargetDeployment.device_id == device.id)
             .order_by(TargetDeployment.version.desc()).limit(limit))
    return list((await session.scalars(query)).all())


def device_state_document(device: Device, target: DeviceTarget) -> dict[str, Any]:
    """What a device fetches: `{<uuid>: {apps, config, version}}`."""
    return {device.uuid: {**target.deployed, "version": target.version}}


# Releases ---------------------------------------------------------------------------------------------------

async def create_release(session: AsyncSession, *, name: str, fleet: int | str | None, document: TargetState,
                         notes: str | None, actor: str) -> Release:
    fleet_row = await resolve_fleet(session, fleet)
    release = Release(name=name, fleet_id=fleet_row.id if fleet_row else None, document=document.document(),
                      notes=notes, created_by=actor)
    session.add(release)
    await session.flush()
    return release


async def get_release(session: AsyncSession, release_id: int) -> Release:
    release = await session.get(Release, release_id)
    if release is None:
        raise not_found("release")
    return release


async def list_releases(session: AsyncSession, fleet: int | str | None, limit: int, offset: int) -> list[Release]:
    query = select(Release).order_by(Release.id.desc())
    if fleet is not None:
        fleet_row = await resolve_fleet(session, fleet)
        assert fleet_row is not None
        query = query.where(Release.fleet_id == fleet_row.id)
    return list((await session.scalars(query.limit(limit).offset(offset))).all())


async def deploy_release(
    session: AsyncSession, release: Release, *, fleet: int | str | None, tag_key: str | None,
    tag_value: str | None, device_uuids: list[str] | None, actor: str,
) -> list[str]:
    """Deploy one release to every selected device in one transaction; returns their uuids."""
    if fleet is None and tag_key is None and not device_uuids:
        raise bad_request("select devices: a fleet, a tag or a list of device uuids")
    query: Select[Device] = select(Device).order_by(Device.id)
    if fleet is not None:
        fleet_row = await resolve_fleet(session, fleet)
        assert fleet_row is not None
        query = query.where(Device.fleet_id == fleet_row.id)
    if tag_key is not None:
        tag_match = select(DeviceTag.device_id).where(DeviceTag.key == tag_key)
        if tag_value is not None:
            tag_match = tag_match.where(DeviceTag.value == tag_value)
        query = query.where(Device.id.in_(tag_match))
    if device_uuids:
        query = query.where(Device.uuid.in_(device_uuids))
    devices = list((await session.scalars(query)).all())
    if device_uuids:
        missing = sorted(set(device_uuids) - {d.uuid for d in devices})
        if missing:
            raise bad_request(f"devices not found or not in the selection: {', '.join(missing[:10])}")
    targets = {
        t.device_id: t
        for t in (await session.scalars(
            select(DeviceTarget).where(DeviceTarget.device_id.in_([d.id for d in devices]))
        )).all()
    }
    for device in devices:
        target = targets.get(device.id)
        if target is None:
            target = new_device_target(device)
            session.add(target)
        session.add(_deploy(target, release.document, actor, release.id))
    return [d.uuid for d in devices]
